"""WebhookClient against a real local aiohttp server on a free port.

Tenacity's waits are recorded instead of slept: the client's AsyncRetrying
is given a sleep function that only notes how long it was asked to wait.
"""

import asyncio
import functools
import logging
import socket

import pytest
from aiohttp import test_utils, web
from tenacity import AsyncRetrying

from riskwatch.settings import PlatformSettings
from stream_jobs import delivery
from stream_jobs.delivery import WebhookClient

WARNING = {"id": "W-1", "rule_id": "spike-or-drop", "level": "IV"}


@pytest.fixture
def waits(monkeypatch):
    asked: list[float] = []

    async def no_sleep(seconds):
        asked.append(seconds)

    monkeypatch.setattr(
        delivery, "AsyncRetrying", functools.partial(AsyncRetrying, sleep=no_sleep)
    )
    return asked


class Platform:
    """A webhook answering with the given statuses in turn (the last repeats)."""

    def __init__(self, *statuses, delay_s=0.0):
        self.statuses = list(statuses)
        self.delay_s = delay_s
        self.bodies: list[dict] = []

    async def handle(self, request):
        self.bodies.append(await request.json())
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        status = self.statuses[min(len(self.bodies), len(self.statuses)) - 1]
        return web.json_response({"ok": status < 300}, status=status)


async def _post_to(platform, warning=WARNING, **settings):
    app = web.Application()
    app.router.add_post("/warnings", platform.handle)
    server = test_utils.TestServer(app, host="127.0.0.1")
    await server.start_server()
    client = WebhookClient(
        PlatformSettings(
            webhook_url=str(server.make_url("/warnings")),
            **{"max_attempts": 4, **settings},
        )
    )
    try:
        return await client.post(warning), client
    finally:
        await client.close()
        await server.close()


def post_to(platform, **settings):
    return asyncio.run(_post_to(platform, **settings))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_delivered(status, waits, caplog):
    platform = Platform(status)
    with caplog.at_level(logging.INFO, logger="stream_jobs.delivery"):
        ok, client = post_to(platform)
    assert ok is True
    assert (client.delivered, client.failed) == (1, 0)
    assert platform.bodies == [WARNING]
    assert waits == []
    assert "warning delivered warning=W-1" in caplog.text


@pytest.mark.parametrize("retryable", [500, 503, 429])
def test_retryable_answer_then_200_is_retried_and_delivered(retryable, waits):
    platform = Platform(retryable, retryable, 200)
    ok, client = post_to(platform)
    assert ok is True
    assert (client.delivered, client.failed) == (1, 0)
    assert platform.bodies == [WARNING] * 3
    # Exponential backoff, 0.5 s doubling.
    assert waits == [0.5, 1.0]


@pytest.mark.parametrize("refused", [400, 404, 409, 422])
def test_4xx_is_not_retried(refused, waits, caplog):
    platform = Platform(refused, 200)
    with caplog.at_level(logging.ERROR, logger="stream_jobs.delivery"):
        ok, client = post_to(platform)
    assert ok is False
    assert (client.delivered, client.failed) == (0, 1)
    assert len(platform.bodies) == 1
    assert waits == []
    assert "warning refused by platform warning=W-1 url=" in caplog.text
    assert f"HTTP {refused}" in caplog.text


def test_persistent_500_gives_up_after_max_attempts(waits, caplog):
    platform = Platform(500)
    with caplog.at_level(logging.ERROR, logger="stream_jobs.delivery"):
        ok, client = post_to(platform, max_attempts=3)
    assert ok is False
    assert (client.delivered, client.failed) == (0, 1)
    assert len(platform.bodies) == 3
    assert len(waits) == 2
    assert "warning delivery failed warning=W-1" in caplog.text
    assert "attempts=3" in caplog.text


def test_connection_refused_gives_up_after_max_attempts(waits, caplog):
    url = f"http://127.0.0.1:{free_port()}/warnings"
    client = WebhookClient(PlatformSettings(webhook_url=url, max_attempts=3))

    async def go():
        try:
            return await client.post(WARNING)
        finally:
            await client.close()

    with caplog.at_level(logging.ERROR, logger="stream_jobs.delivery"):
        ok = asyncio.run(go())
    assert ok is False
    assert (client.delivered, client.failed) == (0, 1)
    assert waits == [0.5, 1.0]
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 1
    assert "attempts=3" in failures[0].getMessage()
    assert "Connect" in failures[0].getMessage()


def test_timeout_is_retried(waits):
    platform = Platform(200, delay_s=0.3)
    ok, client = post_to(platform, max_attempts=2, timeout_s=0.05)
    assert ok is False
    assert client.failed == 1
    assert len(platform.bodies) == 2
    assert waits == [0.5]


def test_no_webhook_url_delivers_nothing(waits):
    client = WebhookClient(PlatformSettings(webhook_url=None))
    assert asyncio.run(client.post(WARNING)) is False
    assert (client.delivered, client.failed) == (0, 0)
