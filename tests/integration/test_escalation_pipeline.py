"""Escalation on the real pipeline: a combustible gas ramp through 30 -> 60
%LEL and back is one warning, delivered to the platform receiver as opened
(II orange), escalated (I red), de-escalated (II) and resolved."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from riskwatch.timeouts import Deadline
from stream_jobs.cloudevent import TYPE_PREFIX
from tests.integration.test_pipeline import _device, running_pipeline
from tests.integration.test_silenced_pipeline import _gas

RULE = "combustible-gas-orange"


@pytest.fixture(scope="module")
def pipeline(settings, stack, tmp_path_factory):
    yield from running_pipeline(settings, tmp_path_factory)


def test_a_gas_ramp_is_one_warning_escalated_then_de_escalated(pipeline):
    device = _device("GD")
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    # One reading a minute: over 25 at minute 1 (orange), over 50 at 3 (red),
    # under 40 from 7 and held 5 minutes (orange at 12), under 20 from 13 and
    # held 5 minutes (resolved at 18).
    values = [10, 30, 40, 55, 60, 60, 45, 38, 35, 35, 35, 35, 35]
    values += [10] * 7
    _gas(pipeline, device, start, values)

    def received():
        return [
            w
            for w in list(pipeline.receiver.warnings)
            if w.get("device_id") == device and w.get("rule_id") == RULE
        ]

    deadline = Deadline(60)
    while len(received()) < 4:
        assert not deadline.expired(), f"versions received: {received()}"
        time.sleep(0.5)
    versions = received()
    assert len({w["id"] for w in versions}) == 1
    ident = versions[0]["id"]
    assert [(w["status"], w["level"], w["colour"]) for w in versions] == [
        ("open", "II", "orange"),
        ("open", "I", "red"),
        ("open", "II", "orange"),
        ("resolved", "II", "orange"),
    ]
    types = dict(pipeline.receiver.events)
    assert [types[f"{ident}.v{n}"] for n in range(1, 5)] == [
        TYPE_PREFIX + "opened",
        TYPE_PREFIX + "escalated",
        TYPE_PREFIX + "deescalated",
        TYPE_PREFIX + "resolved",
    ]
    final = versions[-1]
    assert final["start_time"] == versions[0]["start_time"]
    assert [
        (e["level"], datetime.fromisoformat(e["from"])) for e in final["levels"]
    ] == [
        ("II", start + timedelta(minutes=1)),
        ("I", start + timedelta(minutes=3)),
        ("II", start + timedelta(minutes=12)),
    ]
    escalated = versions[1]
    assert escalated["history"][-1]["from_level"] == "II"
    assert escalated["history"][-1]["level"] == "I"
    assert "Evacuate" in escalated["items"][0]["action"]
    # Level I is due within 1 h of the escalation, sooner than II's 4 h.
    assert datetime.fromisoformat(escalated["deadline"]) < datetime.fromisoformat(
        versions[0]["deadline"]
    )
