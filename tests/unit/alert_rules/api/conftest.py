"""Fakes at the officer API's seams: a sink that plays the lifecycle agent,
an evidence source, a clock; and the API served on a thread for the CLI."""

import asyncio
import threading
from datetime import timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from alert_rules.api import build_app
from alert_rules.api.app import ApiRunner
from alert_rules.api.auth import Account, Tokens
from alert_rules.api.views import SilenceView, WarningView
from alert_rules.lifecycle import Command, Refusal, step
from alert_rules.loader import load_rules
from riskwatch.contracts import to_json_bytes
from riskwatch.registry import load_registry
from riskwatch.registry_cli import sample_registry_path
from riskwatch.topics import SILENCES, WARNING_COMMANDS, WARNING_STORE
from stream_jobs.registry_view import RegistryView
from tests.unit.conftest import T0

OFFICER, VIEWER = "officer-token", "viewer-token"
SUPERVISOR = "supervisor-token"
NOW = T0 + timedelta(minutes=30)
RULES = frozenset(rule.id for rule in load_rules())


def sample_registry():
    """The worker's registry view, loaded with the sample registry (no Kafka:
    the records are applied as the view reads them off the topic)."""
    view = RegistryView("127.0.0.1:1")
    for enterprise in load_registry(sample_registry_path()).enterprises:
        view.apply(enterprise.id.encode(), enterprise.model_dump_json().encode())
    view.ready.set()
    return view


class WorkerSink:
    """Applies commands the way the lifecycle agent does, into the views: a
    version into the warning view, a refusal as the refusal view hands it on.
    With ``hold`` set, commands wait in ``held`` until :meth:`release`."""

    def __init__(self, view, silences, *, apply=True):
        self.view, self.silences, self.apply = view, silences, apply
        self.state = {}
        self.sent = []
        self.hold = False
        self.held = []
        self.kafka_up = True
        self.probes = []

    async def reachable(self, timeout_s):
        self.probes.append(timeout_s)
        return self.kafka_up

    def seed(self, record):
        """A warning the engine opened."""
        self.run(Command.of_engine(record))

    def run(self, command):
        state, version, error = step(self.state.get(command.warning), command)
        if state is not None:
            self.state[command.warning] = state
        if version is not None:
            self.view.apply(command.warning.encode(), to_json_bytes(version))
        if error is not None:
            self.view.refused(Refusal.of(command, error))

    def release(self):
        """Apply the held commands in the order they were sent."""
        held, self.held = self.held, []
        for command in held:
            self.run(command)

    async def send(self, topic, key, value):
        self.sent.append((topic, key, value))
        if topic == WARNING_COMMANDS and self.hold:
            self.held.append(Command.model_validate_json(value))
        elif topic == WARNING_COMMANDS and self.apply:
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
        self.registry = sample_registry()
        self.tokens = Tokens(
            {
                OFFICER: Account("officer-li", "officer"),
                VIEWER: Account("v", "viewer"),
                SUPERVISOR: Account("sup-wang", "supervisor"),
            }
        )
        self.apply_timeout_s = apply_timeout_s
        self.silence_limits = None

    def app(self):
        return build_app(
            view=self.view,
            silences=self.silences,
            sink=self.sink,
            evidence=self.evidence,
            tokens=self.tokens,
            registry=self.registry,
            rules=RULES,
            apply_timeout_s=self.apply_timeout_s,
            silence_limits=self.silence_limits,
            clock=lambda: NOW,
        )


def call(api, requests, seed=()):
    """Serve ``api``, seed warnings, make each request; [(status, json)]
    (the body's bytes where the answer is not JSON)."""

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
                    # JSON, but a CAP document is XML: its bytes.
                    json_body = resp.content_type == "application/json"
                    got = await resp.json() if json_body else await resp.read()
                    answers.append((resp.status, got))
            return answers

    return asyncio.run(go())


def raw_exchange(api, data):
    """Serve ``api`` as ``riskwatch api`` does, send ``data`` as it is on a
    connection of its own; (status, content type, body bytes) of the answer."""

    async def go():
        runner = ApiRunner(api.app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", runner.addresses[0][1]
            )
            writer.write(data)
            await writer.drain()
            # An error answer closes the connection: read it to the end.
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
        finally:
            await runner.cleanup()
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        return int(lines[0].split()[1]), headers.get("Content-Type", ""), body

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
        runner = ApiRunner(api.app())
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
