"""Flap detection on the real pipeline: a combustible gas reading going over
25 %LEL and back under 20 again and again is one warning, delivered to the
platform receiver as opened, flapping and (once the gas has stayed under 20
for 30 minutes) resolved."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from riskwatch.timeouts import Deadline
from stream_jobs.cloudevent import FLAPPING, TYPE_PREFIX
from tests.integration.test_pipeline import _device, running_pipeline
from tests.integration.test_silenced_pipeline import _gas

RULE = "combustible-gas-orange"


@pytest.fixture(scope="module")
def pipeline(settings, stack, tmp_path_factory):
    yield from running_pipeline(settings, tmp_path_factory)


def test_a_hovering_gas_reading_is_one_flapping_warning(pipeline):
    device = _device("GD")
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    # One reading a minute. Each cycle: over 25, under 20 for 2 minutes, over
    # 25 again, then under 20 for 6 minutes, longer than the rule's clear_for
    # (5m): without flap detection, one warning a cycle. Then 35 minutes
    # under 20: more than flap.stable_for (30m).
    cycle = [27, 18, 18, 27, 18, 18, 18, 18, 18, 18]
    values = cycle * 4 + [3] * 35
    _gas(pipeline, device, start, values)

    def received():
        return [
            w
            for w in list(pipeline.receiver.warnings)
            if w.get("device_id") == device and w.get("rule_id") == RULE
        ]

    deadline = Deadline(60)
    while not any(w["status"] == "resolved" for w in received()):
        assert not deadline.expired(), f"versions received: {received()}"
        time.sleep(0.5)
    time.sleep(2)  # anything more would have arrived by now
    versions = received()
    assert len({w["id"] for w in versions}) == 1
    assert [(w["status"], w["flapping"]) for w in versions] == [
        ("open", False),
        ("open", True),
        ("resolved", True),
    ]
    ident = versions[0]["id"]
    types = dict(pipeline.receiver.events)
    assert [types[f"{ident}.v{n}"] for n in range(1, 4)] == [
        TYPE_PREFIX + "opened",
        FLAPPING,
        TYPE_PREFIX + "resolved",
    ]
    marked = versions[1]
    # Opened at minute 0, clear from 1, over at 3, clear again from 4.
    assert marked["history"][-1]["comment"].startswith("flapping: 4 changes")
    assert "[flapping: 4 changes" in marked["items"][0]["observed"]
    # The last reading over 20 is at minute 33 (the fourth cycle's second
    # 27): resolved 30 minutes after the first reading under 20 after it.
    resolved = datetime.fromisoformat(versions[-1]["resolved_time"])
    assert resolved == start + timedelta(minutes=34 + 30)
