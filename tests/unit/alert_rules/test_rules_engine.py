"""The engine's state machine: event time, gaps, hysteresis, ids, state, order."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from alert_rules import RuleEngine, ScopeKind, WarningRecord, warning_id
from alert_rules.engine import subject_of
from riskwatch.contracts import NS_PER_S, Finding

# The same origin as the make_obs fixture's minute 0.
T0 = datetime(2026, 12, 3, tzinfo=UTC)
T0_NS = int(T0.timestamp()) * NS_PER_S
AUTHORITY = "Test Work Safety Office"


def _moment(minute):
    return T0 + timedelta(minutes=minute)


def test_minute_zero_is_t0(make_obs):
    assert make_obs("power_kw", 1, 0).ts_ns == T0_NS


def _gas(make_obs, pairs):
    return [make_obs("combustible_gas_lel", v, m) for m, v in pairs]


def test_for_is_counted_in_event_time(gas_rule, make_obs, run):
    pairs = [(0, 5), (1, 30), (2, 31), (3, 32), (4, 33), (5, 34), (6, 35)]
    records = run([gas_rule], _gas(make_obs, pairs))
    assert len(records) == 1
    record = records[0]
    assert record.status.value == "open"
    assert record.start_time == _moment(1)  # first reading over the threshold
    assert record.detection_time == _moment(6)  # 5 minutes of event time later
    assert record.issue_time == record.detection_time
    item = record.items[0]
    assert (item.observed_value, item.expected_value, item.unit) == (35, 25, "%LEL")
    assert (item.evidence.from_, item.evidence.to) == (_moment(1), _moment(6))


def test_processing_time_does_not_count(gas_rule, make_obs):
    # Readings 1 minute apart in event time, evaluated hours apart: no warning.
    engine = RuleEngine([gas_rule], AUTHORITY)
    state = {}
    for minute in range(4):
        later = _moment(0) + timedelta(hours=minute)
        obs = make_obs("combustible_gas_lel", 40, minute)
        state, records = engine.evaluate(obs, None, state, now=later)
        assert records == []


def test_now_sets_the_issue_time_only(gas_rule, make_obs):
    engine = RuleEngine([gas_rule.model_copy(update={"for_": timedelta(0)})], "X")
    now = datetime(2027, 1, 1, tzinfo=UTC)
    _, records = engine.evaluate(
        make_obs("combustible_gas_lel", 40, 0), None, {}, now=now
    )
    assert records[0].start_time == records[0].detection_time == _moment(0)
    assert records[0].issue_time == now
    assert records[0].valid_until == now + timedelta(hours=24)


@pytest.mark.parametrize(
    "pairs",
    [
        # Two readings over the threshold 20 minutes apart: a gap, not evidence.
        [(0, 30), (20, 30)],
        # Readings every 4 minutes, but one missing for 12 minutes in the run.
        [(0, 30), (4, 30), (16, 30), (19, 30)],
    ],
)
def test_a_gap_does_not_satisfy_for(gas_rule, make_obs, run, pairs):
    assert run([gas_rule], _gas(make_obs, pairs)) == []


def test_a_gap_restarts_the_run(gas_rule, make_obs, run):
    pairs = [(0, 30), (20, 30), (22, 30), (25, 30)]
    records = run([gas_rule], _gas(make_obs, pairs))
    assert [r.start_time for r in records] == [_moment(20)]


def test_a_silence_breaks_the_run(gas_rule, make_obs, run):
    observations = _gas(make_obs, [(0, 30), (2, 30)])
    observations.append(make_obs("combustible_gas_lel", None, 3, silent_s=60))
    observations += _gas(make_obs, [(4, 30), (6, 30)])
    assert run([gas_rule], observations) == []


def test_a_reading_under_the_threshold_restarts_for(gas_rule, make_obs, run):
    pairs = [(0, 30), (2, 30), (3, 10), (4, 30), (8, 30), (9, 30)]
    records = run([gas_rule], _gas(make_obs, pairs))
    assert [r.start_time for r in records] == [_moment(4)]


def test_hysteresis_gives_one_warning_for_a_hovering_value(gas_rule, make_obs, run):
    hover = [(m, 24.5 if m % 2 else 25.5) for m in range(0, 60)]
    rule = gas_rule.model_copy(update={"for_": timedelta(0)})
    records = run([rule], _gas(make_obs, hover))
    assert [r.status.value for r in records] == ["open"]


def test_without_hysteresis_or_flap_detection_the_same_value_flaps(
    make_rule, make_obs, run
):
    rule = make_rule(
        "{select: {metrics: [combustible_gas_lel]}, when: {above: 25}, flap: null}"
    )
    hover = [(m, 24.5 if m % 2 else 25.5) for m in range(0, 10)]
    records = run([rule], _gas(make_obs, hover))
    # open, resolved, open, ...: what hysteresis and flap detection avoid
    assert len(records) == 10


def test_clear_must_hold_for_clear_for(gas_rule, make_obs, run):
    # Over, under, over, under is two cycles: flapping by default (see
    # test_rules_flapping.py); here only clear_for is looked at.
    rule = gas_rule.model_copy(update={"for_": timedelta(0), "flap": None})
    pairs = [(0, 40), (1, 10), (2, 10), (3, 30), (4, 10), (5, 10), (6, 10), (7, 10)]
    records = run([rule], _gas(make_obs, pairs))
    assert [r.status.value for r in records] == ["open", "resolved"]
    opened, resolved = records
    assert resolved.id == opened.id
    assert resolved.resolved_time == _moment(7)  # 3 minutes after minute 4
    assert resolved.start_time == opened.start_time == _moment(0)
    assert [h.status.value for h in resolved.history] == ["open", "resolved"]
    assert resolved.history[0] == opened.history[0]
    assert resolved.items[0].evidence.to == _moment(7)
    assert resolved.valid_until == _moment(7)


def test_the_id_is_stable_across_retries_and_restarts(gas_rule, make_obs):
    observations = _gas(make_obs, [(m, 40) for m in range(6)])
    engine = RuleEngine([gas_rule], AUTHORITY)
    state = {}
    for obs in observations[:-1]:
        state, _ = engine.evaluate(obs, None, state)
    saved = json.loads(json.dumps(state))
    _, first = engine.evaluate(observations[-1], None, state)
    # A retry of the same observation from a fresh engine (a restarted worker)
    # with the state recovered from the changelog gives the same record.
    _, again = RuleEngine([gas_rule], AUTHORITY).evaluate(observations[-1], None, saved)
    assert len(first) == 1
    assert first == again
    assert first[0].id == warning_id("gas", subject_of(observations[0]), T0_NS)


def test_the_input_state_is_not_modified(gas_rule, make_obs):
    engine = RuleEngine([gas_rule], AUTHORITY)
    state, _ = engine.evaluate(make_obs("combustible_gas_lel", 40, 0), None, {})
    before = json.dumps(state)
    engine.evaluate(make_obs("combustible_gas_lel", 40, 1), None, state)
    assert json.dumps(state) == before


def test_state_round_trips_through_json_and_stays_small(
    default_rules, make_obs, make_enterprise, run
):
    states = []
    observations = []
    for minute in range(2000):
        for metric, value in (
            ("combustible_gas_lel", 30 + minute % 7),
            ("power_kw", 9),
        ):
            observations.append(make_obs(metric, value, minute))
    run(default_rules, observations, make_enterprise(), states)
    assert len(json.dumps(states[-1])) < 2000
    assert set(states[-1]) == {"v", "last_seen", "clock", "tracks", "flaps"}


def test_older_readings_do_not_retrigger(gas_rule, make_obs, run):
    rule = gas_rule.model_copy(update={"for_": timedelta(0), "clear_for": timedelta(0)})
    observations = _gas(make_obs, [(10, 40), (11, 10), (5, 40), (8, 40), (11, 40)])
    records = run([rule], observations)
    assert [(r.status.value, r.start_time) for r in records] == [
        ("open", _moment(10)),
        ("resolved", _moment(10)),
    ]


def test_order_is_per_metric(gas_rule, make_obs, run):
    rule = gas_rule.model_copy(update={"for_": timedelta(0)})
    observations = [make_obs("power_kw", 1, 10), make_obs("combustible_gas_lel", 40, 5)]
    assert len(run([rule], observations)) == 1


@pytest.fixture
def silent_rule(default_rules):
    return [r for r in default_rules if r.id == "device-silent"]


def test_a_silence_dated_before_the_last_reading_still_counts(
    silent_rule, make_obs, run
):
    # The device clock runs 10 minutes ahead of the worker's.
    observations = [
        make_obs("power_kw", 5, 30),
        make_obs("power_kw", None, 25, silent_s=900),
        make_obs("power_kw", 5, 50),
    ]
    records = run(silent_rule, observations)
    assert [r.status.value for r in records] == ["open", "resolved"]
    assert records[0].start_time == _moment(30)
    assert records[1].resolved_time == _moment(50)


def test_a_silence_ends_with_the_next_reading_whatever_its_clock(
    silent_rule, make_obs, run
):
    # The device clock runs 10 minutes behind: its next reading is dated
    # before the silence, yet after its last reading.
    observations = [
        make_obs("power_kw", 5, 0),
        make_obs("power_kw", None, 25, silent_s=900),
        make_obs("power_kw", 5, 20),
    ]
    records = run(silent_rule, observations)
    assert [r.status.value for r in records] == ["open", "resolved"]
    assert records[1].resolved_time == records[1].start_time == _moment(25)


def test_shutdown_rule_fires_only_while_an_order_is_active(
    default_rules, make_obs, make_enterprise, run
):
    order = {
        "order_id": "SO-7",
        "start": _moment(60),
        "end": _moment(180),
        "reason": "fire exits blocked",
        "authority": "District Emergency Bureau",
    }
    enterprise = make_enterprise(shutdown_orders=[order])
    rules = [r for r in default_rules if r.id == "power-during-shutdown-order"]
    observations = [make_obs("power_kw", 150, m) for m in range(0, 300, 5)]
    records = run(rules, observations, enterprise)
    assert [r.status.value for r in records] == ["open", "resolved"]
    opened, resolved = records
    assert opened.start_time == _moment(60)
    assert opened.detection_time == _moment(75)  # for: 15m
    assert resolved.resolved_time == _moment(190)  # lifted at 180, clear_for 10m
    # The same load with no order at all: nothing.
    assert run(rules, observations, make_enterprise()) == []


def test_unknown_enterprise(default_rules, make_obs, run):
    observations = [
        make_obs("combustible_gas_lel", 60, 0),
        make_obs("power_kw", 150, 0),
        make_obs("pressure_mpa", 3.0, 0),
        make_obs("pressure_mpa", 3.0, 2),
    ]
    records = run(default_rules, observations, None)
    # One gas rule since escalation: 60 %LEL opens it straight at level I.
    assert [(r.rule_id, r.level.value) for r in records] == [
        ("combustible-gas-orange", "I")
    ]
    record = records[0]
    assert record.enterprise_name is None
    assert record.officer is None
    assert record.scope.name == "D1"


def test_record_fields_and_json(default_rules, make_obs, make_enterprise, run):
    enterprise = make_enterprise(
        devices=[
            {"id": "D1", "metrics": ["combustible_gas_lel"], "description": "tank farm"}
        ]
    )
    records = run(default_rules, [make_obs("combustible_gas_lel", 55, 0)], enterprise)
    red = next(r for r in records if r.rule_id == "combustible-gas-orange")
    assert (red.level.value, red.colour) == ("I", "red")
    assert red.scope.model_dump() == {
        "kind": "device",
        "id": "D1",
        "name": "Test Chemicals Co., Ltd. / tank farm",
    }
    assert (red.enterprise_id, red.device_id, red.district, red.grid) == (
        "E1",
        "D1",
        "nanhu",
        "nanhu-g1",
    )
    assert red.officer is not None
    assert red.officer.phone == "+86 1"
    assert red.authority == AUTHORITY
    assert "55 %LEL" in red.items[0].observed
    assert "Evacuate" in red.items[0].action
    data = json.loads(red.to_json())
    evidence = data["items"][0]["evidence"]
    assert set(evidence) == {"device", "metric", "from", "to", "enterprise"}
    assert evidence["enterprise"] is None  # the record's
    assert data["start_time"] == "2026-12-03T00:00:00Z"
    assert data["history"] == [
        {
            "at": "2026-12-03T00:00:00Z",
            "status": "open",
            "by": "riskwatch-rules",
            "comment": "rule combustible-gas-orange: value above 25",
            "from_status": None,
            "command": None,
            "from_level": None,
            "level": None,
        }
    ]
    assert data["levels"] == [
        {
            "level": "I",
            "from": "2026-12-03T00:00:00Z",
            "reason": "opened: value above 25; at I: value above 50",
        }
    ]
    assert WarningRecord.from_json(red.to_json()) == red


def test_a_record_with_a_wrong_colour_is_rejected(default_rules, make_obs, run):
    records = run(default_rules, [make_obs("combustible_gas_lel", 55, 0)])
    data = json.loads(records[0].to_json())
    data["colour"] = "blue"
    with pytest.raises(ValueError, match="does not match level"):
        WarningRecord.model_validate(data)


def test_opening_and_resolving_are_logged(gas_rule, make_obs, run, caplog):
    rule = gas_rule.model_copy(update={"for_": timedelta(0), "clear_for": timedelta(0)})
    with caplog.at_level(logging.INFO, logger="alert_rules.engine"):
        records = run([rule], _gas(make_obs, [(0, 40), (1, 10)]))
    messages = [r.getMessage() for r in caplog.records]
    assert f"warning opened warning={records[0].id} rule=gas level=II" in messages[0]
    assert f"warning resolved warning={records[0].id} rule=gas" in messages[1]


def test_an_unreadable_state_is_reset_with_a_warning(gas_rule, make_obs, caplog):
    engine = RuleEngine([gas_rule], AUTHORITY)
    with caplog.at_level(logging.WARNING):
        state, _ = engine.evaluate(
            make_obs("combustible_gas_lel", 1, 0), None, {"v": 99}
        )
    assert state["last_seen"] == {"combustible_gas_lel": T0_NS}
    assert "unreadable rule state reset device=D1" in caplog.text


def test_tracks_of_removed_rules_are_dropped(gas_rule, make_obs, caplog):
    rule = gas_rule.model_copy(update={"for_": timedelta(0)})
    state, _ = RuleEngine([rule], "X").evaluate(
        make_obs("combustible_gas_lel", 40, 0), None, {}
    )
    assert state["tracks"]
    with caplog.at_level(logging.WARNING):
        state, _ = RuleEngine([], "X").evaluate(
            make_obs("combustible_gas_lel", 40, 1), None, state
        )
    assert state["tracks"] == {}
    assert "open warning dropped with its rule" in caplog.text


def test_a_grouped_rule_gives_device_records_as_its_members(make_rule, make_obs):
    # The grouping stage (alert_rules/grouping.py) makes the grid warning of
    # them; the engine runs the device state machine as for any rule.
    rule = make_rule(
        "{scope: grid, group: {min_members: 2}, when: {silent: true}, finding: silent}"
    )
    engine = RuleEngine([rule], "X")
    obs = make_obs("power_kw", None, 0, silent_s=900)
    [record] = engine.evaluate(obs, None, {})[1]
    assert (record.rule_id, record.scope.kind, record.device_id) == (
        "r1",
        ScopeKind.DEVICE,
        "D1",
    )
    assert record.finding == "silent"


def test_duplicate_rule_ids_are_refused(gas_rule):
    with pytest.raises(Exception, match="appears twice"):
        RuleEngine([gas_rule, gas_rule], "X")


# Risk class ------------------------------------------------------------------


@pytest.fixture
def graded_rule(make_rule):
    return make_rule(
        """
        id: graded
        select: {metrics: [power_kw]}
        when: {above: 5}
        for: 15m
        risk_factors: {C: 0.67, D: 0.33}
        """
    )


@pytest.mark.parametrize(
    ("risk_class", "minute"), [("A", 16), ("B", 16), ("C", 12), ("D", 6)]
)
def test_a_high_risk_enterprise_is_warned_earlier_on_the_same_series(
    graded_rule, make_obs, make_enterprise, run, risk_class, minute
):
    # Readings every minute from minute 1. `for` 15m ends at minute 16;
    # class C waits 0.67 * 15 = 10.05 min, to the reading at 12; class D
    # 0.33 * 15 = 4.95 min, to the reading at 6.
    series = [make_obs("power_kw", 80, m) for m in range(1, 40)]
    records = run([graded_rule], series, make_enterprise(risk_class=risk_class))
    assert [r.status.value for r in records] == ["open"]
    assert records[0].start_time == _moment(1)
    assert records[0].detection_time == _moment(minute)


def test_an_unregistered_enterprise_waits_the_whole_for(graded_rule, make_obs, run):
    series = [make_obs("power_kw", 80, m) for m in range(1, 40)]
    [record] = run([graded_rule], series, None)
    assert record.detection_time == _moment(16)


def test_a_finding_matched_by_two_conditions_is_explained_once(
    run, make_obs, default_rules
):
    # spike-or-drop asks for the robust_z finding in two conditions (the
    # combined score with a detector, and rate_of_change alone): the item
    # said each detail two or three times ("a step of 33.4 usual steps ...;
    # ...; a step of 33.4 usual steps ...").
    [rule] = [r for r in default_rules if r.id == "spike-or-drop"]
    robust = Finding(
        detector="robust_z", score=0.95, detail="above the rolling median by 39.5"
    )
    step = Finding(
        detector="rate_of_change", score=0.9, detail="a step of 33.4 usual steps"
    )
    records = run(
        [rule],
        [
            make_obs("temperature_c", 20, 0),
            make_obs("temperature_c", 90, 1, score=0.95, findings=[robust, step]),
        ],
    )
    said = records[0].items[0].observed
    assert said.count("above the rolling median by 39.5") == 1, said
    assert said.count("a step of 33.4 usual steps") == 1, said
