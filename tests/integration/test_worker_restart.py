"""A worker killed with a warning open neither re-fires it nor forgets it: the
rule state lives in changelog-backed tables and every version has a stable
id, so after a restart the same warning resolves and the platform holds one
copy of each version."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from riskwatch.contracts import telemetry_topic
from riskwatch.timeouts import Deadline
from tests.integration.test_pipeline import _device, _reading, running_pipeline

ENTERPRISE = "HC002"
RULE = "combustible-gas-orange"


@pytest.fixture(scope="module")
def pipeline(settings, stack, tmp_path_factory):
    yield from running_pipeline(settings, tmp_path_factory)


def _gas(start: datetime, minutes: range, lel: float) -> list[bytes]:
    return [
        _reading(start + timedelta(minutes=m), "combustible_gas_lel", lel, "%LEL")
        for m in minutes
    ]


def _versions(pipeline, device: str) -> list[tuple[str, str, int]]:
    return [
        (w["id"], w["status"], len(w["history"]))
        for w in list(pipeline.receiver.warnings)
        if w.get("device_id") == device and w.get("rule_id") == RULE
    ]


def _wait_for(pipeline, device: str, count: int) -> list[tuple[str, str, int]]:
    deadline = Deadline(60)
    while len(_versions(pipeline, device)) < count and not deadline.expired():
        time.sleep(0.5)
    return _versions(pipeline, device)


# The readings published while the worker is down wait on its partition: a
# restarted worker that recovers its tables must still score them (in about
# half the restarts faust-streaming 0.15 dropped them; see
# stream_jobs.app.hold_streams_for_seek).
def test_a_worker_killed_with_a_warning_open_resolves_it_after_restart(pipeline):
    device = _device("GD")
    topic = telemetry_topic("riskwatch/v1", ENTERPRISE, device)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    baselines = pipeline.baselines()
    pipeline.publish(topic, _gas(start, range(0, 10), 30.0))
    pipeline.wait_processed(baselines)
    (opened,) = _wait_for(pipeline, device, 1)
    assert opened[1:] == ("open", 1)

    pipeline.kill_worker()
    # While it is down: the leak goes on, then it is over (under 20 %LEL for
    # more than the rule's 5 minutes of clear).
    pipeline.publish(topic, _gas(start, range(10, 20), 30.0))
    pipeline.publish(topic, _gas(start, range(20, 35), 5.0))
    pipeline.start_worker()
    pipeline.wait_processed(baselines)
    versions = _wait_for(pipeline, device, 2)
    # One warning, the same id: opened once, resolved once, never re-opened.
    assert versions == [(opened[0], "open", 1), (opened[0], "resolved", 2)]
    resolved = next(
        w
        for w in list(pipeline.receiver.warnings)
        if w.get("device_id") == device and w["status"] == "resolved"
    )
    assert datetime.fromisoformat(resolved["start_time"]) == start
    # Cleared at minute 20, held 5 minutes.
    assert datetime.fromisoformat(resolved["resolved_time"]) == start + timedelta(
        minutes=25
    )
