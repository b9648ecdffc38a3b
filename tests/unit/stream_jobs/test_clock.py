"""The device clock against the gateway's: measured only when the last
readings agree, one clock warning per device, resolved when the clock is
right again; a backlog or one delayed message is no finding."""

import numpy as np
import pytest

from alert_rules import RuleEngine, load_rules
from riskwatch.contracts import Measurement, Metric, ReadingRecord
from stream_jobs.clock import measure
from stream_jobs.processing import CLOCK_WINDOW, process_reading
from tests.unit.stream_jobs.test_processing import MIN, T0_NS, FakeRules, S

RULE = "device-clock-skew"


def _offsets(pairs, window=5):
    state, out = None, []
    for ts, received in pairs:
        state, offset = measure(state, ts, received, window)
        out.append(offset)
    return out


def test_a_clock_behind_is_measured_once_the_window_is_full():
    jitter = np.random.default_rng(1).uniform(0, 2 * S, 12).astype(int)
    pairs = [
        (T0_NS + i * MIN, T0_NS + i * MIN + 600 * S + int(jitter[i])) for i in range(12)
    ]
    offsets = _offsets(pairs)
    assert offsets[:4] == [None] * 4
    # The smallest delay of the window: within the jitter of -600 s.
    assert all(-602 <= o <= -600 for o in offsets[4:])


def test_a_clock_ahead_is_positive():
    pairs = [(T0_NS + i * MIN, T0_NS + i * MIN - 240 * S) for i in range(5)]
    assert _offsets(pairs)[-1] == 240.0


def test_a_backlog_sent_late_is_no_measurement():
    # An hour of readings a minute apart, all arriving within 3 seconds.
    arrival = T0_NS + 3600 * S
    pairs = [(T0_NS + i * MIN, arrival + i * 50_000_000) for i in range(60)]
    assert set(_offsets(pairs)) == {None}


def test_one_delayed_message_is_no_finding():
    pairs = [(T0_NS + i * MIN, T0_NS + i * MIN + S) for i in range(20)]
    ts, received = pairs[10]
    pairs[10] = (ts, received + 15 * MIN)
    offsets = _offsets(pairs)
    # The five windows holding it measure nothing; the others the right clock.
    assert offsets[10:15] == [None] * 5
    assert {o for o in offsets[4:] if o is not None} == {-1.0}


def _reading(i, offset_s, **values):
    ts = T0_NS + i * MIN
    return ReadingRecord(
        enterprise="HC001",
        device="TT-101",
        ts_ns=ts,
        metrics=[Measurement(metric=Metric(m), value=v) for m, v in values.items()],
        received_ns=ts - round(offset_s * S),
    )


def _feed(rules, records):
    state, warnings, observations = None, [], []
    for record in records:
        outcome = process_reading(record, state, None, rules)
        state = outcome.state
        warnings += outcome.warnings
        observations += outcome.observations
    return state, warnings, observations


def test_one_metric_of_the_device_carries_the_measurement():
    rules = FakeRules()
    records = [
        _reading(i, -600, temperature_c=20.0, pressure_mpa=1.0)
        for i in range(CLOCK_WINDOW + 2)
    ]
    state, _, observations = _feed(rules, records)
    carried = [(o.metric, o.clock_offset_s) for o in observations if o.clock_offset_s]
    assert carried == [(Metric.PRESSURE_MPA, -600.0)] * 3
    assert state["clock"]["metric"] == "pressure_mpa"
    assert len(state["clock"]["window"]) == CLOCK_WINDOW


@pytest.fixture(scope="module")
def engine():
    return RuleEngine(load_rules(None), authority="Test Work Safety Office")


def test_a_skewed_clock_gives_one_device_warning_resolved_when_right(engine):
    skewed = [
        _reading(i, -612, temperature_c=20.0, pressure_mpa=1.0) for i in range(10)
    ]
    # NTP fixed at minute 10: the window must agree again before it clears.
    right = [
        _reading(i, 0.5, temperature_c=20.0, pressure_mpa=1.0) for i in range(10, 20)
    ]
    _, warnings, _ = _feed(engine, skewed + right)
    clock = [w for w in warnings if w.rule_id == RULE]
    assert [w.status.value for w in clock] == ["open", "resolved"]
    opened, resolved = clock
    assert opened.id == resolved.id
    assert opened.level.value == "IV"
    assert opened.start_time.timestamp() * S == T0_NS + (CLOCK_WINDOW - 1) * MIN
    item = opened.items[0]
    assert (item.observed_value, item.unit, item.expected_value) == (-612, "s", 300)
    assert "clock is 612 s behind the gateway's" in item.observed
    assert "NTP" in item.action
    # The first window that agrees after the fix: 5 readings from minute 10.
    assert resolved.resolved_time.timestamp() * S == T0_NS + 14 * MIN


def test_a_backlog_with_a_good_clock_gives_no_clock_warning(engine):
    backlog = [_reading(i, -(3600 - i * 59.9), temperature_c=20.0) for i in range(60)]
    _, warnings, _ = _feed(engine, backlog)
    assert [w for w in warnings if w.rule_id == RULE] == []
