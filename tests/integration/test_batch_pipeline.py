"""The scoring agent's batches on the real services: many devices scored
together, every reading stored once, and the detector states (msgpack in the
``device-state`` changelog) recovered by a worker started after a crash."""

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

DEVICES = 12
READINGS = 80


@pytest.fixture(scope="module")
def pipeline(settings, stack, tmp_path_factory):
    # Small batches: a run of readings spans many batches, and a batch holds
    # several readings of a device as well as many devices.
    yield from running_pipeline(
        settings, tmp_path_factory, score_batch=64, score_wait_s=0.2
    )


def _pressure(i: int, device: int) -> float:
    return 1.0 + 0.01 * ((i + device) % 5)


def test_batches_are_scored_and_a_crashed_worker_continues_from_the_changelog(
    pipeline,
):
    devices = [_device("PT") for _ in range(DEVICES)]
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)

    def payloads(device: int, steps: range) -> list[bytes]:
        return [
            _reading(
                start + timedelta(minutes=i),
                "pressure_mpa",
                _pressure(i, device),
                "MPa",
            )
            for i in steps
        ]

    baselines = pipeline.baselines()
    for d, device in enumerate(devices):
        topic = telemetry_topic("riskwatch/v1", ENTERPRISE, device)
        pipeline.publish(topic, payloads(d, range(READINGS)))
    pipeline.wait_processed(baselines)
    for device in devices:
        scores = pipeline.stored(device, "score")
        assert len(scores) == READINGS
        assert all(0.0 <= r.get_value() <= 1.0 for r in scores)

    # A crash: the new worker (same consumer group) recovers the states from
    # the changelog. Redeliveries of the last readings are dropped; a spike
    # right after is reported, which a series that forgot its past (learning
    # for its first 30 readings) could not do.
    pipeline.kill_worker()
    pipeline.start_worker()
    baselines = pipeline.baselines()
    spiked = devices[0]
    topic = telemetry_topic("riskwatch/v1", ENTERPRISE, spiked)
    spike = start + timedelta(minutes=READINGS)
    again = payloads(0, range(READINGS - 10, READINGS))
    pipeline.publish(topic, [*again, _reading(spike, "pressure_mpa", 1.9, "MPa")])
    pipeline.wait_processed(baselines)
    scores = pipeline.stored(spiked, "score")
    assert len(scores) == READINGS + 1
    assert scores[-1].get_time() == spike
    assert scores[-1].get_value() >= 0.5
    deadline = Deadline(60)
    while not [
        w
        for w in list(pipeline.receiver.warnings)
        if w["device_id"] == spiked and w["rule_id"] == "spike-or-drop"
    ]:
        assert not deadline.expired(), "no spike-or-drop warning after the restart"
        time.sleep(0.5)
