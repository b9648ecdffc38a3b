"""The worker's lifecycle agent: commands in, versions out, table written."""

import asyncio
import json
import logging
from datetime import timedelta

from alert_rules.lifecycle import Action, Command, Refusal
from riskwatch.contracts import to_json_bytes
from riskwatch.settings import Settings
from stream_jobs.app import StreamWorker
from stream_jobs.storage import MemoryWriter
from tests.unit.conftest import T0, make_warning_record


class FakeTopic:
    def __init__(self):
        self.sent = []

    async def send(self, *, key, value):
        self.sent.append((key, value))


def _worker(tmp_path):
    settings = Settings(run_dir=tmp_path / "run", cache_dir=tmp_path / "cache")
    worker = StreamWorker(settings, writer_factory=MemoryWriter)
    worker.warning_state = {}
    worker.warnings, worker.warning_store = FakeTopic(), FakeTopic()
    worker.dead_letter, worker.refusals = FakeTopic(), FakeTopic()
    return worker


def _officer(warning, action, ident):
    return Command(
        id=ident,
        warning=warning,
        action=action,
        by="officer",
        at=T0 + timedelta(minutes=5),
    )


def test_commands_are_applied_published_twice_and_kept_in_the_table(tmp_path, caplog):
    worker = _worker(tmp_path)
    opened = make_warning_record()
    ack = _officer(opened.id, Action.ACKNOWLEDGE, "c-1")
    key = opened.id.encode()
    with caplog.at_level(logging.INFO, logger="stream_jobs.app"):
        for command in (Command.of_engine(opened), ack, ack):
            asyncio.run(worker.on_command(key, to_json_bytes(command)))
    statuses = [json.loads(v)["status"] for _, v in worker.warnings.sent]
    assert statuses == ["open", "acknowledged"]
    assert worker.warning_store.sent == worker.warnings.sent
    assert worker.warning_state[key]["record"]["status"] == "acknowledged"
    assert f"warning transition warning={opened.id} command=c-1" in caplog.text
    assert "command already applied" in caplog.text
    assert worker.counters["transitions"] == 2


def test_a_refused_command_is_logged_and_a_bad_one_dead_lettered(tmp_path, caplog):
    worker = _worker(tmp_path)
    opened = make_warning_record()
    close = _officer(opened.id, Action.CLOSE, "c-2")
    key = opened.id.encode()
    with caplog.at_level(logging.WARNING, logger="stream_jobs.app"):
        asyncio.run(worker.on_command(key, to_json_bytes(Command.of_engine(opened))))
        asyncio.run(worker.on_command(key, to_json_bytes(close)))
        asyncio.run(worker.on_command(key, b'{"id": "x"}'))
    assert len(worker.warnings.sent) == 1
    assert "command refused warning=" in caplog.text
    assert "is open: close is allowed only when it is disposed, resolved" in caplog.text
    assert worker.counters["commands_refused"] == 1
    assert len(worker.dead_letter.sent) == 1


def test_a_refused_command_is_published_as_a_refusal_naming_the_status(tmp_path):
    # Two officers acknowledge at once: both pass the API's check against
    # the store, the second is refused here. The refusal is what lets the
    # API answer its request 409 at once instead of 202 after its wait.
    worker = _worker(tmp_path)
    opened = make_warning_record()
    key = opened.id.encode()
    first = _officer(opened.id, Action.ACKNOWLEDGE, "api-1")
    second = _officer(opened.id, Action.ACKNOWLEDGE, "api-2")
    for command in (Command.of_engine(opened), first, second, second):
        asyncio.run(worker.on_command(key, to_json_bytes(command)))
    [(sent_key, value)] = worker.refusals.sent  # the redelivery changes nothing
    refusal = Refusal.model_validate_json(value)
    assert sent_key == key
    assert (refusal.command, refusal.warning, refusal.by) == (
        "api-2",
        opened.id,
        "officer",
    )
    assert (refusal.action, refusal.status) == (Action.ACKNOWLEDGE, "acknowledged")
    assert refusal.reason == (
        f"warning {opened.id} is acknowledged: acknowledge is allowed only when "
        "it is open, resolved"
    )
    assert [json.loads(v)["status"] for _, v in worker.warnings.sent] == [
        "open",
        "acknowledged",
    ]
