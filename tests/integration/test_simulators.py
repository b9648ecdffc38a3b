"""The fleet simulator and the replayer against the real Mosquitto."""

import json
import queue
import time
import uuid
from datetime import UTC, datetime, timedelta

from riskwatch.contracts import Metric, parse_payload
from riskwatch.demo_cli import DEFAULT_NAB
from riskwatch.registry import load_registry
from simulators.cli import sample_registry_path
from simulators.fleet import generate_fleet, select_enterprises
from simulators.publisher import connect_simulator, run_fleet
from simulators.replay import read_series, run_replay

NAB = DEFAULT_NAB / "realKnownCause" / "machine_temperature_system_failure.csv"


def _drain(probe, expected, timeout_s=30.0):
    """Messages received until ``expected`` have come or the time is up."""
    got = []
    deadline = time.monotonic() + timeout_s
    while len(got) < expected and time.monotonic() < deadline:
        try:
            got.append(probe.received.get(timeout=0.5))
        except queue.Empty:
            continue
    return got


def test_every_fleet_message_reaches_a_gateway_subscriber(settings, mqtt_probe):
    registry = load_registry(sample_registry_path())
    fleet = generate_fleet(
        select_enterprises(registry, 3),
        start=datetime.now(UTC) - timedelta(hours=2),
        end=datetime.now(UTC),
        seed=11,
        anomaly_rate=1.0,
    )
    root = settings.mqtt.topic_root
    expected = {(r.topic(root), r.payload()) for r in fleet.readings()}
    probe = mqtt_probe(settings.mqtt.gateway_username)
    for series in fleet.series:
        probe.subscribe(f"{root}/{series.enterprise}/{series.device}/telemetry")
    result = run_fleet(fleet, settings)
    assert result.published == fleet.message_count() == len(expected)
    got = _drain(probe, result.published)
    # Other runs may publish to the same devices; count ours only.
    ours = [(m.topic, m.payload) for m in got if (m.topic, m.payload) in expected]
    assert len(ours) == result.published
    assert set(ours) == expected
    # Device-time order is kept per device.
    per_device = {}
    for topic, payload in ours:
        per_device.setdefault(topic, []).append(json.loads(payload)["seq"])
    for seqs in per_device.values():
        assert seqs == sorted(seqs)


def test_nab_replay_arrives_in_order_never_in_the_future(settings, mqtt_probe):
    series = read_series(NAB, limit=200)
    device = f"TT-{uuid.uuid4().hex[:6]}"
    root = settings.mqtt.topic_root
    probe = mqtt_probe(settings.mqtt.gateway_username)
    probe.subscribe(f"{root}/HC001/{device}/telemetry")
    result = run_replay(
        series,
        settings,
        enterprise="HC001",
        device=device,
        metric=Metric.TEMPERATURE_C,
        speedup=0.0,
    )
    assert result.published == 200
    got = _drain(probe, 200)
    assert len(got) == 200
    now_ns = time.time_ns()
    payloads = [
        parse_payload(m.payload, now_ns=now_ns, max_skew_s=0, max_bytes=4096)
        for m in got
    ]
    assert [p.seq for p in payloads] == list(range(200))
    ts = [p.ts for p in payloads]
    assert ts == sorted(ts)
    assert ts[-1] <= now_ns
    assert ts[-1] == int(result.last_ts.timestamp()) * 1_000_000_000
    assert [p.metrics[0].value for p in payloads] == series.values.tolist()
    mapped = result.map_time(datetime(2013, 12, 2, 21, 15))
    assert int(mapped.timestamp()) * 1_000_000_000 == ts[0]

    status = mqtt_probe(settings.mqtt.gateway_username)
    status.subscribe(f"{root}/HC001/{device}/status")
    retained = status.received.get(timeout=10)
    assert retained.payload == b"offline"
    assert retained.retain
    # Leave no retained status of this made-up device on the broker.
    cleaner = connect_simulator(settings)
    cleaner.publish(f"{root}/HC001/{device}/status", b"", retain=True)
    assert cleaner.flush(10)
    cleaner.close()
