"""The worker expires the warnings of a device gone quiet for
``worker.expire_after_s``: once, through the lifecycle agent, with an audit
entry by the worker, delivered as an ``expired`` CloudEvent."""

import asyncio
import logging
import time

from alert_rules.lifecycle import Action, Command
from alert_rules.warning import WarningStatus
from riskwatch.settings import Settings
from stream_jobs.app import StreamWorker
from stream_jobs.cloudevent import event_type
from stream_jobs.processing import new_device_state, process_reading
from stream_jobs.storage import MemoryWriter
from tests.unit.conftest import FakeTopic, FakeWebhook, make_warning_record
from tests.unit.stream_jobs.test_processing import reading
from tests.unit.stream_jobs.test_worker_silences import (
    _deliver_all,
    _run_commands,
    _sent_commands,
)

DAY_NS = 86_400 * 10**9
OPENED = make_warning_record(device="PT-101")
KEY = b"HC001/PT-101"


class ExpiringRules:
    """Open warnings on every device it is asked about; forgets them on expiry."""

    def __init__(self):
        self.asked = []

    def evaluate(self, observation, enterprise, state):
        return state, []

    def expire(self, state, enterprise, device):
        self.asked.append((enterprise, device))
        ids = list(state.get("open", []))
        return {**state, "open": []}, ids


def _worker(tmp_path, **worker):
    settings = Settings(
        run_dir=tmp_path / "run", cache_dir=tmp_path / "cache", worker=worker
    )
    rules = ExpiringRules()
    w = StreamWorker(settings, rules=rules, writer_factory=MemoryWriter)
    w.device_state, w.warning_state = {}, {}
    for name in ("warnings", "warning_store", "commands", "expiries", "silences"):
        setattr(w, name, FakeTopic())
    w.webhook = FakeWebhook()
    w.silence_view.ready.set()
    w.findings.ready.set()
    return w, rules


def _quiet_device(worker, quiet_ns):
    state = {
        **new_device_state(),
        "rules": {"open": [OPENED.id]},
        "last_ts": 1,
        "last_seen_ns": time.time_ns() - quiet_ns,
        "silent": True,
    }
    worker.device_state[KEY] = state


def test_the_timer_finds_only_devices_quiet_for_expire_after_s(tmp_path):
    worker, _ = _worker(tmp_path, expire_after_s=3 * 86_400)
    _quiet_device(worker, 2 * DAY_NS)
    asyncio.run(worker._find_silent())
    assert worker.expiries.sent == []
    _quiet_device(worker, 4 * DAY_NS)
    asyncio.run(worker._find_silent())
    assert [k for k, _ in worker.expiries.sent] == [KEY]


def test_expiry_is_sent_once_applied_and_delivered_as_expired(tmp_path, caplog):
    worker, rules = _worker(tmp_path)  # the default: 7 days
    _run_commands(worker, [Command.of_engine(OPENED)])
    _quiet_device(worker, 8 * DAY_NS)
    wall_ns = time.time_ns()
    with caplog.at_level(logging.INFO, logger="stream_jobs.app"):
        asyncio.run(worker.on_expiry(KEY, wall_ns))
        asyncio.run(worker.on_expiry(KEY, wall_ns + 10**10))  # the next scan
    [expire] = _sent_commands(worker)
    assert rules.asked == [("HC001", "PT-101")]
    assert (expire.action, expire.warning, expire.by) == (
        Action.EXPIRE,
        OPENED.id,
        "riskwatch-worker",
    )
    assert "worker.expire_after_s 604800 s" in expire.comment
    assert worker.device_state[KEY]["expired"] is True
    assert "device expired enterprise=HC001 device=PT-101" in caplog.text
    assert worker.counters["expired"] == 1

    _run_commands(worker, [expire, expire])
    _deliver_all(worker)
    _, expired = worker.webhook.posted
    assert (expired.status, expired.version) == (WarningStatus.EXPIRED, 2)
    last = expired.history[-1]
    assert (last.by, last.from_status, last.command) == (
        "riskwatch-worker",
        WarningStatus.OPEN,
        expire.id,
    )
    assert event_type(expired) == "org.riskwatch.warning.expired"


def test_a_device_that_reads_again_can_expire_again(tmp_path):
    worker, _ = _worker(tmp_path)
    _quiet_device(worker, 8 * DAY_NS)
    asyncio.run(worker.on_expiry(KEY, time.time_ns()))
    state = worker.device_state[KEY]
    back = process_reading(
        reading(10**18, device="PT-101", pressure_mpa=1.0), state, None, worker.rules
    )
    assert back.state["expired"] is False
