"""Grouping and inhibition on the real pipeline, with the default rules: two
gas detectors of a hazardous-chemicals enterprise falling silent reach the
platform receiver as one enterprise warning, a third falling silent later
joins it (an update) while its own device-silent warning is held back,
inhibited; when the first two report again the enterprise warning resolves
and the third's device warning, still open, is released to the platform."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from riskwatch.contracts import telemetry_topic
from riskwatch.timeouts import Deadline
from stream_jobs.cloudevent import TYPE_PREFIX
from tests.integration.test_pipeline import (
    ENTERPRISE,
    _device,
    _reading,
    running_pipeline,
)

SILENT_S = 15
GROUP = "hazchem-safety-sensors-silent"


@pytest.fixture(scope="module")
def pipeline(settings, stack, tmp_path_factory):
    yield from running_pipeline(
        settings,
        tmp_path_factory,
        silent_after_s=SILENT_S,
        outage_settle_s=5,
    )


def _send(pipeline, devices, count=1, start=None):
    start = start or datetime.now(UTC).replace(microsecond=0) - timedelta(
        seconds=2 * count
    )
    for device in devices:
        topic = telemetry_topic("riskwatch/v1", ENTERPRISE, device)
        pipeline.publish(
            topic,
            [
                _reading(
                    start + timedelta(seconds=2 * i), "combustible_gas_lel", 1.0, "%LEL"
                )
                for i in range(count)
            ],
        )


def _wait(pipeline, check, what, seconds=120, alive=()):
    deadline = Deadline(seconds)
    while not (found := check()):
        assert not deadline.expired(), f"{what}; received: {_received(pipeline)}"
        if alive:
            _send(pipeline, alive)  # keeps these devices from falling silent
        time.sleep(1)
    return found


def _received(pipeline):
    return list(pipeline.receiver.warnings)


def _group(pipeline):
    return [w for w in _received(pipeline) if w.get("rule_id") == GROUP]


def _device_silent(pipeline, device):
    # A hazardous-chemicals gas detector's silence opens safety-sensor-silent
    # (III), which inhibits its device-silent (IV, the same finding): the
    # safety rule's warning is the device warning the platform gets.
    return [
        w
        for w in _received(pipeline)
        if w.get("rule_id") == "safety-sensor-silent" and w.get("device_id") == device
    ]


def test_silent_sensors_are_one_enterprise_warning_inhibiting_the_later_ones(
    pipeline,
):
    first, second, third = (_device("GD") for _ in range(3))
    _send(pipeline, [first, second, third], count=3)
    # The first two fall silent; the third keeps reporting meanwhile.
    [opened] = _wait(
        pipeline,
        lambda: [w for w in _group(pipeline) if w["scope"]["id"] == ENTERPRISE],
        "no enterprise warning",
        alive=[third],
    )
    assert (opened["status"], opened["level"], opened["scope"]["kind"]) == (
        "open",
        "II",
        "enterprise",
    )
    assert (opened["enterprise_id"], opened["device_id"]) == (ENTERPRISE, "*")
    assert sorted(m["id"] for m in opened["members"]) == sorted([first, second])
    assert opened["officer"]["id"] == "GO-08"  # HC002's officer in the registry
    _wait(pipeline, lambda: _device_silent(pipeline, second), "no device-silent")

    # The third falls silent while the enterprise warning is open.
    _wait(
        pipeline,
        lambda: len(_group(pipeline)) >= 2,
        "the third never joined",
        seconds=90,
    )
    update = _group(pipeline)[1]
    assert update["id"] == opened["id"]
    assert sorted(m["id"] for m in update["members"]) == sorted([first, second, third])
    types = dict(pipeline.receiver.events)
    assert types[f"{opened['id']}.v2"] == TYPE_PREFIX + "updated"
    # Its own device-silent warning was opened and held back: not received.
    time.sleep(5)
    assert _device_silent(pipeline, third) == []

    # The first two report again: the enterprise warning resolves; the
    # third, still silent, gets its device warning released.
    _send(pipeline, [first, second])
    resolved = _wait(
        pipeline,
        lambda: [w for w in _group(pipeline) if w["status"] == "resolved"],
        "the enterprise warning never resolved",
        alive=[first, second],
    )
    assert [w["id"] for w in resolved] == [opened["id"]]
    [released] = _wait(
        pipeline,
        lambda: _device_silent(pipeline, third),
        "the inhibited warning was never released",
        seconds=60,
        alive=[first, second],
    )
    assert (released["status"], released["held"], released["inhibited_by"]) == (
        "open",
        False,
        opened["id"],
    )
