"""Fakes at the officer API's seams: a sink that plays the lifecycle agent,
an evidence source, a clock; and the API served on a thread for the CLI."""

import asyncio
import threading
from datetime import timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from alert_rules.api import build_app
from alert_rules.api.auth import Account, Tokens
from alert_rules.api.views import SilenceView, WarningView
from alert_rules.lifecycle import Command, step
from riskwatch.contracts import to_json_bytes
from riskwatch.topics import SILENCES, WARNING_COMMANDS, WARNING_STORE
from tests.unit.conftest import T0

OFFICER, VIEWER = "officer-token", "viewer-token"
NOW = T0 + timedelta(minutes=30)


class WorkerSink:
    """Applies commands the way the lifecycle agent does, into the views."""

    def __init__(self, view, silences, *, apply=True):
        self.view, self.silences, self.apply = view, silences, apply
        self.state = {}
        self.sent = []

    def seed(self, record):
        """A warning the engine opened."""
        self.run(Command.of_engine(record))

    def run(self, command):
        state, version, _ = step(self.state.get(command.warning), command)
        if state is not None:
            self.state[command.warning] = state
        if version is not None:
            self.view.apply(command.warning.encode(), to_json_bytes(version))

    async def send(self, topic, key, value):
        self.sent.append((topic, key, value))
        if topic == WARNING_COMMANDS and self.apply:
            self.run(Command.model_validate_json(value))
        elif topic == SILENCES:
            self.silences.apply(key, value)


class FakeEvidence:
    def __init__(self):
        self.fail = None
        self.asked = []

    async def series(self, enterprise, evidence, limit):
        self.asked.append((enterprise, evidence.device, evidence.metric.value))
        if self.fail:
            raise self.fail
        return [{"time": evidence.from_.isoformat(), "value": 31.0, "score": 1.0}]

    async def close(self):
        pass


class Api:
    def __init__(self, *, apply=True, apply_timeout_s=0.5):
        self.view = WarningView("127.0.0.1:1", WARNING_STORE)
        self.silences = SilenceView("127.0.0.1:1", SILENCES)
        self.view.ready.set()
        self.sink = WorkerSink(self.view, self.silences, apply=apply)
        self.evidence = FakeEvidence()
        self.tokens = Tokens(
            {OFFICER: Account("officer-li", "officer"), VIEWER: Account("v", "viewer")}
        )
        self.apply_timeout_s = apply_timeout_s

    def app(self):
        return build_app(
            view=self.view,
            silences=self.silences,
            sink=self.sink,
            evidence=self.evidence,
            tokens=self.tokens,
            apply_timeout_s=self.apply_timeout_s,
            clock=lambda: NOW,
        )


def call(api, requests, seed=()):
    """Serve ``api``, seed warnings, make each request; [(status, json)]."""

    async def go():
        for record in seed:
            api.sink.seed(record)
        async with TestClient(TestServer(api.app())) as client:
            answers = []
            for method, path, token, body in requests:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                kwargs = {"json": body} if body is not None else {}
                async with client.request(
                    method, path, headers=headers, **kwargs
                ) as resp:
                    answers.append((resp.status, await resp.json()))
            return answers

    return asyncio.run(go())


@pytest.fixture
def served():
    """Start an Api on a thread of its own; yields (base_url, seed)."""
    holder = {}
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def serve():
        asyncio.set_event_loop(loop)
        api = Api()
        runner = web.AppRunner(api.app())
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        holder.update(api=api, runner=runner, port=runner.addresses[0][1])
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    api = holder["api"]

    def seed(record):
        loop.call_soon_threadsafe(api.sink.seed, record)
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(5)

    yield f"http://127.0.0.1:{holder['port']}", seed
    asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()
