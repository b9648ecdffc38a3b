"""A feed outage on the real pipeline: 8 devices that stop arriving at once
(the gateway killed) give the platform receiver one feed warning and no
device-silent warning; when data returns through a new gateway the warning
resolves once, and no warning opens for those devices. Then 7 of them stop
for good (a second outage) while the eighth reports on: when it stops too it
gets its own warning, not absorbed by the outage still open."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from riskwatch.contracts import telemetry_topic
from riskwatch.timeouts import Deadline
from tests.integration.test_pipeline import (
    ENTERPRISE,
    _device,
    _reading,
    running_pipeline,
)

SILENT_S = 15
OUTAGE = "feed-silent"


@pytest.fixture(scope="module")
def pipeline(settings, stack, tmp_path_factory):
    yield from running_pipeline(
        settings,
        tmp_path_factory,
        silent_after_s=SILENT_S,
        outage_settle_s=10,
    )


def _send(pipeline, devices, start, count):
    for device in devices:
        topic = telemetry_topic("riskwatch/v1", ENTERPRISE, device)
        pipeline.publish(
            topic,
            [
                _reading(start + timedelta(seconds=10 * i), "pressure_mpa", 1.0, "MPa")
                for i in range(count)
            ],
        )


def test_an_outage_is_one_feed_warning_resolved_once_without_a_storm(pipeline):
    devices = [_device("PT") for _ in range(8)]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    _send(pipeline, devices, start, 30)
    baselines = pipeline.baselines()
    pipeline.wait_processed(baselines)
    pipeline.kill_gateway()

    def feed():
        return [
            w for w in list(pipeline.receiver.warnings) if w.get("rule_id") == OUTAGE
        ]

    def about_devices():
        return [
            w for w in list(pipeline.receiver.warnings) if w.get("device_id") in devices
        ]

    deadline = Deadline(120)
    while not feed():
        assert not deadline.expired(), "no feed warning"
        time.sleep(0.5)
    [opened] = feed()
    assert (opened["status"], opened["level"], opened["scope"]["kind"]) == (
        "open",
        "II",
        "feed",
    )
    assert (opened["enterprise_id"], opened["device_id"]) == ("*", "*")
    # Well past silent_after_s and the settling: still no device warning.
    time.sleep(SILENT_S + 15)
    assert about_devices() == []
    assert len(feed()) == 1

    pipeline.start_gateway()
    resumed = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    _send(pipeline, devices, resumed, 3)
    deadline = Deadline(120)
    while len(feed()) < 2:
        assert not deadline.expired(), f"not resolved: {feed()}"
        # Keep the devices talking, as a recovered feed does.
        _send(pipeline, devices, datetime.now(UTC).replace(microsecond=0), 1)
        time.sleep(2)
    resolved = feed()[1]
    assert (resolved["id"], resolved["status"]) == (opened["id"], "resolved")
    for _ in range(10):
        _send(pipeline, devices, datetime.now(UTC).replace(microsecond=0), 1)
        time.sleep(3)
    assert len(feed()) == 2
    assert about_devices() == []

    # 7 stop for good: a second outage, open while they stay silent.
    gone, last = devices[:7], devices[7]
    deadline = Deadline(120)
    while len(feed()) < 3:
        assert not deadline.expired(), f"no second outage: {feed()}"
        _send(pipeline, [last], datetime.now(UTC).replace(microsecond=0), 1)
        time.sleep(2)
    second = feed()[2]
    assert (second["status"], second["id"] != opened["id"]) == ("open", True)
    # The eighth reports past the second outage's settling, then stops.
    for _ in range(5):
        _send(pipeline, [last], datetime.now(UTC).replace(microsecond=0), 1)
        time.sleep(2)
    deadline = Deadline(120)
    while not about_devices():
        assert not deadline.expired(), "the device quiet after the outage began"
        time.sleep(0.5)
    time.sleep(5)  # anything else the scan that found it sent
    # HC002 is a hazardous-chemicals site: a pressure sensor's silence is
    # safety-sensor-silent (its device-silent is inhibited, not delivered).
    assert [(w["device_id"], w["rule_id"], w["status"]) for w in about_devices()] == [
        (last, "safety-sensor-silent", "open")
    ]
    assert not any(w["device_id"] in gone for w in about_devices())
    assert len(feed()) == 3  # the second outage neither resolved nor new
