"""Escalation steps: the rule syntax, and the engine raising and lowering the
level of one open warning in event time, with its level history."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from alert_rules import Level, RuleEngine, WarningStatus, check_rules

T0 = datetime(2026, 12, 3, tzinfo=UTC)  # minute 0 of the make_obs fixture
GAS = "combustible_gas_lel"


def _moment(minute):
    return T0 + timedelta(minutes=minute)


def _gas(make_obs, pairs):
    return [make_obs(GAS, value, minute) for minute, value in pairs]


def _levels(record):
    return [(e.level.value, e.from_) for e in record.levels]


def _changes(records):
    """(status, level, from_level, level) of each record's last history entry."""
    return [
        (
            r.status.value,
            r.level.value,
            *(lv.value for lv in r.history[-1].level_change),
        )
        if r.history[-1].level_change
        else (r.status.value, r.level.value)
        for r in records
    ]


@pytest.fixture
def persisting(make_rule):
    """Yellow over 25 %LEL, orange when it has held 30 minutes."""
    return make_rule(
        """
        level: III
        select: {metrics: [combustible_gas_lel]}
        when: {above: 25}
        clear: {below: 20}
        escalate:
          - {after: 30m, to: II}
        """
    )


@pytest.fixture
def worsening(escalating_gas_rule):
    """Orange over 25 %LEL, red over 50 until under 40; resolves after 5m."""
    return escalating_gas_rule.model_copy(update={"clear_for": timedelta(minutes=5)})


# Syntax ----------------------------------------------------------------------


def test_a_rule_with_both_kinds_of_step_parses(make_rule):
    rule = make_rule(
        """
        select: {metrics: [combustible_gas_lel]}
        when: {above: 25}
        escalate:
          - {after: 30m, to: II}
          - {when: {above: 50}, to: I}
        """
    )
    assert [(s.to, s.after, s.when is not None) for s in rule.escalate] == [
        (Level.II, timedelta(minutes=30), False),
        (Level.I, timedelta(0), True),
    ]
    assert rule.summary().endswith(
        "; II on value above 25 for 30m; I on value above 50"
    )


@pytest.mark.parametrize(
    ("escalate", "field", "message"),
    [
        ([{"after": "30m", "to": "III"}], "escalate.0.to", "must raise the level"),
        ([{"after": "30m", "to": "IV"}], "escalate.0.to", "got IV"),
        ([{"to": "I"}], "escalate.0.after", "needs `when`"),
        ([{"after": "0s", "to": "I"}], "escalate.0.after", "needs `when`"),
        ([{"after": "soon", "to": "I"}], "escalate.0.after", "expected a duration"),
        ([{"after": "30m", "to": "V"}], "escalate.0.to", "'I', 'II', 'III' or 'IV'"),
        ([{"after": "30m", "to": "I", "by": 2}], "escalate.0", "unknown key(s) 'by'"),
        ([{"when": {"over": 50}, "to": "I"}], "escalate.0.when", "exactly one key"),
    ],
)
def test_a_bad_step_is_reported_with_file_rule_and_field(
    tmp_path, escalate, field, message
):
    rule = {
        "id": "gas",
        "title": "gas",
        "level": "III",
        "select": {"metrics": [GAS]},
        "when": {"above": 25},
        "escalate": escalate,
        "action": "a",
        "expected": "e",
    }
    (tmp_path / "gas.yaml").write_text(json.dumps({"rules": [rule]}))
    [problem] = check_rules(tmp_path).problems
    assert (problem.file.name, problem.rule, problem.field) == (
        "gas.yaml",
        "#0 (gas)",
        field,
    )
    assert message in problem.message


def test_a_step_comparing_values_needs_the_rule_to_list_its_metrics(make_rule):
    with pytest.raises(ValidationError, match="must list its metrics"):
        make_rule("{when: {fired: [stuck]}, escalate: [{when: {above: 5}, to: I}]}")


# Engine ----------------------------------------------------------------------


def test_escalation_after_the_condition_held_for_after(persisting, make_obs, run):
    records = run([persisting], _gas(make_obs, [(m, 30) for m in range(0, 40)]))
    assert _changes(records) == [("open", "III"), ("open", "II", "III", "II")]
    opened, escalated = records
    assert escalated.id == opened.id
    assert escalated.start_time == opened.start_time == _moment(0)
    # The first reading at least 30 minutes after the start.
    assert _levels(escalated) == [("III", _moment(0)), ("II", _moment(30))]
    assert escalated.colour == "orange"
    assert escalated.issue_time == _moment(30)
    assert escalated.valid_until == _moment(30) + timedelta(hours=24)
    entry = escalated.history[-1]
    assert (entry.status, entry.from_status, entry.by) == (
        WarningStatus.OPEN,
        WarningStatus.OPEN,
        "riskwatch-rules",
    )
    assert entry.comment == "escalated III -> II: value above 25 for 30m"
    assert escalated.history[0] == opened.history[0]
    assert escalated.version == 2


def test_the_after_clock_restarts_when_the_condition_fails(persisting, make_obs, run):
    # 22 %LEL is in the hysteresis band: the warning stays open, but the
    # condition did not hold, so the 30 minutes start again at minute 10.
    pairs = (
        [(m, 30) for m in range(0, 9)] + [(9, 22)] + [(m, 30) for m in range(10, 45)]
    )
    records = run([persisting], _gas(make_obs, pairs))
    assert [r.levels[-1].from_ for r in records] == [_moment(0), _moment(40)]


def test_a_gap_beyond_max_gap_does_not_satisfy_after(persisting, make_obs, run):
    # The warning stays open over the 20-minute gap (default max_gap 10m),
    # but the gap is not evidence that the gas stayed high: the 30 minutes
    # count again from the first reading after it.
    pairs = [(m, 30) for m in range(0, 11)] + [(m, 30) for m in range(31, 70)]
    records = run([persisting], _gas(make_obs, pairs))
    assert _changes(records) == [("open", "III"), ("open", "II", "III", "II")]
    assert records[1].levels[-1].from_ == _moment(61)


def test_escalation_on_a_second_threshold(worsening, make_obs, run):
    pairs = [(0, 30), (1, 45), (2, 50), (3, 51), (4, 60)]
    records = run([worsening], _gas(make_obs, pairs))
    assert _changes(records) == [("open", "II"), ("open", "I", "II", "I")]
    escalated = records[1]
    assert _levels(escalated) == [("II", _moment(0)), ("I", _moment(3))]
    assert escalated.history[-1].comment == "escalated II -> I: value above 50"
    item = escalated.items[0]
    assert item.observed_value == 51
    assert "measured 51 %LEL" in item.observed
    assert item.action == "Evacuate the area."
    assert records[0].items[0].action == "look"


def test_de_escalation_with_hysteresis_and_again(worsening, make_obs, run):
    pairs = [(0, 30), (1, 55), (2, 45), (3, 41), (4, 39), (5, 45), (6, 49), (7, 52)]
    records = run([worsening], _gas(make_obs, pairs))
    assert _changes(records) == [
        ("open", "II"),
        ("open", "I", "II", "I"),  # 55
        ("open", "II", "I", "II"),  # 39: under 40, not just under 50
        ("open", "I", "II", "I"),  # 52
    ]
    assert _levels(records[-1]) == [
        ("II", _moment(0)),
        ("I", _moment(1)),
        ("II", _moment(4)),
        ("I", _moment(7)),
    ]
    assert records[2].history[-1].comment == "de-escalated I -> II: value below 40"
    assert records[2].items[0].action == "look"
    # One warning throughout, each version one history entry longer.
    assert {r.id for r in records} == {records[0].id}
    assert [r.version for r in records] == [1, 2, 3, 4]


def test_never_below_the_base_level(make_rule, make_obs, run):
    rule = make_rule(
        """
        level: II
        select: {metrics: [combustible_gas_lel]}
        when: {above: 25}
        clear: {below: 10}
        escalate:
          - {when: {above: 50}, to: I}
          - {after: 5m, to: I}
        """
    )
    pairs = [(0, 30), (1, 60), (6, 60), (7, 30), (9, 20), (10, 15), (11, 5)]
    records = run([rule], _gas(make_obs, pairs))
    assert _changes(records) == [
        ("open", "II"),
        ("open", "I", "II", "I"),  # over 50
        # At minute 7 the second step (over 25 %LEL since minute 0, for 5m
        # from minute 5) still justifies I; at minute 9 neither does.
        ("open", "II", "I", "II"),
        ("resolved", "II"),
    ]
    assert records[2].levels[-1].from_ == _moment(9)
    assert all(r.level.severity >= Level.II.severity for r in records)


def test_de_escalation_waits_while_the_warning_is_clearing(worsening, make_obs, run):
    # Straight from 55 to under 20: the warning resolves 5 minutes later at
    # I, with no de-escalation announced in between.
    pairs = [(0, 30), (1, 55)] + [(m, 10) for m in range(2, 9)]
    records = run([worsening], _gas(make_obs, pairs))
    assert _changes(records) == [
        ("open", "II"),
        ("open", "I", "II", "I"),
        ("resolved", "I"),
    ]
    resolved = records[-1]
    assert resolved.resolved_time == _moment(7)
    assert [e.status.value for e in resolved.history] == ["open", "open", "resolved"]
    assert resolved.history[-1].level_change is None


def test_a_clearing_that_fails_applies_the_waiting_de_escalation(
    worsening, make_obs, run
):
    pairs = [(0, 30), (1, 55), (2, 10), (3, 30)]
    records = run([worsening], _gas(make_obs, pairs))
    assert _changes(records)[-1] == ("open", "II", "I", "II")
    assert records[-1].levels[-1].from_ == _moment(3)


def test_a_reading_straight_past_the_second_threshold_opens_at_that_level(
    worsening, make_obs, run
):
    [record] = run([worsening], _gas(make_obs, [(0, 70)]))
    assert (record.level, record.colour, record.version) == (Level.I, "red", 1)
    assert _levels(record) == [("I", _moment(0))]
    assert record.levels[0].reason == ("opened: value above 25; at I: value above 50")
    assert record.items[0].action == "Evacuate the area."


def test_a_step_with_when_and_after_needs_its_own_condition_to_persist(
    make_rule, make_obs, run
):
    rule = make_rule(
        """
        level: III
        select: {metrics: [combustible_gas_lel]}
        when: {above: 25}
        escalate:
          - {when: {above: 40}, after: 10m, to: I}
        """
    )
    pairs = [(m, 30) for m in range(0, 5)] + [(m, 45) for m in range(5, 20)]
    records = run([rule], _gas(make_obs, pairs))
    assert [_levels(r)[-1] for r in records] == [
        ("III", _moment(0)),
        ("I", _moment(15)),
    ]


def test_level_changes_are_logged(worsening, make_obs, run, caplog):
    with caplog.at_level(logging.INFO, logger="alert_rules.engine"):
        records = run([worsening], _gas(make_obs, [(0, 30), (1, 55), (2, 30)]))
    lines = [r.getMessage() for r in caplog.records if "level changed" in r.message]
    assert lines == [
        f"warning level changed warning={records[0].id} rule=r1 from_level=II "
        "level=I device=D1 metric=combustible_gas_lel "
        "reason=escalated II -> I: value above 50",
        f"warning level changed warning={records[0].id} rule=r1 from_level=I "
        "level=II device=D1 metric=combustible_gas_lel "
        "reason=de-escalated I -> II: value below 40",
    ]


def test_the_state_round_trips_and_a_restart_gives_the_same_versions(
    worsening, make_obs
):
    observations = _gas(make_obs, [(0, 30), (1, 55), (2, 45), (3, 35), (4, 55)])
    engine = RuleEngine([worsening], "X")
    state, straight = {}, []
    for obs in observations:
        state, new = engine.evaluate(obs, None, state)
        straight += new
    again, restarted = {}, []
    for obs in observations:
        # A fresh engine per reading, with the state read back from JSON.
        again, new = RuleEngine([worsening], "X").evaluate(
            obs, None, json.loads(json.dumps(again))
        )
        restarted += new
    assert restarted == straight
    assert json.loads(json.dumps(state)) == state == again
    [track] = state["tracks"].values()
    assert [m["level"] for m in track["levels"]] == ["II", "I", "II", "I"]


def test_a_state_from_before_escalation_still_reads(worsening, make_obs):
    engine = RuleEngine([worsening], "X")
    state, _ = engine.evaluate(make_obs(GAS, 30, 0), None, {})
    [track] = state["tracks"].values()
    del track["steps"], track["levels"]
    state, [record] = engine.evaluate(make_obs(GAS, 60, 1), None, state)
    assert _levels(record) == [("II", _moment(0)), ("I", _moment(1))]


def test_records_from_before_levels_still_read(worsening, make_obs, run):
    [record] = run([worsening], _gas(make_obs, [(0, 30)]))
    data = json.loads(record.to_json())
    del data["levels"]
    for entry in data["history"]:
        del entry["from_level"], entry["level"]
    old = type(record).model_validate(data)
    assert old.levels == []
    assert old.history[0].level_change is None


def test_a_record_whose_level_differs_from_its_levels_is_refused(
    worsening, make_obs, run
):
    [record] = run([worsening], _gas(make_obs, [(0, 30)]))
    data = json.loads(record.to_json())
    data["level"], data["colour"] = "I", "red"
    with pytest.raises(ValidationError, match="differs from the last entry of levels"):
        type(record).model_validate(data)


def test_risk_factors_scale_after(make_rule, make_obs, make_enterprise, run):
    # No `for`: the factors have the step's `after` to scale, so they are
    # allowed; class D waits half of the 30 minutes, class A all of them.
    rule = make_rule(
        """
        level: III
        select: {metrics: [combustible_gas_lel]}
        when: {above: 25}
        escalate:
          - {after: 30m, to: II}
        risk_factors: {D: 0.5}
        """
    )
    gas = _gas(make_obs, [(m, 30) for m in range(0, 40, 5)])
    for risk_class, minute in (("D", 15), ("A", 30)):
        records = run([rule], gas, make_enterprise(risk_class=risk_class))
        assert [r.level.value for r in records] == ["III", "II"]
        assert records[1].levels[-1].from_ == _moment(minute)
    unregistered = run([rule], gas)
    assert unregistered[1].levels[-1].from_ == _moment(30)
