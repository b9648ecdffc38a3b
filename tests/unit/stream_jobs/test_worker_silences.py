"""The worker enforces silences: an opening a silence covers is recorded and
held back from the platform, logged and counted once; a held warning still
active when no silence covers it any more is released through the lifecycle
agent, and the platform then gets it."""

import asyncio
import json
import logging
from datetime import timedelta

from alert_rules import Level
from alert_rules.lifecycle import Action, Command, worker_command
from alert_rules.silences import Silence
from riskwatch.contracts import to_json_bytes
from tests.unit.conftest import (
    T0,
    fake_worker,
    make_warning_record,
)


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


async def _stream(values):
    for value in values:
        yield value


def _worker(tmp_path, clock):
    return fake_worker(tmp_path, clock=clock)


def _silence(worker, kind, ident, until, ident_silence="sil-1"):
    silence = Silence.model_validate(
        {
            "id": ident_silence,
            "subject": {"kind": kind, "id": ident},
            "reason": "detector calibration",
            "until": until,
            "by": "officer-li",
            "at": T0,
        }
    )
    worker.silence_view.apply(silence.id.encode(), to_json_bytes(silence))


def _sent_commands(worker):
    return [Command.model_validate_json(v) for _, v in worker.commands.sent]


def _run_commands(worker, commands):
    for command in commands:
        asyncio.run(worker.on_command(command.warning.encode(), to_json_bytes(command)))


def _deliver_all(worker):
    asyncio.run(worker._deliver(_stream([v for _, v in worker.warnings.sent])))


def test_a_covered_opening_is_held_logged_and_counted_once(tmp_path, caplog):
    clock = Clock(T0 + timedelta(minutes=5))
    worker = _worker(tmp_path, clock)
    _silence(worker, "device", "HC001/GD-101", T0 + timedelta(hours=1))
    opened = make_warning_record()
    other = make_warning_record(device="GD-102")
    with caplog.at_level(logging.INFO, logger="stream_jobs.app"):
        asyncio.run(worker._publish([opened, other], []))
    held, free = _sent_commands(worker)
    assert (held.record.held, held.record.silenced_by) == (True, "sil-1")
    assert (free.record.held, free.record.silenced_by) == (False, None)
    lines = [r.getMessage() for r in caplog.records if "silenced" in r.getMessage()]
    assert lines == [
        f"warning silenced warning={opened.id} silence=sil-1 rule=combustible-gas "
        "enterprise=HC001 device=GD-101"
    ]
    assert worker.counters["silenced"] == 1

    # Through the lifecycle agent: stored with the mark, not posted.
    _run_commands(worker, [held, free])
    _deliver_all(worker)
    assert [r.id for r in worker.webhook.posted] == [other.id]
    assert json.loads(worker.warning_store.sent[0][1])["held"] is True
    assert worker.counters["held"] == 1


def test_a_resolution_of_a_held_warning_is_held_too(tmp_path):
    worker = _worker(tmp_path, Clock(T0))
    _silence(worker, "rule", "combustible-gas", T0 + timedelta(hours=1))
    asyncio.run(worker._publish([make_warning_record()], []))
    _run_commands(worker, _sent_commands(worker))
    resolved = make_warning_record(resolved=True)
    _run_commands(worker, [Command.of_engine(resolved)])
    _deliver_all(worker)
    assert worker.webhook.posted == []
    # Over before the silence ended: nothing to release.
    clock = worker.clock
    clock.now = T0 + timedelta(hours=2)
    asyncio.run(worker._release_held())
    assert worker.commands.sent[1:] == []


def test_an_ended_silence_stops_holding_and_releases_what_is_still_open(
    tmp_path, caplog
):
    clock = Clock(T0 + timedelta(minutes=5))
    worker = _worker(tmp_path, clock)
    _silence(worker, "enterprise", "HC001", T0 + timedelta(hours=1))
    asyncio.run(worker._publish([make_warning_record()], []))
    _run_commands(worker, _sent_commands(worker))
    worker.commands.sent.clear()

    asyncio.run(worker._release_held())  # still silenced
    assert worker.commands.sent == []

    clock.now = T0 + timedelta(hours=1)  # `until` is exclusive
    with caplog.at_level(logging.INFO, logger="stream_jobs.app"):
        asyncio.run(worker._release_held())
        asyncio.run(worker._release_held())  # not sent twice
    [release] = _sent_commands(worker)
    assert (release.action, release.by) == (Action.RELEASE, "riskwatch-worker")
    assert "warning release sent warning=" in caplog.text

    # A new opening after the end is not held.
    later = make_warning_record(start=T0 + timedelta(hours=1))
    asyncio.run(worker._publish([later], []))
    assert _sent_commands(worker)[-1].record.held is False

    worker.warnings.sent.clear()
    _run_commands(worker, [release, release])
    _deliver_all(worker)
    [posted] = worker.webhook.posted
    assert (posted.held, posted.silenced_by, posted.version) == (False, "sil-1", 1)


def test_a_lifted_silence_releases_at_the_next_scan(tmp_path):
    clock = Clock(T0 + timedelta(minutes=5))
    worker = _worker(tmp_path, clock)
    _silence(worker, "device", "HC001/GD-101", T0 + timedelta(hours=8))
    asyncio.run(worker._publish([make_warning_record()], []))
    _run_commands(worker, _sent_commands(worker))
    worker.commands.sent.clear()
    _silence(worker, "device", "HC001/GD-101", T0 + timedelta(minutes=6))
    clock.now = T0 + timedelta(minutes=6)
    asyncio.run(worker._release_held())
    assert [c.action for c in _sent_commands(worker)] == [Action.RELEASE]


def test_release_changes_nothing_on_a_warning_that_is_not_held(tmp_path):
    worker = _worker(tmp_path, Clock(T0))
    opened = make_warning_record()
    release = worker_command(opened.id, Action.RELEASE, T0, "test")
    _run_commands(worker, [Command.of_engine(opened), release])
    assert len(worker.warnings.sent) == 1
    assert worker.counters["commands_refused"] == 0


def _escalated(opened):
    """The engine's escalation of ``opened`` to level I, one minute later."""
    at = opened.history[0].at + timedelta(minutes=1)
    entry = opened.history[0].model_copy(
        update={
            "at": at,
            "comment": "escalated II -> I: value above 50",
            "from_status": opened.status,
            "from_level": opened.level,
            "level": Level.I,
        }
    )
    return opened.model_copy(
        update={
            "level": Level.I,
            "colour": "red",
            "history": [*opened.history, entry],
            "issue_time": at,
        }
    )


def _open_and_deliver(worker):
    opened = make_warning_record()
    asyncio.run(worker._publish([opened], []))
    _run_commands(worker, _sent_commands(worker))
    _deliver_all(worker)
    worker.commands.sent.clear()
    worker.warnings.sent.clear()
    return opened


def test_a_silence_recorded_while_a_warning_is_open_holds_its_later_versions(
    tmp_path,
):
    clock = Clock(T0 + timedelta(minutes=5))
    worker = _worker(tmp_path, clock)
    opened = _open_and_deliver(worker)
    assert [r.version for r in worker.webhook.posted] == [1]

    _silence(worker, "device", "HC001/GD-101", T0 + timedelta(hours=1))
    asyncio.run(worker._publish([_escalated(opened)], []))
    [escalation] = _sent_commands(worker)
    assert (escalation.record.held, escalation.record.silenced_by) == (True, "sil-1")
    _run_commands(worker, [escalation])
    _deliver_all(worker)
    assert [r.version for r in worker.webhook.posted] == [1]  # held back
    stored = json.loads(worker.warning_store.sent[-1][1])
    assert (stored["held"], stored["held_from"], stored["level"]) == (True, 2, "I")

    worker.commands.sent.clear()
    asyncio.run(worker._release_held())  # still silenced
    assert worker.commands.sent == []
    clock.now = T0 + timedelta(hours=1)
    asyncio.run(worker._release_held())
    worker.warnings.sent.clear()
    _run_commands(worker, _sent_commands(worker))
    _deliver_all(worker)
    posted = worker.webhook.posted[-1]
    assert (posted.version, posted.level.value, posted.held) == (2, "I", False)


def test_a_warning_held_after_its_opening_is_released_resolved(tmp_path):
    # The platform has the opening: it must hear of the end, even though the
    # warning resolved while the silence held it.
    clock = Clock(T0 + timedelta(minutes=5))
    worker = _worker(tmp_path, clock)
    opened = _open_and_deliver(worker)
    _silence(worker, "rule", "combustible-gas", T0 + timedelta(hours=1))
    resolved = make_warning_record(resolved=True)
    asyncio.run(worker._publish([resolved], []))
    _run_commands(worker, _sent_commands(worker))
    _deliver_all(worker)
    assert [r.version for r in worker.webhook.posted] == [1]
    worker.commands.sent.clear()
    clock.now = T0 + timedelta(hours=2)
    asyncio.run(worker._release_held())
    [release] = _sent_commands(worker)
    assert release.comment == "silence sil-1 ended with the warning resolved"
    worker.warnings.sent.clear()
    _run_commands(worker, [release])
    _deliver_all(worker)
    posted = worker.webhook.posted[-1]
    assert (posted.id, posted.status.value, posted.held) == (
        opened.id,
        "resolved",
        False,
    )
    # Released once: the next scan sends nothing.
    worker.commands.sent.clear()
    asyncio.run(worker._release_held())
    assert worker.commands.sent == []
