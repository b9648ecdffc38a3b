"""Event time against the device's clock (issue 5, found by an attack run):
one reading from the future neither makes the later ones late nor is lost, a
clock that steps is re-based after three readings, a reading with another
value at a time already taken is refused, every reading not evaluated is
reported (rate-limited), and a shuffled burst fits the buffer.

Times are seconds from T0; unless said otherwise a reading reaches the
gateway at its own time (``received`` = ``ts``), and the lateness is 30 s.
"""

import asyncio
import logging

import numpy as np
import pytest

from alert_rules import RuleEngine, load_rules
from riskwatch.contracts import DeadLetter, Measurement, Metric, ReadingRecord
from stream_jobs.processing import flush
from stream_jobs.reorder import (
    ReorderPolicy,
    admit,
    drain,
    due,
    held,
    shift,
    watermark,
)
from tests.unit.stream_jobs.test_processing import FakeRules
from tests.unit.stream_jobs.test_reorder import arrive as arrive_with
from tests.unit.stream_jobs.test_worker_reorder import _scan, _worker

S = 1_000_000_000
T0 = 1_800_000_000 * S
HOUR = 3600
LATE_30 = ReorderPolicy.of(30)
GAS = "combustible_gas_lel"
KEY = b"HC001/GD-1"


def rec(ts_s, value=2.0, received_s=None, **values):
    metrics = values or {GAS: value}
    return ReadingRecord(
        enterprise="HC001",
        device="GD-1",
        ts_ns=T0 + round(ts_s * S),
        received_ns=T0 + round((ts_s if received_s is None else received_s) * S),
        metrics=[Measurement(metric=Metric(m), value=v) for m, v in metrics.items()],
    )


def arrive(records, rules, policy=LATE_30, state=None):
    return arrive_with(records, rules, policy, state)


def seconds(ns):
    return (ns - T0) / S


def applied(rules):
    return [seconds(o.ts_ns) for o in rules.seen if o.kind == "reading"]


@pytest.fixture(scope="module")
def engine():
    return RuleEngine(load_rules(None), authority="Test Work Safety Office")


def _opened(outcomes, rule="combustible-gas-orange"):
    return [
        w
        for o in outcomes
        for w in o.warnings
        if w.rule_id == rule and w.status == "open"
    ]


# A reading from the future ----------------------------------------------------


def test_a_reading_from_the_future_does_not_move_the_watermark():
    state, _ = arrive([rec(t) for t in (0, 60, 120)], FakeRules())
    state, _ = arrive([rec(470, received_s=180)], FakeRules(), state=state)
    # Capped at the gateway's 180 s + 10 s, not 470 s: minus the lateness.
    assert seconds(watermark(state, LATE_30)) == 160
    assert held(state) == 1


def test_after_a_reading_290_s_ahead_later_gas_readings_open_the_warning(engine):
    # A reading a minute; at 180 s one stamped 290 s ahead, then the device
    # is quiet for 31 s (the silence scan's flush) and reports 60 %LEL.
    before = [rec(t) for t in (0, 60, 120)] + [rec(470, received_s=180)]
    state, outcomes = arrive(before, engine)
    # The flush leaves the reading from the future where it is: the device's
    # clock (by the gateway's) is only at 211 s.
    assert due(state, T0 + 211 * S) == 0
    quiet = flush(state, None, engine, T0 + 211 * S)
    assert held(quiet.state) == 1
    state, later = arrive(
        [rec(t, 60.0) for t in range(240, 600, 60)], engine, state=quiet.state
    )
    [opened] = _opened([*outcomes, quiet, *later])
    assert seconds(opened.start_time.timestamp() * S) == 240
    assert sum(o.late for o in outcomes + later) == 0


def test_the_reading_from_the_future_is_evaluated_in_its_place():
    rules = FakeRules()
    records = [rec(t) for t in (0, 60, 120)] + [rec(470, received_s=180)]
    records += [rec(t) for t in range(240, 600, 60)]
    state, outcomes = arrive(records, rules)
    # Watermark at 540 - 30: 470 goes after 420 and before 480.
    assert applied(rules) == [0, 60, 120, 240, 300, 360, 420, 470, 480]
    assert sum(o.late for o in outcomes) == 0
    # 540 s is still held: a quiet device gives it up once the gateway's
    # clock, plus the 10 s tolerance, has passed it.
    assert (held(state), due(state, T0 + 529 * S), due(state, T0 + 530 * S)) == (
        1,
        0,
        1,
    )


def test_the_silence_scan_sends_no_flush_for_a_reading_not_yet_due(tmp_path):
    worker = _worker(tmp_path)
    for record in [rec(t) for t in (0, 10, 20, 30)] + [rec(320, received_s=40)]:
        asyncio.run(worker.on_reading(record))
    # 30 s after the last arrival: only what the device's clock passed goes.
    assert held(worker.device_state[KEY]) == 2
    sent = _scan(worker, T0 + 70 * S)
    assert held(worker.device_state[KEY]) == 1
    assert [v.split()[1] for _, v in sent] == [b"flush"]
    # The reading from the future stays: no note until its time has come.
    assert _scan(worker, T0 + 80 * S) == []
    assert _scan(worker, T0 + 311 * S) != []
    assert held(worker.device_state[KEY]) == 0


# A clock that steps -------------------------------------------------------------


def _jump_back(values=60.0):
    """Every 10 s; from 50 s the device's clock is an hour behind."""
    before = [rec(t) for t in range(0, 50, 10)]
    after = [rec(t - HOUR, values, received_s=t) for t in range(50, 200, 10)]
    return before, after


def test_a_clock_an_hour_back_is_re_based_and_its_gas_readings_warn(engine, caplog):
    before, after = _jump_back()
    with caplog.at_level(logging.WARNING):
        state, outcomes = arrive(before + after, engine)
    assert sum(o.late for o in outcomes) == 0
    assert shift(state) == HOUR * S
    # Event time carries on from the old clock: the first stepped reading
    # (50 s on the gateway's clock) opens the warning at 50 s.
    [opened] = _opened(outcomes)
    assert seconds(opened.start_time.timestamp() * S) == 50
    steps = [r.getMessage() for r in caplog.records if "clock stepped" in r.message]
    assert steps == [
        "device clock stepped enterprise=HC001 device=GD-1 step_s=-3600 "
        "offset_s=-3600 shift_s=3600: event time re-based at ts=2027-01-15T07:01:10Z"
    ]
    assert not [r for r in caplog.records if "not evaluated" in r.message]
    # InfluxDB's score is at the reading's own (an hour back) time.
    [point] = [p for o in outcomes for p in o.points][5:6]
    assert point.to_line_protocol().endswith(f" {T0 + (50 - HOUR) * S}")
    # The stepped clock itself is still reported: device minus gateway.
    [skew] = _opened(outcomes, "device-clock-skew")
    assert skew.items[0].observed_value == -HOUR


def test_the_readings_of_a_step_before_it_is_confirmed_are_held_aside():
    rules = FakeRules()
    before, after = _jump_back(2.0)
    state, _ = arrive(before, rules)
    state, _ = arrive(after[:2], rules, state=state)
    # 50 s and 60 s are an hour older than what was applied: suspects, held
    # aside (beside 20 s to 40 s, within the lateness of 40 s).
    suspects = state["reorder"]["suspects"]
    assert ([e["ts"] for e in suspects], shift(state)) == (
        [T0 + (50 - HOUR) * S, T0 + (60 - HOUR) * S],
        0,
    )
    state, _ = arrive(after[2:], rules, state=state)
    # The third confirms the step: all three re-based, nothing late.
    assert applied(rules) == list(range(0, 170, 10))


def test_without_a_lateness_a_step_costs_two_readings_reported(caplog):
    rules = FakeRules()
    before, after = _jump_back(2.0)
    with caplog.at_level(logging.WARNING, logger="stream_jobs.processing"):
        state, outcomes = arrive(before + after, rules, ReorderPolicy.of(0))
    # Nothing is held: 50 s and 60 s are too late as they come, the third
    # stepped reading (70 s) confirms the step and is evaluated at 70 s.
    assert [o.late for o in outcomes][5:8] == [1, 1, 0]
    assert applied(rules) == [0, 10, 20, 30, 40, *range(70, 200, 10)]
    assert shift(state) == HOUR * S
    start, end = [
        r.getMessage() for r in caplog.records if r.name == "stream_jobs.processing"
    ]
    assert start.startswith("reading not evaluated ")
    assert " ts=2027-01-15T07:00:50Z reason=too late" in start
    assert end.startswith("readings evaluated again ")
    assert " not_evaluated=2 " in end


def test_a_clock_set_right_again_pays_the_shift_back(engine):
    rules = FakeRules()
    before, after = _jump_back(2.0)
    right = [rec(t) for t in range(200, 400, 10)]
    state, outcomes = arrive(before + after + right, rules)
    assert shift(state) == 0
    assert sum(o.late for o in outcomes) == 0
    # Event time followed the gateway's clock throughout, every 10 s.
    assert applied(rules) == list(range(0, 370, 10))
    # Nothing waits an hour for a shift that is gone.
    assert held(state) == 3


def test_a_delay_that_grows_is_not_a_step():
    rules = FakeRules()
    # From 50 s every reading takes a minute to arrive, still in order.
    records = [rec(t) for t in range(0, 50, 10)]
    records += [rec(t, received_s=t + 60) for t in range(50, 200, 10)]
    state, outcomes = arrive(records, rules)
    assert shift(state) == 0
    assert sum(o.late for o in outcomes) == 0
    assert applied(rules) == list(range(0, 170, 10))


def test_a_delayed_reading_is_held_aside_then_too_late_and_reported(caplog):
    rules = FakeRules()
    state, _ = arrive([rec(t) for t in range(0, 100, 10)], rules)
    with caplog.at_level(logging.WARNING, logger="stream_jobs.processing"):
        # Taken at 5 s, arrives at 95 s; then the device goes on at 100 s.
        state, [aside, on] = arrive(
            [rec(5, 9.0, received_s=95), rec(100)], rules, state=state
        )
    assert (aside.late, on.late) == (0, 1)
    assert 5 not in applied(rules)
    # Reported when it is found too late, and the spell's end when 70 s is
    # applied after it.
    start, end = [r.getMessage() for r in caplog.records]
    assert start.startswith(
        "reading not evaluated enterprise=HC001 device=GD-1 "
        "metric=combustible_gas_lel ts=2027-01-15T08:00:05Z reason=too late"
    )
    assert end.startswith("readings evaluated again enterprise=HC001 device=GD-1 ")
    assert " not_evaluated=1 " in end


# Conflicts and the spell of readings not evaluated --------------------------------


def test_a_conflict_in_the_buffer_keeps_the_first_value():
    state = {}
    first = rec(0, **{"pressure_mpa": 1.0, "temperature_c": 20.0})
    state = admit(state, first, LATE_30).state
    again = admit(state, first.model_copy(update={"received_ns": T0 + S}), LATE_30)
    assert (again.duplicate, again.conflict) == (True, None)
    other = rec(0, **{"pressure_mpa": 1.0, "temperature_c": 21.0, "level_pct": 5.0})
    admission = admit(state, other, LATE_30)
    assert admission.conflict.metrics == (("temperature_c", 20.0, 21.0),)
    assert admission.conflict.record == other
    assert "temperature_c 21 here, 20 kept" in admission.conflict.reason
    # Its new metric is held as another reading at that time.
    _, records = _drained(admission.state)
    assert [[m.metric.value for m in r.metrics] for r in records] == [
        ["pressure_mpa", "temperature_c"],
        ["level_pct"],
    ]


def _drained(state):
    current, timed = drain(state)
    return current, [t.record for t in timed]


def test_a_stuck_clock_is_reported_once_then_every_ten_minutes(caplog):
    rules = FakeRules()
    # The clock stuck at 0 s; a reading a minute with a new value each.
    stuck = [rec(0, float(i), received_s=60 * i) for i in range(30)]
    with caplog.at_level(logging.WARNING, logger="stream_jobs.processing"):
        state, outcomes = arrive(stuck, rules)
        state, _ = arrive([rec(1800, 1.0)], rules, state=state)
    assert sum(len(o.conflicts) for o in outcomes) == 29
    lines = [r.getMessage() for r in caplog.records]
    # Starts at 60 s, again at 660 s and 1260 s, ends when evaluated.
    assert [line.split(" enterprise=")[0] for line in lines] == [
        "reading not evaluated",
        "readings still not evaluated",
        "readings still not evaluated",
        "readings evaluated again",
    ]
    assert "not_evaluated=11 " in lines[1]
    assert "not_evaluated=21 " in lines[2]
    assert "not_evaluated=29 since=2027-01-15T08:01:00Z" in lines[3]
    assert all("device=GD-1 metric=combustible_gas_lel" in line for line in lines)


def test_the_worker_dead_letters_a_conflict_naming_ts(tmp_path):
    worker = _worker(tmp_path, lateness_s=0)
    asyncio.run(worker.on_reading(rec(0, 60.0)))
    asyncio.run(worker.on_reading(rec(0, 60.0, received_s=1)))
    assert worker.dead_letter.sent == []
    asyncio.run(worker.on_reading(rec(0, 2.0, received_s=2)))
    [(_, value)] = worker.dead_letter.sent
    letter = DeadLetter.model_validate_json(value)
    assert (letter.field, letter.stage) == ("ts", "worker")
    assert letter.reason == (
        "conflicts with the reading already taken at this ts "
        "(2027-01-15T08:00:00Z): combustible_gas_lel 2 here, 60 kept"
    )
    assert worker.counters["conflicts"] == 1
    assert worker.counters["duplicates"] == 1


# Overflow ---------------------------------------------------------------------


def test_a_shuffled_burst_of_1500_readings_fits_the_default_buffer():
    rules = FakeRules()
    order = np.random.default_rng(5).permutation(1500).tolist()
    # 10 ms apart, shuffled, arriving 1 ms apart.
    records = [rec(k / 100, received_s=15 + i / 1000) for i, k in enumerate(order)]
    state, outcomes = arrive(records, rules, ReorderPolicy.of(30))
    assert sum(o.late + o.overflow for o in outcomes) == 0
    flush(state, None, rules)
    assert applied(rules) == [k / 100 for k in range(1500)]


def test_after_an_overflow_an_older_reading_is_too_late_and_says_why(caplog):
    rules = FakeRules()
    policy = ReorderPolicy(lateness_ns=60 * S, max_readings=2)
    with caplog.at_level(logging.WARNING, logger="stream_jobs.processing"):
        # 3, 2 held; 1 overflows it (1 goes early); 0 then comes after 1.
        _, outcomes = arrive([rec(t) for t in (3, 2, 1, 0)], rules, policy)
    assert [o.overflow for o in outcomes] == [0, 0, 1, 1]
    assert [o.late for o in outcomes] == [0, 0, 0, 1]
    assert applied(rules) == [1]
    [line] = [
        r.getMessage() for r in caplog.records if r.name == "stream_jobs.processing"
    ]
    assert line.endswith(
        "(2027-01-15T08:00:01Z), which a full reorder buffer released early"
    )
