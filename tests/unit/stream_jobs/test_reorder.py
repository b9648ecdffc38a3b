"""The reorder buffer: readings held until the device's watermark passes them,
then scored and evaluated in timestamp order."""

import logging

import pytest

from alert_rules import RuleEngine, load_rules
from stream_jobs import state_codec as table_codec
from stream_jobs.detectors import state_fields
from stream_jobs.processing import flush, process_arrival
from stream_jobs.reorder import REORDER_KEY, ReorderPolicy, admit, drain, held
from tests.unit.stream_jobs.test_processing import MIN, T0_NS, FakeRules, S, reading

LATE_3M = ReorderPolicy(lateness_ns=3 * MIN)


def arrive(records, rules, policy=LATE_3M, state=None, enterprise=None):
    outcomes = []
    for record in records:
        outcome = process_arrival(record, state, enterprise, rules, policy)
        state = outcome.state
        outcomes.append(outcome)
    return state, outcomes


def at(minute, **values):
    return reading(T0_NS + round(minute * MIN), **values)


def applied(rules):
    return [(o.ts_ns - T0_NS) // MIN for o in rules.seen if o.kind == "reading"]


def test_out_of_order_readings_within_the_lateness_are_applied_in_order():
    rules = FakeRules()
    order = [0, 2, 1, 3, 5, 4, 6, 9, 7, 8, 10, 11, 12, 13]
    state, outcomes = arrive([at(m, pressure_mpa=1.0 + m) for m in order], rules)
    # Released once the device's latest time is 3 minutes past them.
    assert applied(rules) == list(range(11))
    assert held(state) == 3
    assert sum(o.late + o.duplicates + o.overflow for o in outcomes) == 0
    assert state_fields(state["series"]["pressure_mpa"])["n"] == 11


def test_lateness_zero_applies_on_arrival_and_drops_the_older_reading():
    rules = FakeRules()
    _, outcomes = arrive(
        [at(m, pressure_mpa=1.0) for m in (0, 2, 1, 3)],
        rules,
        policy=ReorderPolicy(lateness_ns=0),
    )
    assert applied(rules) == [0, 2, 3]
    assert [o.late for o in outcomes] == [0, 0, 1, 0]


def test_a_reading_beyond_the_lateness_is_late_not_evaluated(caplog):
    rules = FakeRules()
    state, _ = arrive([at(m, pressure_mpa=1.0) for m in range(10)], rules)
    before = list(rules.seen)
    with caplog.at_level(logging.WARNING, logger="stream_jobs.processing"):
        state, [outcome] = arrive([at(5.5, pressure_mpa=9.0)], rules, state=state)
    assert outcome.late == 1
    assert outcome.points == []
    assert rules.seen == before
    [line] = [r.getMessage() for r in caplog.records]
    # Applied up to minute 6 (watermark 9 - 3): 5.5 is behind it.
    assert line == (
        "reading not evaluated enterprise=HC001 device=PT-101 metric=pressure_mpa "
        "ts=2025-12-03T00:05:30Z reason=too late: ts is before the last evaluated "
        "reading of the metric (2025-12-03T00:06:00Z)"
    )
    # Held readings are untouched by it.
    assert held(state) == 3


def test_a_reading_older_than_the_watermark_still_goes_before_those_held():
    rules = FakeRules()
    # Minutes 0 and 10, then 4: older than the watermark (7) but newer than
    # everything applied, so it is applied at once, in its place.
    state, _ = arrive([at(m, pressure_mpa=1.0) for m in (0, 10, 4)], rules)
    assert applied(rules) == [0, 4]
    assert held(state) == 1


def test_an_exact_duplicate_in_the_buffer_is_dropped():
    rules = FakeRules()
    twice = at(1, pressure_mpa=1.0)
    again = twice.model_copy(update={"received_ns": twice.received_ns + 5 * S})
    state, outcomes = arrive([at(0, pressure_mpa=1.0), twice, again], rules)
    assert [o.duplicates for o in outcomes] == [0, 0, 1]
    assert held(state) == 2
    # The same time with other values is another reading (a second message).
    state, [other] = arrive([at(1, temperature_c=20.0)], rules, state=state)
    assert (other.duplicates, held(state)) == (0, 3)


def test_a_full_buffer_releases_its_oldest_early_and_says_so_once(caplog):
    rules = FakeRules()
    policy = ReorderPolicy(lateness_ns=60 * MIN, max_readings=3)
    with caplog.at_level(logging.WARNING, logger="stream_jobs.reorder"):
        state, outcomes = arrive(
            [at(m, pressure_mpa=1.0) for m in (1, 0, 3, 2, 4, 5, 6)], rules, policy
        )
    assert [o.overflow for o in outcomes] == [0, 0, 0, 1, 1, 1, 1]
    assert applied(rules) == [0, 1, 2, 3]
    assert held(state) == 3
    warnings = [r for r in caplog.records if "reorder buffer full" in r.message]
    assert len(warnings) == 1
    assert "device=PT-101 held=3" in warnings[0].getMessage()
    # Drained, the next overflow is news again.
    state = flush(state, None, rules).state
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="stream_jobs.reorder"):
        arrive([at(m, pressure_mpa=1.0) for m in range(7, 12)], rules, policy, state)
    assert "reorder buffer full" in caplog.text


def test_the_buffer_is_bounded_in_bytes():
    big = at(0, **{m: 1.0 for m in ("pressure_mpa", "temperature_c", "level_pct")})
    # An entry is the reading without its version and the device's ids.
    size = len(big.model_dump_json(exclude={"v", "enterprise", "device"})) - len(
        ',"seq":null,"retained":false'
    )
    policy = ReorderPolicy(lateness_ns=60 * MIN, max_bytes=2 * size + size // 2)
    state = {}
    for minute in range(5):
        record = big.model_copy(update={"ts_ns": T0_NS + minute * MIN})
        admission = admit(state, record, policy)
        state = admission.state
        assert state[REORDER_KEY]["bytes"] <= policy.max_bytes
    assert held(state) == 2
    assert state[REORDER_KEY]["bytes"] == 2 * size


def test_flush_applies_everything_held_in_order():
    rules = FakeRules()
    state, _ = arrive([at(m, pressure_mpa=1.0) for m in (0, 2, 1)], rules)
    assert applied(rules) == []
    outcome = flush(state, None, rules)
    assert applied(rules) == [0, 1, 2]
    assert held(outcome.state) == 0
    assert outcome.state["last_ts"] == T0_NS + 2 * MIN
    assert drain(outcome.state) == (outcome.state, [])


def test_the_buffer_survives_a_round_trip_through_the_table_codec():
    records = [at(m, pressure_mpa=1.0 + m) for m in (0, 2, 1, 4, 3, 5, 7, 6, 8)]
    straight, _ = arrive(records, FakeRules())
    state = None
    for record in records:
        state = process_arrival(record, state, None, FakeRules(), LATE_3M).state
        state = table_codec.loads(table_codec.dumps(state))
    assert state == table_codec.loads(table_codec.dumps(straight))


def test_arrival_marks_the_device_heard_even_while_held():
    record = at(0, pressure_mpa=1.0).model_copy(update={"received_ns": T0_NS + 7})
    state, _ = arrive([record], FakeRules(), state={"silent": True, "series": {}})
    assert (state["silent"], state["last_seen_ns"], held(state)) == (
        False,
        T0_NS + 7,
        1,
    )


@pytest.fixture(scope="module")
def engine():
    return RuleEngine(load_rules(None), authority="Test Work Safety Office")


def _gas_warnings(outcomes):
    return [
        w for o in outcomes for w in o.warnings if w.rule_id == "combustible-gas-orange"
    ]


def test_a_late_onset_reading_sets_the_start_time_where_it_belongs(engine):
    values = {0: 1, 1: 2, 2: 30, 3: 31, 4: 32, 5: 33, 6: 34, 7: 35, 8: 36}
    # The onset (minute 2) reaches the worker after minutes 3 and 4.
    order = [0, 1, 3, 4, 2, 5, 6, 7, 8]
    records = [at(m, combustible_gas_lel=values[m]) for m in order]
    state, outcomes = arrive(records, engine)
    outcomes.append(flush(state, None, engine))
    [opened] = _gas_warnings(outcomes)
    assert opened.start_time.timestamp() * S == T0_NS + 2 * MIN
    # Without a lateness the onset is too late: the warning starts later.
    _, outcomes = arrive(records, engine, policy=ReorderPolicy(lateness_ns=0))
    [wrong] = _gas_warnings(outcomes)
    assert wrong.start_time.timestamp() * S == T0_NS + 3 * MIN
    assert sum(o.late for o in outcomes) == 1
