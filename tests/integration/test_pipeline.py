"""The pipeline end to end on the real services: MQTT -> gateway -> Kafka ->
worker -> InfluxDB and warnings -> the platform receiver.

One gateway and one worker run for the module, with a consumer group, an
InfluxDB bucket and a receiver port of their own; each test uses device ids
of its own, so the tests do not see each other's data.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from influxdb_client.client.influxdb_client import InfluxDBClient

from riskwatch.contracts import (
    DEAD_LETTER_KEEP_BYTES,
    Metric,
    status_topic,
    telemetry_topic,
)
from riskwatch.demo import (
    GATEWAY_READY,
    WORKER_READY,
    create_bucket,
    demo_settings,
    end_offsets,
    read_dead_letters,
    wait_caught_up,
    warning_receiver,
)
from riskwatch.registry import load_registry
from riskwatch.registry_cli import publish_registry, sample_registry_path
from riskwatch.settings import Settings, load_settings
from riskwatch.timeouts import Deadline
from riskwatch.topics import DEAD_LETTER, READINGS, WARNINGS
from simulators.fleet import Injection, generate_fleet
from simulators.publisher import connect_simulator, publish_fleet
from simulators.receiver import WarningReceiver
from tests.integration.conftest import ROOT

ENTERPRISE = "HC002"  # registered in the sample registry


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Pipeline:
    settings: Settings  # with this module's bucket and receiver
    env: dict[str, str]
    folder: Path
    receiver: WarningReceiver
    gateway: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None

    @property
    def group(self) -> str:
        return self.env["RISKWATCH_WORKER__APP_ID"]

    def start_gateway(self) -> None:
        self.gateway = _start("gateway", self.env, self.folder, GATEWAY_READY)

    def kill_gateway(self) -> None:
        assert self.gateway is not None
        self.gateway.send_signal(signal.SIGKILL)
        self.gateway.wait(30)

    def start_worker(self) -> None:
        self.worker = _start("worker", self.env, self.folder, WORKER_READY)

    def kill_worker(self) -> None:
        assert self.worker is not None
        self.worker.send_signal(signal.SIGKILL)
        self.worker.wait(30)

    def publish(
        self,
        topic: str,
        payloads: list[bytes],
        *,
        retain: bool = False,
        pace_s: float = 0.0,
    ) -> None:
        transport = connect_simulator(self.settings)
        try:
            for payload in payloads:
                transport.publish(topic, payload, retain=retain)
                if pace_s:
                    time.sleep(pace_s)
            assert transport.flush(60.0), "broker did not acknowledge every message"
        finally:
            transport.close()

    def wait_processed(self, baselines) -> None:
        wait_caught_up(
            self.settings,
            self.group,
            baselines,
            _Plan(catch_up_timeout_s=300),
            lambda line: None,
        )

    def baselines(self):
        return {
            t: asyncio.run(end_offsets(self.settings.kafka.bootstrap, t))
            for t in (READINGS, WARNINGS, DEAD_LETTER)
        }

    def query(self, flux: str):
        s = self.settings.influxdb
        token = self.settings.run_dir / "secrets" / "influxdb-operator-token"
        with InfluxDBClient(
            url=s.url, token=token.read_text().strip(), org=s.org, timeout=60_000
        ) as client:
            return [r for t in client.query_api().query(flux) for r in t.records]

    def stored(self, device: str, field: str = "value"):
        return self.query(
            f'from(bucket: "{self.settings.influxdb.bucket}") |> range(start: 0) '
            f'|> filter(fn: (r) => r.device == "{device}" and r._field == "{field}")'
            '|> group() |> sort(columns: ["_time"])'
        )


@dataclass(frozen=True)
class _Plan:
    catch_up_timeout_s: float


def _start(command: str, env: dict[str, str], folder: Path, ready: str):
    log_file = folder / f"{command}-{time.monotonic_ns()}.log"
    with log_file.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "riskwatch", "--log-level", "INFO", command],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            cwd=ROOT,
        )
    deadline = Deadline(120)
    try:
        while not all(line.encode() in log_file.read_bytes() for line in ready):
            assert proc.poll() is None, f"{command} exited; see {log_file}"
            assert not deadline.expired(), f"{command} not ready; see {log_file}"
            time.sleep(0.3)
    except BaseException:
        # Not ready (a broker down): a process left running would stay
        # subscribed, and every later test would get each message once more.
        _stop(proc)
        raise
    return proc


def _stop(proc) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def pipeline(settings, stack, tmp_path_factory):
    yield from running_pipeline(settings, tmp_path_factory)


def running_pipeline(settings, tmp_path_factory, **worker):
    """A gateway, a worker and a receiver of their own, for one test module;
    ``worker`` overrides worker settings (``expire_after_s=30``)."""
    asyncio.run(
        publish_registry(
            load_registry(sample_registry_path()), settings.kafka.bootstrap
        )
    )
    run_id = f"t{uuid.uuid4().hex[:10]}"
    port = _free_port()
    env = {
        **demo_settings(settings, run_id),
        "RISKWATCH_PLATFORM__WEBHOOK_URL": f"http://127.0.0.1:{port}/warnings",
        # A short silence so that the stuck test's device is not also silent.
        "RISKWATCH_WORKER__SILENT_AFTER_S": "86400",
        # Readings evaluated on arrival, as these tests expect; the event-time
        # tests (test_event_time_pipeline.py) set a lateness of their own.
        "RISKWATCH_WORKER__LATENESS_S": "0",
        **{f"RISKWATCH_WORKER__{k.upper()}": str(v) for k, v in worker.items()},
    }
    own = load_settings().model_copy(
        update={
            "influxdb": settings.influxdb.model_copy(
                update={"bucket": env["RISKWATCH_INFLUXDB__BUCKET"]}
            ),
            "platform": settings.platform.model_copy(
                update={"webhook_url": env["RISKWATCH_PLATFORM__WEBHOOK_URL"]}
            ),
        }
    )
    create_bucket(own)
    folder = tmp_path_factory.mktemp("pipeline")
    with warning_receiver(own, lambda line: None, folder) as receiver:
        pipe = Pipeline(own, env, folder, receiver)
        try:
            pipe.start_gateway()
            pipe.start_worker()
            yield pipe
        finally:
            _stop(pipe.gateway)
            _stop(pipe.worker)


def _device(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def publish_minutely(pipeline, enterprise, device, metric, unit, start, values):
    """Publish one reading a minute from ``start`` for ``device`` and wait until
    the worker has processed them."""
    topic = telemetry_topic("riskwatch/v1", enterprise, device)
    payloads = [
        _reading(start + timedelta(minutes=i), metric, v, unit)
        for i, v in enumerate(values)
    ]
    baselines = pipeline.baselines()
    pipeline.publish(topic, payloads)
    pipeline.wait_processed(baselines)


def _reading(ts: datetime, metric: str, value: float, unit: str, **extra) -> bytes:
    return json.dumps(
        {
            "ts": ts.isoformat(),
            **extra,
            "metrics": [{"metric": metric, "value": value, "unit": unit}],
        }
    ).encode()


def test_n_readings_published_are_exactly_n_points_with_redeliveries(pipeline):
    device = _device("PT")
    topic = telemetry_topic("riskwatch/v1", ENTERPRISE, device)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    n = 300
    payloads = [
        _reading(
            start + timedelta(minutes=i),
            "pressure_mpa",
            1.0 + 0.01 * (i % 7),
            "MPa",
            seq=i,
        )
        for i in range(n)
    ]
    baselines = pipeline.baselines()
    pipeline.publish(topic, payloads)
    # The same readings again (a device resending, a QoS 1 redelivery) and
    # one as a retained message: identities repeat, so no new points.
    pipeline.publish(topic, payloads[:40])
    pipeline.publish(topic, payloads[-1:], retain=True)
    pipeline.wait_processed(baselines)
    rows = pipeline.stored(device)
    assert len(rows) == n
    assert [r.get_time() for r in rows] == [
        start + timedelta(minutes=i) for i in range(n)
    ]
    assert [round(r.get_value(), 6) for r in rows] == [
        round(1.0 + 0.01 * (i % 7), 6) for i in range(n)
    ]
    # Clear the retained message (an empty body, which the gateway ignores).
    pipeline.publish(topic, [b""], retain=True)


def test_every_rejection_is_dead_lettered_and_good_readings_around_it_kept(pipeline):
    device = _device("PT")
    topic = telemetry_topic("riskwatch/v1", ENTERPRISE, device)
    now = datetime.now(UTC).replace(microsecond=0)
    good = [
        _reading(now - timedelta(minutes=10 - i), "pressure_mpa", 1.1, "MPa")
        for i in range(7)
    ]
    ts = int((now - timedelta(minutes=1)).timestamp())

    def body(metric: bytes, value: bytes, unit: bytes, ts: bytes = b"%d") -> bytes:
        item = b'{"metric": "%s", "value": %s, "unit": "%s"}' % (metric, value, unit)
        return b'{"ts": %s, "metrics": [%s]}' % (ts, item)

    nan = body(b"pressure_mpa", b"NaN", b"MPa")
    inf = body(b"pressure_mpa", b'"Infinity"', b"MPa")
    volt = body(b"voltage", b"1", b"V")
    bar = body(b"pressure_mpa", b"1", b"bar")
    no_ts = b'{"metrics": [{"metric": "pressure_mpa", "value": 1, "unit": "MPa"}]}'
    ok = body(b"pressure_mpa", b"1", b"MPa")
    # A JSON reader would keep the last value (99) without a word.
    twice = body(b"pressure_mpa", b'1.2, "value": 99', b"MPa")
    bad = [
        ("metrics.0.value", "finite", nan % ts),
        ("metrics.0.value", "finite", inf % ts),
        ("metrics.0.metric", "unknown metric 'voltage'", volt % ts),
        ("metrics.0.unit", "unit 'bar' is not valid", bar % ts),
        ("ts", "required field is missing", no_ts),
        ("ts", "in the future", ok % (ts + 7200)),
        ("payload", "exceeds the 65536 limit", b"{" + b" " * 70000 + b"}"),
        # Larger than a Kafka record may be: its dead letter keeps the start.
        ("payload", "exceeds the 65536 limit", b"{" + b" " * 2_000_000 + b"}"),
        ("payload", "not UTF-8", b"\xff\xfe\xfd"),
        ("metrics.0.value", "given twice", twice % ts),
    ]
    # Interleave: good, bad, good, bad, ...
    stream = []
    for i in range(max(len(good), len(bad))):
        stream += good[i : i + 1] + [payload for *_, payload in bad[i : i + 1]]
    baselines = pipeline.baselines()
    status = status_topic("riskwatch/v1", ENTERPRISE, device)
    pipeline.publish(status, [b"online", b"blah"])
    # Clearing a retained message is no rejection: no letter for it below.
    pipeline.publish(topic, [b""], retain=True)
    pipeline.publish(topic, stream)
    pipeline.wait_processed(baselines)
    every = asyncio.run(
        read_dead_letters(pipeline.settings.kafka.bootstrap, baselines[DEAD_LETTER])
    )
    [bad_status] = [x for x in every if x.topic == status]
    assert (bad_status.field, bad_status.payload()) == ("payload", b"blah")
    letters = [x for x in every if x.topic == topic]
    assert len(letters) == len(bad)
    for (field, reason, payload), letter in zip(bad, letters, strict=True):
        kept = payload[:DEAD_LETTER_KEEP_BYTES]
        assert (letter.field, letter.payload()) == (field, kept)
        assert (letter.payload_bytes, letter.truncated) == (
            len(payload),
            len(kept) < len(payload),
        )
        assert reason in letter.reason
    assert len(pipeline.stored(device)) == len(good)


def test_impossible_values_are_dead_lettered_and_the_rest_of_their_message_stored(
    pipeline,
):
    # D6 of the attack run: these were stored as readings.
    device = _device("TK")
    topic = telemetry_topic("riskwatch/v1", ENTERPRISE, device)
    now = datetime.now(UTC).replace(microsecond=0)

    def message(minutes_ago: int, *items: tuple[str, float, str]) -> bytes:
        ts = (now - timedelta(minutes=minutes_ago)).isoformat()
        metrics = [{"metric": m, "value": v, "unit": u} for m, v, u in items]
        return json.dumps({"ts": ts, "metrics": metrics}).encode()

    stream = [
        message(
            5,
            ("level_pct", 61.5, "%"),
            ("combustible_gas_lel", -5, "%LEL"),
            ("temperature_c", 21.0, "°C"),
        ),
        message(4, ("level_pct", -50, "%")),
        message(3, ("level_pct", 1e6, "%")),
        message(2, ("toxic_gas_ppm", -3, "ppm")),
        message(1, ("level_pct", 60.0, "%")),
    ]
    baselines = pipeline.baselines()
    pipeline.publish(topic, stream)
    pipeline.wait_processed(baselines)
    letters = [
        x
        for x in asyncio.run(
            read_dead_letters(pipeline.settings.kafka.bootstrap, baselines[DEAD_LETTER])
        )
        if x.topic == topic
    ]
    assert [(x.field, x.reason.split(" (")[1]) for x in letters] == [
        ("metrics.combustible_gas_lel", "at least -1.25 %LEL)"),
        ("metrics.level_pct", "-1.25 to 103.125 %)"),
        ("metrics.level_pct", "-1.25 to 103.125 %)"),
        ("metrics.toxic_gas_ppm", "0 to 1e+06 ppm)"),
    ]
    assert letters[0].payload() == stream[0]  # kept whole, for a replay
    stored = sorted(point.get_value() for point in pipeline.stored(device))
    assert stored == [21.0, 60.0, 61.5]


def test_counter_reset_and_rollover_give_true_rates_never_negative(pipeline):
    device = _device("EM")
    topic = telemetry_topic("riskwatch/v1", ENTERPRISE, device)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    # Register readings every 10 minutes, worked out by hand:
    registers = [99_950.0, 99_970.0, 99_990.0, 5.0, 25.0, 3.0, 13.0]
    # consumption:  20      20      15 (wrap at 100000)  20   3 (reset)  10
    expected_per_h = [120.0, 120.0, 90.0, 120.0, 18.0, 60.0]
    payloads = [
        _reading(start + timedelta(minutes=10 * i), "energy_kwh", v, "kWh")
        for i, v in enumerate(registers)
    ]
    baselines = pipeline.baselines()
    pipeline.publish(topic, payloads)
    pipeline.wait_processed(baselines)
    deadline = Deadline(30)
    while len(rates := pipeline.stored(device, "rate_per_h")) < len(expected_per_h):
        assert not deadline.expired(), f"rates not written: {rates}"
        time.sleep(1)
    assert [round(r.get_value(), 6) for r in rates] == expected_per_h
    assert all(r.get_value() >= 0 for r in rates)


def raise_stuck_warning(pipeline, end=None):
    """Publish 12 h of HC002's fleet up to ``end`` (default: this minute) with
    a pressure sensor stuck for the last 3 h; the stuck-sensor warnings that
    reached the receiver, and the truth. The warning id follows from ``end``."""
    registry = load_registry(sample_registry_path()).by_id()
    end = end or datetime.now(UTC).replace(second=0, microsecond=0)
    start = end - timedelta(hours=12)
    plant = registry[ENTERPRISE]
    sensor = next(
        d for d in plant.devices if any(m.value == "pressure_mpa" for m in d.metrics)
    )

    fleet = generate_fleet(
        [plant],
        start=start,
        end=end,
        step_s=300,
        seed=3,
        anomaly_rate=0.0,
        injections=[
            Injection(
                "stuck",
                ENTERPRISE,
                sensor.id,
                end - timedelta(hours=3),
                3 * 3600,
                metric=Metric.PRESSURE_MPA,
            )
        ],
    )
    [truth] = [t for t in fleet.truth if t.kind == "stuck"]
    baselines = pipeline.baselines()
    transport = connect_simulator(pipeline.settings)
    try:
        publish_fleet(fleet, transport, topic_root="riskwatch/v1")
    finally:
        transport.close()
    pipeline.wait_processed(baselines)
    stuck = [
        w
        for w in list(pipeline.receiver.warnings)
        if w.get("device_id") == sensor.id
        and w.get("status") == "open"
        and "stuck" in w.get("rule_id", "")
    ]
    return stuck, truth


def test_stuck_value_injection_raises_a_stuck_sensor_warning(pipeline):
    stuck, truth = raise_stuck_warning(pipeline)
    assert stuck, "no stuck-sensor warning for the injected flatline"
    began = datetime.fromisoformat(stuck[0]["start_time"]).timestamp()
    assert truth.start_s <= began <= truth.end_s
    # It came as a signed CloudEvent, and the worker recorded the receipt.
    assert (pipeline.receiver.unauthorized, pipeline.receiver.rejected) == (0, 0)
    delivered = re.compile(
        rf"warning delivered warning={stuck[0]['id']} event=\S+ reference=SP-\d+"
    )
    deadline = Deadline(30)
    while not any(
        delivered.search(log.read_text()) for log in pipeline.folder.glob("worker-*")
    ):
        assert not deadline.expired(), "the worker logged no receipt"
        time.sleep(0.5)


def test_gateway_killed_mid_stream_loses_no_reading(pipeline):
    device = _device("LT")
    topic = telemetry_topic("riskwatch/v1", ENTERPRISE, device)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=20)
    n = 1500
    payloads = [
        _reading(start + timedelta(seconds=30 * i), "level_pct", 50 + (i % 10), "%")
        for i in range(n)
    ]
    baselines = pipeline.baselines()
    publisher = threading.Thread(
        target=pipeline.publish, args=(topic, payloads), kwargs={"pace_s": 0.002}
    )
    publisher.start()
    time.sleep(1.0)  # mid-stream
    pipeline.kill_gateway()
    time.sleep(1.0)
    pipeline.start_gateway()
    publisher.join(120)
    pipeline.wait_processed(baselines)
    deadline = Deadline(60)
    while (stored := len(pipeline.stored(device))) < n and not deadline.expired():
        time.sleep(1)
    assert stored == n


def test_a_class_d_enterprise_is_warned_before_a_class_a_one(pipeline):
    # HC007 (risk class A) and MF004 (class D) are both under shutdown orders
    # in the sample registry; the same load reaches both, a reading a minute.
    registry = load_registry(sample_registry_path()).by_id()
    assert (registry["HC007"].risk_class, registry["MF004"].risk_class) == ("A", "D")
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    device = _device("EM")
    payloads = [
        _reading(start + timedelta(minutes=m), "power_kw", 120.0, "kW")
        for m in range(25)
    ]
    baselines = pipeline.baselines()
    for enterprise in ("HC007", "MF004"):
        topic = telemetry_topic("riskwatch/v1", enterprise, device)
        pipeline.publish(topic, payloads)
    pipeline.wait_processed(baselines)

    def opened() -> dict[str, datetime]:
        return {
            w["enterprise_id"]: datetime.fromisoformat(w["detection_time"])
            for w in list(pipeline.receiver.warnings)
            if w.get("device_id") == device
            and w.get("rule_id") == "power-during-shutdown-order"
            and w.get("status") == "open"
        }

    deadline = Deadline(30)
    while len(opened()) < 2 and not deadline.expired():
        time.sleep(0.5)
    detected = opened()
    # for 15m, class A x1 and class D x0.33: 4.95 minutes after the first.
    assert detected == {
        "HC007": start + timedelta(minutes=15),
        "MF004": start + timedelta(minutes=5),
    }


def test_water_drawn_during_a_shutdown_order_warns_and_the_idle_load_does_not(
    pipeline,
):
    # HC007 is under a shutdown order with a registered idle load of 60 kW
    # and 0.4 m3/h of water (sample registry): 65 kW is idle for it, where
    # the fixed 5 kW floor alone would warn; 3 m3/h of water is production.
    hc007 = load_registry(sample_registry_path()).by_id()["HC007"]
    assert hc007.idle_load[Metric.WATER_M3] == 0.4
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    meter, water = _device("EM"), _device("WM")
    power = [
        _reading(start + timedelta(minutes=m), "power_kw", 65.0, "kW")
        for m in range(40)
    ]
    register, registers = 100.0, []
    for m in range(90):
        registers.append(
            _reading(start + timedelta(minutes=m), "water_m3", round(register, 4), "m3")
        )
        register += (3.0 if m >= 30 else 0.42) / 60
    baselines = pipeline.baselines()
    pipeline.publish(telemetry_topic("riskwatch/v1", "HC007", meter), power)
    pipeline.publish(telemetry_topic("riskwatch/v1", "HC007", water), registers)
    pipeline.wait_processed(baselines)

    def opened(device: str, rule: str) -> list[dict]:
        return [
            w
            for w in list(pipeline.receiver.warnings)
            if w.get("device_id") == device and w.get("rule_id") == rule
        ]

    deadline = Deadline(30)
    while not opened(water, "water-during-shutdown-order") and not deadline.expired():
        time.sleep(0.5)
    (warning,) = opened(water, "water-during-shutdown-order")
    assert (warning["level"], warning["status"]) == ("III", "open")
    # The use rose in the interval ending at minute 31, held for 30 minutes.
    assert datetime.fromisoformat(warning["start_time"]) == start + timedelta(
        minutes=31
    )
    (item,) = warning["items"]
    assert item["expected_value"] == 0.8  # 2 x the registered 0.4 m3/h
    assert item["observed_value"] == pytest.approx(3.0, rel=0.01)
    # Both devices' readings were processed before the water warning was
    # looked for: the idle power load opened nothing.
    assert opened(meter, "power-during-shutdown-order") == []


def test_a_gap_in_the_readings_does_not_count_towards_for(pipeline):
    # hazchem-temperature-limit: above 150 degC for 5m, readings at most 10m
    # apart (max_gap). A reading at minute 0, none until minute 12: the run
    # starts again at 12 and the warning opens at 17, not at 12.
    device = _device("TT")
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    payloads = [
        _reading(start + timedelta(minutes=m), "temperature_c", 160.0, "degC")
        for m in (0, *range(12, 20))
    ]
    baselines = pipeline.baselines()
    pipeline.publish(telemetry_topic("riskwatch/v1", ENTERPRISE, device), payloads)
    pipeline.wait_processed(baselines)

    def opened() -> list[dict]:
        return [
            w
            for w in list(pipeline.receiver.warnings)
            if w.get("device_id") == device
            and w.get("rule_id") == "hazchem-temperature-limit"
        ]

    deadline = Deadline(30)
    while not opened() and not deadline.expired():
        time.sleep(0.5)
    (warning,) = opened()
    assert datetime.fromisoformat(warning["start_time"]) == start + timedelta(
        minutes=12
    )
    assert datetime.fromisoformat(warning["detection_time"]) == start + timedelta(
        minutes=17
    )
