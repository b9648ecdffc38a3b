"""Event time on the real pipeline (worker.lateness_s 15 s).

* Gas readings 5 s apart whose onset reaches the broker after two later
  readings give one warning starting at the onset; a reading older than the
  lateness is stored in InfluxDB but not evaluated (its 90 %LEL opens no red
  level) and is counted; the readings still held when the device goes quiet
  are released by the silence scan, which resolves the warning.
* A device whose clock is 10 minutes behind gets one ``device-clock-skew``
  warning with the offset as its observed value, resolved once the clock is
  right again.
* A gas channel of a hazardous-chemicals device that stops while its
  temperature channel still reports gives one ``safety-sensor-stale``
  warning after 30 minutes, resolved when the gas readings return.
* A live device (readings 2 s apart, timed as they are sent) with one
  reading stamped 290 s ahead, then quiet long enough for the silence scan,
  then 60 %LEL: the gas warning opens at the first 60 %LEL reading, none of
  its readings reported as not evaluated. Before issue 5's fix the scan
  released the reading from the future and every later one was too late.
* A live device whose clock steps back an hour and then reads 60 %LEL: the
  step is re-based on its third reading and the gas warning opens at the
  first stepped reading, dated on the gateway's clock; InfluxDB keeps the
  readings at the device's own times.
* Two readings of one device at the same time with different values: the
  first (60 %LEL) is evaluated and opens the gas warning, the second is
  dead-lettered by the worker with field ``ts`` and both values, and
  InfluxDB holds the second (written last), as docs/rules.md says.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime, timedelta

import pytest

from riskwatch.contracts import ReadingRecord, telemetry_topic
from riskwatch.demo import read_dead_letters
from riskwatch.topics import DEAD_LETTER
from tests.integration.conftest import until
from tests.integration.test_pipeline import (
    ENTERPRISE,
    _device,
    _reading,
    running_pipeline,
)

LATENESS_S = 15
GAS_RULE = "combustible-gas-orange"
CLOCK_RULE = "device-clock-skew"
STALE_RULE = "safety-sensor-stale"


@pytest.fixture(scope="module")
def pipeline(settings, stack, tmp_path_factory):
    yield from running_pipeline(settings, tmp_path_factory, lateness_s=LATENESS_S)


def _received(pipeline, device, rule):
    return [
        w
        for w in list(pipeline.receiver.warnings)
        if w.get("device_id") == device and w.get("rule_id") == rule
    ]


def test_late_and_out_of_order_gas_readings_start_the_warning_at_the_onset(
    pipeline,
):
    device = _device("GD")
    topic = telemetry_topic("riskwatch/v1", ENTERPRISE, device)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)

    def at(i: float) -> datetime:
        return start + timedelta(seconds=5 * i)

    # 2 %LEL, over 25 from reading 10 (the onset) to 29, then 3 %LEL: the
    # clear (under 20 for 5 minutes) is met at reading 90.
    values = [2.0] * 10 + [30.0 + i % 4 for i in range(20)] + [3.0] * 62
    order = list(range(len(values)))
    order.remove(10)
    order.insert(order.index(12) + 1, 10)  # the onset after readings 11 and 12
    payloads = [
        _reading(at(i), "combustible_gas_lel", values[i], "%LEL") for i in order
    ]
    # Far behind the watermark when it arrives: stored, never evaluated.
    too_late = at(2.5)
    payloads.append(_reading(too_late, "combustible_gas_lel", 90.0, "%LEL"))
    baselines = pipeline.baselines()
    pipeline.publish(topic, payloads)
    pipeline.wait_processed(baselines)

    # Reading 90 is within the lateness of the last one (91): only the
    # silence scan's flush of a quiet device applies it.
    versions = until(
        lambda: (
            [
                w
                for w in _received(pipeline, device, GAS_RULE)
                if w["status"] == "resolved"
            ]
            and _received(pipeline, device, GAS_RULE)
        ),
        "the gas warning did not resolve",
    )
    assert [(w["status"], w["level"]) for w in versions] == [
        ("open", "II"),
        ("resolved", "II"),
    ]
    opened, resolved = versions
    assert datetime.fromisoformat(opened["start_time"]) == at(10)
    assert datetime.fromisoformat(resolved["resolved_time"]) == at(90)

    stored = pipeline.stored(device)
    assert len(stored) == len(values) + 1
    assert [r.get_value() for r in stored if r.get_time() == too_late] == [90.0]
    log = max(pipeline.folder.glob("worker-*.log"), key=lambda p: p.stat().st_mtime)
    until(
        lambda: re.search(r"worker stats .*\blate=[1-9]", log.read_text()),
        "the stats line does not count the late reading",
        seconds=45,
    )


def test_a_clock_behind_gives_one_warning_resolved_when_set_right(pipeline):
    device = _device("TT")
    topic = telemetry_topic("riskwatch/v1", ENTERPRISE, device)

    def send(behind: timedelta, count: int) -> None:
        # Paced like a live device: device time advances as wall time does.
        payloads = []
        for i in range(count):
            ts = datetime.now(UTC) + timedelta(seconds=2 * i) - behind
            payloads.append(_reading(ts, "temperature_c", 21.0 + i % 2, "°C"))
        baselines = pipeline.baselines()
        pipeline.publish(topic, payloads[:1])
        for payload in payloads[1:]:
            time.sleep(2.0)
            pipeline.publish(topic, [payload])
        pipeline.wait_processed(baselines)

    send(timedelta(minutes=10), 8)
    [opened] = until(
        lambda: _received(pipeline, device, CLOCK_RULE), "no clock-skew warning"
    )
    assert (opened["status"], opened["level"]) == ("open", "IV")
    item = opened["items"][0]
    assert item["unit"] == "s"
    assert -605 < item["observed_value"] < -599
    assert "behind the gateway's" in item["observed"]
    assert "NTP" in item["action"]

    send(timedelta(0), 8)
    versions = until(
        lambda: [w for w in _received(pipeline, device, CLOCK_RULE)][1:],
        "the clock-skew warning did not resolve",
    )
    assert [w["status"] for w in versions] == ["resolved"]
    assert {w["id"] for w in _received(pipeline, device, CLOCK_RULE)} == {opened["id"]}


def test_a_dead_gas_channel_is_stale_while_the_temperature_reports(pipeline):
    device = _device("GT")
    topic = telemetry_topic("riskwatch/v1", ENTERPRISE, device)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)

    def payload(minute: int, gas: bool) -> bytes:
        metrics = [{"metric": "temperature_c", "value": 40.0, "unit": "°C"}]
        if gas:
            metrics.append(
                {"metric": "combustible_gas_lel", "value": 1.0, "unit": "%LEL"}
            )
        ts = start + timedelta(minutes=minute)
        return json.dumps({"ts": ts.isoformat(), "metrics": metrics}).encode()

    # Both channels for minutes 0-2, the temperature alone 3-39, both from 40.
    payloads = [payload(m, gas=m < 3 or m >= 40) for m in range(43)]
    baselines = pipeline.baselines()
    pipeline.publish(topic, payloads)
    pipeline.wait_processed(baselines)
    versions = until(
        lambda: (
            [
                w
                for w in _received(pipeline, device, STALE_RULE)
                if w["status"] == "resolved"
            ]
            and _received(pipeline, device, STALE_RULE)
        ),
        "no resolved stale warning",
    )
    assert [(w["status"], w["level"], w["metric"]) for w in versions] == [
        ("open", "III", "combustible_gas_lel"),
        ("resolved", "III", "combustible_gas_lel"),
    ]
    opened, resolved = versions
    # The last gas reading at minute 2: 30 minutes later, at a temperature one.
    assert datetime.fromisoformat(opened["start_time"]) == start + timedelta(minutes=32)
    assert opened["items"][0]["observed_value"] == 1800.0
    assert datetime.fromisoformat(resolved["resolved_time"]) == start + timedelta(
        minutes=40
    )


def _paced(pipeline, topic, readings, every_s=2.0):
    """Publish ``(offset from now, value)`` gas readings one by one, timed
    when each is sent (plus its offset), like a live device; their times."""
    baselines = pipeline.baselines()
    times = []
    for i, (offset, value) in enumerate(readings):
        if i:
            time.sleep(every_s)
        ts = datetime.now(UTC) + offset
        times.append(ts)
        pipeline.publish(topic, [_reading(ts, "combustible_gas_lel", value, "%LEL")])
    pipeline.wait_processed(baselines)
    return times


def _worker_log(pipeline):
    return max(
        pipeline.folder.glob("worker-*.log"), key=lambda p: p.stat().st_mtime
    ).read_text()


def test_a_reading_290_s_ahead_leaves_later_gas_readings_evaluated(pipeline):
    device = _device("GF")
    topic = telemetry_topic("riskwatch/v1", ENTERPRISE, device)
    now = timedelta(0)
    _paced(pipeline, topic, [(now, 2.0)] * 3 + [(timedelta(seconds=290), 2.0)])
    # Quiet for more than the lateness and a silence scan (every 10 s).
    time.sleep(LATENESS_S + 12)
    times = _paced(pipeline, topic, [(now, 60.0)] * 5)
    [opened, *_] = until(
        lambda: _received(pipeline, device, GAS_RULE), "no gas warning after 290 s"
    )
    assert opened["status"] == "open"
    assert datetime.fromisoformat(opened["start_time"]) == times[0]
    assert f"not evaluated enterprise={ENTERPRISE} device={device} " not in (
        _worker_log(pipeline)
    )
    # Every reading stored at its own time (the query's range ends now).
    future = pipeline.query(
        f'from(bucket: "{pipeline.settings.influxdb.bucket}") '
        "|> range(start: 0, stop: 2100-01-01T00:00:00Z) "
        f'|> filter(fn: (r) => r.device == "{device}" and r._field == "value")'
        '|> group() |> sort(columns: ["_time"])'
    )
    assert [r.get_value() for r in future] == [2.0] * 3 + [60.0] * 5 + [2.0]


def test_a_clock_stepped_back_an_hour_goes_on_being_evaluated(pipeline):
    device = _device("GB")
    topic = telemetry_topic("riskwatch/v1", ENTERPRISE, device)
    _paced(pipeline, topic, [(timedelta(0), 2.0)] * 3)
    # Applied (the silence scan's flush) before the step: it comes after them.
    time.sleep(LATENESS_S + 12)
    back = timedelta(hours=-1)
    times = _paced(pipeline, topic, [(back, 60.0)] * 5)
    [opened, *_] = until(
        lambda: _received(pipeline, device, GAS_RULE), "no gas warning after the step"
    )
    # Event time carries on from the clock before the step: the first
    # stepped reading's time an hour on, to within the network's delays.
    start = datetime.fromisoformat(opened["start_time"])
    assert abs(start - (times[0] - back)) < timedelta(seconds=1)
    log = _worker_log(pipeline)
    assert re.search(
        rf"device clock stepped enterprise=\S+ device={device} "
        r"step_s=-3600 ",
        log,
    )
    assert f"not evaluated enterprise={ENTERPRISE} device={device} " not in log
    stored = pipeline.stored(device)
    assert sorted(r.get_time() for r in stored if r.get_value() == 60.0) == times


def test_a_conflicting_reading_is_dead_lettered_and_the_first_evaluated(pipeline):
    device = _device("GC")
    topic = telemetry_topic("riskwatch/v1", ENTERPRISE, device)
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    baselines = pipeline.baselines()
    pipeline.publish(
        topic,
        [
            _reading(ts, "combustible_gas_lel", 60.0, "%LEL"),
            _reading(ts, "combustible_gas_lel", 60.0, "%LEL"),  # a redelivery
            _reading(ts, "combustible_gas_lel", 2.0, "%LEL"),
        ],
    )
    pipeline.wait_processed(baselines)

    def worker_letters():
        return [
            letter
            for letter in asyncio.run(
                read_dead_letters(
                    pipeline.settings.kafka.bootstrap,
                    baselines[DEAD_LETTER],
                    stage="worker",
                )
            )
            if device.encode() in letter.payload()
        ]

    [letter] = until(worker_letters, "no dead letter for the conflict")
    assert letter.field == "ts"
    assert letter.reason.endswith(
        f"({ts.isoformat().replace('+00:00', 'Z')}): "
        "combustible_gas_lel 2 here, 60 kept"
    )
    refused = ReadingRecord.model_validate_json(letter.payload())
    assert (refused.device, refused.metrics[0].value) == (device, 2.0)
    [opened, *_] = until(
        lambda: _received(pipeline, device, GAS_RULE), "the first value not evaluated"
    )
    assert datetime.fromisoformat(opened["start_time"]) == ts
    assert [r.get_value() for r in pipeline.stored(device)] == [2.0]
    assert re.search(
        rf"reading not evaluated enterprise={ENTERPRISE} device={device} "
        r"metric=combustible_gas_lel ts=\S+ reason=conflict: ",
        _worker_log(pipeline),
    )
