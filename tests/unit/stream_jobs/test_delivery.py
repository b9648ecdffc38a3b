"""WebhookClient against real local aiohttp servers on free ports.

Tenacity's waits are recorded instead of slept: the client's AsyncRetrying
is given a sleep function that only notes how long it was asked to wait.
Two platforms: ``Platform``, a scripted one that answers given statuses, and
the demo's :class:`WarningReceiver`, behind a middleware that fails or delays
its first answers.
"""

import asyncio
import functools
import json
import logging
import socket

import pytest
from aiohttp import test_utils, web
from click.testing import CliRunner
from pydantic import SecretStr
from tenacity import AsyncRetrying

from riskwatch.cli import cli
from riskwatch.contracts import DeadLetter
from riskwatch.settings import PlatformSettings
from riskwatch.signing import IDEMPOTENCY_HEADER, verify
from riskwatch.topics import WARNINGS
from simulators.receiver import WarningReceiver
from stream_jobs import delivery
from stream_jobs.delivery import BACKOFF_MAX_S, BACKOFF_S, WebhookClient

SECRET = SecretStr("test-signing-secret")


@pytest.fixture
def waits(monkeypatch):
    asked: list[float] = []

    async def no_sleep(seconds):
        asked.append(seconds)

    monkeypatch.setattr(
        delivery, "AsyncRetrying", functools.partial(AsyncRetrying, sleep=no_sleep)
    )
    return asked


@pytest.fixture
def warning(make_warning):
    return make_warning()


class Platform:
    """A webhook answering with the given statuses in turn (the last repeats)."""

    def __init__(self, *statuses, delay_s=0.0, answer=None):
        self.statuses = list(statuses)
        self.delay_s = delay_s
        self.answer = answer if answer is not None else {"reference": "P-1"}
        self.requests: list[tuple[dict, bytes]] = []

    async def handle(self, request):
        self.requests.append((dict(request.headers), await request.read()))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        status = self.statuses[min(len(self.requests), len(self.statuses)) - 1]
        if status == 204:
            return web.Response(status=204)
        return web.json_response(self.answer, status=status)

    @property
    def bodies(self):
        return [json.loads(body) for _, body in self.requests]


class Sink:
    """The undelivered-warnings topic, in memory."""

    def __init__(self, fail=False):
        self.fail = fail
        self.sent: list[tuple[bytes, bytes]] = []

    async def __call__(self, key, value):
        if self.fail:
            raise ConnectionError("broker gone")
        self.sent.append((key, value))


async def _post_to(app, warning, tmp_path=None, sink=None, **settings):
    server = test_utils.TestServer(app, host="127.0.0.1")
    await server.start_server()
    client = WebhookClient(
        PlatformSettings(
            webhook_url=str(server.make_url("/warnings")),
            **{"max_attempts": 4, **settings},
        ),
        secret=SECRET,
        fallback=tmp_path / "undelivered.jsonl" if tmp_path else None,
        dead_letter=sink,
    )
    try:
        return await client.post(warning), client
    finally:
        await client.close()
        await server.close()


def post_to(platform, warning, **kwargs):
    app = web.Application()
    app.router.add_post("/warnings", platform.handle)
    return asyncio.run(_post_to(app, warning, **kwargs))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_signed(headers, body):
    verify(SECRET, headers, body, now_s=int(headers["X-Riskwatch-Timestamp"]))


def assert_jittered(waits):
    # Full jitter: attempt n waits anywhere in [0, min(cap, base * 2**(n-1))].
    for n, wait in enumerate(waits):
        assert 0 <= wait <= min(BACKOFF_MAX_S, BACKOFF_S * 2**n)


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_delivered_as_a_signed_cloudevent(status, warning, waits, caplog):
    platform = Platform(status)
    with caplog.at_level(logging.INFO, logger="stream_jobs.delivery"):
        receipt, client = post_to(platform, warning)
    assert receipt is not None
    assert (receipt.warning, receipt.event, receipt.status, receipt.attempts) == (
        warning.id,
        warning.version_id,
        status,
        1,
    )
    assert receipt.reference == (None if status == 204 else "P-1")
    assert (client.delivered, client.failed) == (1, 0)
    assert client.referenced == (status != 204)
    [(headers, body)] = platform.requests
    assert headers["Content-Type"] == "application/cloudevents+json"
    assert headers[IDEMPOTENCY_HEADER] == warning.version_id
    assert_signed(headers, body)
    assert platform.bodies[0]["data"]["id"] == warning.id
    assert waits == []
    assert (
        f"warning delivered warning={warning.id} event={warning.version_id} "
        f"reference={receipt.reference} status={status}" in caplog.text
    )
    assert SECRET.get_secret_value() not in caplog.text


@pytest.mark.parametrize("answer", [{"ref": "x"}, {"reference": 7}, ["P-1"], "P-1"])
def test_an_answer_without_a_string_reference_has_none(answer, warning, waits):
    receipt, client = post_to(Platform(202, answer=answer), warning)
    assert receipt is not None
    assert receipt.reference is None
    assert client.referenced == 0


@pytest.mark.parametrize("retryable", [500, 503, 429])
def test_retryable_answer_then_200_is_retried_with_the_same_event(
    retryable, warning, waits, caplog
):
    platform = Platform(retryable, retryable, 200)
    with caplog.at_level(logging.WARNING, logger="stream_jobs.delivery"):
        receipt, client = post_to(platform, warning)
    assert receipt is not None
    assert receipt.attempts == 3
    assert (client.delivered, client.failed) == (1, 0)
    bodies = {body for _, body in platform.requests}
    assert len(bodies) == 1, "every attempt sends the same bytes"
    assert {h[IDEMPOTENCY_HEADER] for h, _ in platform.requests} == {warning.version_id}
    for headers, body in platform.requests:
        assert_signed(headers, body)
    assert len(waits) == 2
    assert_jittered(waits)
    assert caplog.text.count(f"warning delivery retry warning={warning.id}") == 2


@pytest.mark.parametrize("refused", [400, 401, 404, 409, 422])
def test_4xx_is_not_retried_and_is_undelivered(
    refused, warning, waits, caplog, tmp_path
):
    platform, sink = Platform(refused, 200), Sink()
    with caplog.at_level(logging.ERROR, logger="stream_jobs.delivery"):
        receipt, client = post_to(platform, warning, tmp_path=tmp_path, sink=sink)
    assert receipt is None
    assert (client.delivered, client.failed) == (0, 1)
    assert len(platform.requests) == 1
    assert waits == []
    assert f"warning refused by platform warning={warning.id}" in caplog.text
    assert f"HTTP {refused}" in caplog.text
    [(_, value)] = sink.sent
    letter = DeadLetter.model_validate_json(value)
    assert letter.reason.startswith(f"refused: HTTP {refused}")


def test_persistent_500_is_dead_lettered_and_written_to_the_fallback(
    warning, waits, caplog, tmp_path
):
    platform, sink = Platform(500), Sink()
    with caplog.at_level(logging.WARNING, logger="stream_jobs.delivery"):
        receipt, client = post_to(
            platform, warning, tmp_path=tmp_path, sink=sink, max_attempts=3
        )
    assert receipt is None
    assert (client.delivered, client.failed) == (0, 1)
    assert (client.dead_lettered, client.fallback_written) == (1, 1)
    assert len(platform.requests) == 3
    assert len(waits) == 2
    assert "warning delivery failed warning=" in caplog.text
    assert "attempts=3" in caplog.text
    # The dead letter keeps the exact event, to be re-sent with the same id.
    [(key, value)] = sink.sent
    assert key == warning.id.encode()
    letter = DeadLetter.model_validate_json(value)
    assert (letter.source, letter.topic, letter.stage, letter.field) == (
        f"kafka:{WARNINGS}",
        WARNINGS,
        "delivery",
        "webhook",
    )
    assert letter.reason == "HTTP 500 after 3 attempts"
    assert letter.payload() == platform.requests[0][1]
    [line] = (tmp_path / "undelivered.jsonl").read_text().splitlines()
    fallback = json.loads(line)
    assert fallback["reason"] == "HTTP 500 after 3 attempts"
    assert fallback["event"] == platform.bodies[0]
    assert fallback["url"].endswith("/warnings")
    assert "written to fallback" in caplog.text


def test_a_broken_dead_letter_topic_still_leaves_the_fallback(
    warning, waits, caplog, tmp_path
):
    with caplog.at_level(logging.ERROR, logger="stream_jobs.delivery"):
        receipt, client = post_to(
            Platform(503), warning, tmp_path=tmp_path, sink=Sink(fail=True)
        )
    assert receipt is None
    assert (client.dead_lettered, client.fallback_written) == (0, 1)
    assert "not dead-lettered" in caplog.text
    assert "broker gone" in caplog.text


def test_connection_refused_gives_up_after_max_attempts(warning, waits, caplog):
    url = f"http://127.0.0.1:{free_port()}/warnings"
    client = WebhookClient(
        PlatformSettings(webhook_url=url, max_attempts=3), secret=SECRET
    )

    async def go():
        try:
            return await client.post(warning)
        finally:
            await client.close()

    with caplog.at_level(logging.ERROR, logger="stream_jobs.delivery"):
        receipt = asyncio.run(go())
    assert receipt is None
    assert (client.delivered, client.failed) == (0, 1)
    assert len(waits) == 2
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 1
    assert "attempts=3" in failures[0].getMessage()
    assert "Connect" in failures[0].getMessage()


def test_timeout_is_retried(warning, waits):
    platform = Platform(200, delay_s=0.3)
    receipt, client = post_to(platform, warning, max_attempts=2, timeout_s=0.05)
    assert receipt is None
    assert client.failed == 1
    assert len(platform.requests) == 2
    assert len(waits) == 1


def test_no_webhook_url_delivers_nothing(warning, waits):
    client = WebhookClient(PlatformSettings(webhook_url=None), secret=SECRET)
    assert asyncio.run(client.post(warning)) is None
    assert (client.delivered, client.failed) == (0, 0)


# Against the demo's receiver ---------------------------------------------------


def receiver_app(receiver, *, fail_first=0, slow_first=0, delay_s=0.0):
    """The receiver's app; its first answers fail with 500 or come late."""
    seen = {"n": 0}

    @web.middleware
    async def trouble(request, handler):
        seen["n"] += 1
        if seen["n"] <= fail_first:
            return web.json_response({"error": "down"}, status=500)
        response = await handler(request)
        if seen["n"] <= fail_first + slow_first:
            await asyncio.sleep(delay_s)  # handled, but the answer is lost
        return response

    app = receiver.app()
    app.middlewares.append(trouble)
    return app


def test_receiver_failing_then_recovering_records_exactly_one_copy(make_warning, waits):
    receiver = WarningReceiver("127.0.0.1", 0, secret=SECRET)
    warning = make_warning()
    receipt, _ = asyncio.run(
        _post_to(receiver_app(receiver, fail_first=3), warning, max_attempts=5)
    )
    assert receipt is not None
    assert receipt.attempts == 4
    assert receipt.reference == "SP-000001"
    assert receiver.received == 1
    assert list(receiver.warnings) == [warning.model_dump(mode="json")]
    assert receiver.unauthorized == 0


def test_an_answer_lost_after_recording_is_deduplicated(make_warning, waits):
    # The receiver records the event, but its answer misses the client's
    # timeout: the retry carries the same event id and is recorded once.
    receiver = WarningReceiver("127.0.0.1", 0, secret=SECRET)
    warning = make_warning()
    app = receiver_app(receiver, slow_first=1, delay_s=0.5)
    receipt, _ = asyncio.run(_post_to(app, warning, timeout_s=0.2))
    assert receipt is not None
    assert receipt.attempts == 2
    assert (receiver.received, receiver.duplicates) == (1, 1)
    assert receipt.reference == "SP-000001"


def test_receiver_with_another_secret_answers_401_and_is_not_retried(
    make_warning, waits, tmp_path
):
    receiver = WarningReceiver("127.0.0.1", 0, secret=SecretStr("not-ours"))
    sink = Sink()
    receipt, client = asyncio.run(
        _post_to(receiver.app(), make_warning(), tmp_path=tmp_path, sink=sink)
    )
    assert receipt is None
    assert (receiver.unauthorized, receiver.received) == (1, 0)
    assert waits == []
    assert client.failed == 1
    assert len(sink.sent) == 1


# Resending the fallback file ----------------------------------------------------


def _undelivered(tmp_path, *warnings):
    """The fallback file a worker leaves when nothing listens at the URL."""
    fallback = tmp_path / "undelivered.jsonl"
    settings = PlatformSettings(
        webhook_url=f"http://127.0.0.1:{free_port()}/warnings", max_attempts=1
    )

    async def fail_all():
        client = WebhookClient(settings, secret=SECRET, fallback=fallback)
        try:
            for warning in warnings:
                assert await client.post(warning) is None
        finally:
            await client.close()

    asyncio.run(fail_all())
    return fallback


def _resend(receiver, fallback, max_attempts=2):
    async def run():
        url = await receiver.start()
        try:
            settings = PlatformSettings(webhook_url=url, max_attempts=max_attempts)
            return await delivery.resend_fallback(settings, SECRET, fallback)
        finally:
            await receiver.stop()

    return asyncio.run(run())


def test_resend_delivers_the_fallback_events_and_keeps_what_is_no_event(
    make_warning, waits, tmp_path, caplog
):
    first, second = make_warning(), make_warning(device="GD-102")
    fallback = _undelivered(tmp_path, first, second)
    junk = "not json \udcff at all"
    with fallback.open("a", encoding="utf-8", errors="surrogateescape") as handle:
        handle.write(junk + "\n")
    receiver = WarningReceiver("127.0.0.1", 0, secret=SECRET)
    with caplog.at_level(logging.INFO, logger="stream_jobs.delivery"):
        result = _resend(receiver, fallback)
    assert (result.delivered, result.undelivered, result.kept) == (2, 0, 1)
    assert [w["id"] for w in receiver.warnings] == [first.id, second.id]
    # Only the line that is no event is left, byte for byte.
    assert fallback.read_bytes() == junk.encode("utf-8", "surrogateescape") + b"\n"
    assert list(tmp_path.glob("*.resending-*")) == []
    assert "fallback line kept: no warning event" in caplog.text
    assert "fallback resent" in caplog.text


def test_an_event_the_platform_got_after_all_is_recorded_once(
    make_warning, waits, tmp_path
):
    warning = make_warning()
    fallback = _undelivered(tmp_path, warning)
    receiver = WarningReceiver("127.0.0.1", 0, secret=SECRET)
    _resend(receiver, fallback)
    _undelivered(tmp_path, warning)  # the same event failed once more
    result = _resend(receiver, fallback)
    assert result.delivered == 1
    assert (receiver.received, receiver.duplicates) == (1, 1)


def test_events_failing_again_go_back_with_their_new_reason(
    make_warning, waits, tmp_path
):
    first, second = make_warning(), make_warning(device="GD-102")
    fallback = _undelivered(tmp_path, first, second)
    receiver = WarningReceiver("127.0.0.1", 0, secret=SECRET, fail_first=100)
    result = _resend(receiver, fallback, max_attempts=2)
    assert (result.delivered, result.undelivered, result.kept) == (0, 2, 0)
    lines = [json.loads(line) for line in fallback.read_text().splitlines()]
    assert [line["event"]["data"]["id"] for line in lines] == [first.id, second.id]
    assert {line["reason"] for line in lines} == {"HTTP 500 after 2 attempts"}
    assert receiver.failed == 4
    assert list(tmp_path.glob("*.resending-*")) == []


def test_a_file_left_by_an_interrupted_resend_is_taken_up(
    make_warning, waits, tmp_path
):
    warning = make_warning()
    fallback = _undelivered(tmp_path, warning)
    fallback.rename(tmp_path / "undelivered.jsonl.resending-1")
    receiver = WarningReceiver("127.0.0.1", 0, secret=SECRET)
    result = _resend(receiver, fallback)
    assert result.delivered == 1
    assert not fallback.exists()
    assert list(tmp_path.glob("*.resending-*")) == []


class _Killed(BaseException):
    """Stands for the resend being killed (SIGKILL, a closed terminal)."""


def test_a_resend_killed_mid_file_takes_up_at_the_next_line(
    make_warning, waits, tmp_path, monkeypatch
):
    first, second = make_warning(), make_warning(device="GD-102")
    fallback = _undelivered(tmp_path, first, second)
    junk = "not json at all"
    lines = fallback.read_text().splitlines()
    fallback.write_text("\n".join([junk, *lines]) + "\n")
    post = WebhookClient.post
    posted = []

    async def killed_at_the_second(self, record):
        if posted:
            raise _Killed
        posted.append(record.id)
        return await post(self, record)

    receiver = WarningReceiver("127.0.0.1", 0, secret=SECRET)
    monkeypatch.setattr(WebhookClient, "post", killed_at_the_second)
    with pytest.raises(_Killed):
        _resend(receiver, fallback)
    monkeypatch.setattr(WebhookClient, "post", post)
    result = _resend(receiver, fallback)
    # Of the interrupted file only the second event was left; the junk line,
    # written back by the first run, is taken up and kept once more.
    assert (result.delivered, result.undelivered, result.kept) == (1, 0, 1)
    assert [w["id"] for w in receiver.warnings] == [first.id, second.id]
    assert receiver.duplicates == 0
    assert fallback.read_text() == junk + "\n"
    assert list(tmp_path.glob("*.resending-*")) == []


def test_resend_without_a_webhook_url_is_a_config_error(tmp_path):
    with pytest.raises(delivery.ConfigError, match=r"platform\.webhook_url"):
        asyncio.run(
            delivery.resend_fallback(
                PlatformSettings(webhook_url=None), SECRET, tmp_path / "f.jsonl"
            )
        )


def test_riskwatch_warnings_resend_exits_1_while_events_stay_undelivered(
    make_warning, tmp_path
):
    # The CLI as a user runs it: the run folder's fallback file, a platform
    # that still does not answer (one attempt, nothing listening).
    run = tmp_path / "run"
    run.mkdir()
    fallback = _undelivered(run, make_warning())
    fallback.rename(run / "undelivered-warnings.jsonl")
    env = {
        "RISKWATCH_RUN_DIR": str(run),
        "RISKWATCH_PLATFORM__WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/w",
        "RISKWATCH_PLATFORM__MAX_ATTEMPTS": "1",
    }
    result = CliRunner().invoke(cli, ["warnings", "resend"], env=env)
    assert result.exit_code == 1, result.output
    assert "delivered 0, still undelivered 1, kept 0" in result.output
    assert "StillUndelivered: 1 events failed again" in result.output
    assert len((run / "undelivered-warnings.jsonl").read_text().splitlines()) == 1


def test_an_undelivered_warning_is_not_glued_to_a_torn_last_line(
    make_warning, waits, tmp_path
):
    fallback = tmp_path / "undelivered.jsonl"
    torn = '{"failed_at": "x", "event": {"id": "rw-half'
    fallback.write_text(torn)  # a write cut off by a crash: no line break
    warning = make_warning()
    _undelivered(tmp_path, warning)
    assert fallback.read_text().splitlines()[0] == torn
    receiver = WarningReceiver("127.0.0.1", 0, secret=SECRET)
    result = _resend(receiver, fallback)
    assert (result.delivered, result.undelivered, result.kept) == (1, 0, 1)
    assert [w["id"] for w in receiver.warnings] == [warning.id]
    assert fallback.read_text() == torn + "\n"


def test_a_new_fallback_file_is_readable_by_its_owner_only(make_warning, tmp_path):
    # It holds the officers' names and phone numbers of the warnings.
    fallback = _undelivered(tmp_path, make_warning())
    assert fallback.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("[1, 2]", "no event.data object"),
        ('{"event": 3}', "no event.data object"),
        ("not json", "not JSON (Expecting value"),
        (
            '{"event": {"data": {"id": "rw-1"}}}',
            "event.data.rule_id: Field required (20 problem(s))",
        ),
    ],
)
def test_a_kept_line_says_why_it_holds_no_warning(tmp_path, caplog, line, reason):
    fallback = tmp_path / "undelivered.jsonl"
    fallback.write_text(line + "\n")
    receiver = WarningReceiver("127.0.0.1", 0, secret=SECRET)
    with caplog.at_level(logging.WARNING, logger="stream_jobs.delivery"):
        result = _resend(receiver, fallback)
    assert result.kept == 1
    assert f"line=1: {reason}" in caplog.text


def test_riskwatch_warnings_resend_of_a_missing_file_is_an_error(tmp_path):
    env = {"RISKWATCH_RUN_DIR": str(tmp_path / "run")}
    missing = tmp_path / "nowhere.jsonl"
    result = CliRunner().invoke(
        cli, ["warnings", "resend", "--file", str(missing)], env=env
    )
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '--file': {missing} does not exist" in result.output
