"""Publishing and replay against an in-memory transport and a fake clock."""

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from riskwatch.contracts import Metric, parse_payload
from riskwatch.demo_cli import DEFAULT_NAB
from riskwatch.registry import load_registry
from simulators.cli import sample_registry_path
from simulators.errors import PublishError, ReplayInputError
from simulators.fleet import generate_fleet, select_enterprises
from simulators.publisher import publish_fleet, publish_readings
from simulators.readings import Reading
from simulators.replay import read_series, replay, time_shift

NAB = DEFAULT_NAB / "realKnownCause" / "machine_temperature_system_failure.csv"
ROOT = "riskwatch/v1"


class FakeTransport:
    def __init__(self, clock=None, fail_after=None):
        self.sent = []
        self.clock = clock
        self.fail_after = fail_after
        self.flushed = 0

    def publish(self, topic, payload, *, retain=False):
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise PublishError("connection lost")
        at = self.clock.now if self.clock else None
        self.sent.append((topic, payload, retain, at))

    def flush(self, timeout_s):
        self.flushed += 1
        return True

    def close(self):
        pass


class FakeClock:
    """Monotonic and wall clock in one; sleeping advances both."""

    def __init__(self, wall):
        self.now = wall
        self.slept = []

    def monotonic(self):
        return self.now

    def wall(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def _readings(times):
    return [
        Reading(t, "E1", "D1", i, ((Metric.POWER_KW, 1.0),))
        for i, t in enumerate(times)
    ]


def test_speedup_paces_device_time():
    clock = FakeClock(wall=10_000.0)
    transport = FakeTransport(clock)
    result = publish_readings(
        _readings([1000.0, 1060.0, 1120.0, 1180.0]),
        transport,
        topic_root=ROOT,
        speedup=60.0,
        clock=clock.monotonic,
        wall=clock.wall,
        sleep=clock.sleep,
    )
    assert result.published == 4
    sent_at = [at for *_, at in transport.sent]
    assert sent_at == pytest.approx([10_000.0, 10_001.0, 10_002.0, 10_003.0])


def test_unpaced_run_never_sleeps_for_past_readings():
    clock = FakeClock(wall=10_000.0)
    transport = FakeTransport(clock)
    publish_readings(
        _readings([1000.0, 2000.0]),
        transport,
        topic_root=ROOT,
        clock=clock.monotonic,
        wall=clock.wall,
        sleep=clock.sleep,
    )
    assert clock.slept == []


def test_a_reading_from_the_future_waits_for_the_wall_clock():
    clock = FakeClock(wall=1000.0)
    transport = FakeTransport(clock)
    publish_readings(
        _readings([990.0, 1005.0]),
        transport,
        topic_root=ROOT,
        speedup=0.0,
        clock=clock.monotonic,
        wall=clock.wall,
        sleep=clock.sleep,
    )
    assert [at for *_, at in transport.sent] == [1000.0, 1005.0]


def test_publish_fleet_marks_devices_online_then_offline(caplog):
    registry = load_registry(sample_registry_path())
    end = datetime(2026, 12, 3, 12, tzinfo=UTC)
    fleet = generate_fleet(
        select_enterprises(registry, 2), start=end - timedelta(hours=1), end=end
    )
    clock = FakeClock(wall=end.timestamp() + 5)
    transport = FakeTransport(clock)
    progress = []
    with caplog.at_level(logging.INFO, logger="simulators.publisher"):
        result = publish_fleet(
            fleet,
            transport,
            topic_root=ROOT,
            progress=progress.append,
            clock=clock.monotonic,
            wall=clock.wall,
            sleep=clock.sleep,
        )
    devices = len(fleet.series)
    assert result.published == fleet.message_count() == 61 * devices
    status = [s for s in transport.sent if s[0].endswith("/status")]
    assert [s[1] for s in status] == [b"online"] * devices + [b"offline"] * devices
    assert all(s[2] for s in status)  # retained
    telemetry = [s for s in transport.sent if s[0].endswith("/telemetry")]
    assert len(telemetry) == result.published
    assert transport.sent[devices][0] == f"{ROOT}/HC001/EM-01/telemetry"
    ts = [json.loads(p)["ts"] for _, p, _, _ in telemetry]
    assert ts == sorted(ts)
    assert progress[-1].published == result.published
    assert "published records=" in caplog.text


def test_a_failed_run_still_tries_to_mark_devices_offline():
    registry = load_registry(sample_registry_path())
    end = datetime(2026, 12, 3, 12, tzinfo=UTC)
    fleet = generate_fleet(
        select_enterprises(registry, 1), start=end - timedelta(hours=1), end=end
    )
    transport = FakeTransport(fail_after=20)
    with pytest.raises(PublishError):
        publish_fleet(fleet, transport, topic_root=ROOT)


def test_time_shift_never_lands_in_the_future():
    for now in (1000.0, 1000.2, 1000.999):
        assert 500.5 + time_shift(500.5, now) <= now
        assert now - (500.5 + time_shift(500.5, now)) < 1.0


def test_replay_maps_nab_onto_now_in_order():
    series = read_series(NAB, limit=200)
    assert series.times_s.size == 200
    now = datetime(2026, 12, 3, 18, 0, 30, 500000, tzinfo=UTC).timestamp()
    clock = FakeClock(wall=now)
    transport = FakeTransport(clock)
    result = replay(
        series,
        transport,
        enterprise="HC001",
        device="TT-101",
        metric=Metric.TEMPERATURE_C,
        topic_root=ROOT,
        now=clock.wall,
        clock=clock.monotonic,
        sleep=clock.sleep,
    )
    assert result.published == 200
    telemetry = [p for t, p, _, _ in transport.sent if t.endswith("/telemetry")]
    payloads = [
        parse_payload(p, now_ns=int(now * 1e9), max_skew_s=0, max_bytes=4096)
        for p in telemetry
    ]
    ts = [p.ts for p in payloads]
    assert ts == sorted(ts)
    assert ts[-1] <= now * 1e9
    assert now - ts[-1] / 1e9 < 1.0
    assert payloads[0].metrics[0].value == pytest.approx(73.96732207)
    assert result.map_time(datetime(2013, 12, 2, 21, 15)) == result.first_ts
    assert result.first_ts.timestamp() * 1e9 == ts[0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("time,value\n2013-01-01 00:00:00,1\n", "no column 'timestamp'"),
        ("timestamp,value\nyesterday,1\n", ":2: timestamp"),
        ("timestamp,value\n2013-01-01 00:00:00,hot\n", ":2: value 'hot'"),
        ("timestamp,value\n", "no data rows"),
    ],
)
def test_bad_csv_is_refused_with_the_line(tmp_path, content, message):
    path = tmp_path / "series.csv"
    path.write_text(content)
    with pytest.raises(ReplayInputError, match=message):
        read_series(path)


def test_rows_whose_clock_goes_back_are_skipped_and_counted(tmp_path):
    path = tmp_path / "series.csv"
    path.write_text(
        "timestamp,value\n2013-01-01 00:05:00,1\n2013-01-01 00:10:00,2\n"
        "2013-01-01 00:05:00,3\n2013-01-01 00:10:00,4\n2013-01-01 00:15:00,5\n"
    )
    series = read_series(path)
    assert series.values.tolist() == [1.0, 2.0, 5.0]
    assert series.skipped == 2


def test_chosen_column_of_a_wider_file(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text(
        "timestamp,a,b\n2013-01-01 00:00:00,1,10\n2013-01-01T00:05:00+08:00,2,20\n"
    )
    # 00:05+08:00 is before 00:00 UTC: the clock went back, the row is skipped.
    skipped = read_series(path, column="b")
    assert (skipped.values.tolist(), skipped.skipped) == ([10.0], 1)
    path.write_text(
        "timestamp,a,b\n2013-01-01 00:00:00,1,10\n2013-01-01T08:05:00+08:00,2,20\n"
    )
    series = read_series(path, column="b")
    assert series.values.tolist() == [10.0, 20.0]
    assert series.times_s[1] - series.times_s[0] == 300.0


def test_missing_file(tmp_path):
    with pytest.raises(ReplayInputError, match="cannot open"):
        read_series(tmp_path / "none.csv")
