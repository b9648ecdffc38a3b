"""Flap detection: a value hovering at a threshold gives one warning, held open
while its condition keeps toggling and resolved once its clear has held."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest

from alert_rules import Flap, RuleEngine, check_rules
from alert_rules.lifecycle import Action, Command, TransitionError, apply
from alert_rules.warning import WarningStatus
from stream_jobs.cloudevent import FLAPPING, event_type

T0 = datetime(2026, 12, 3, tzinfo=UTC)  # minute 0 of the make_obs fixture
GAS = "combustible_gas_lel"


def _moment(minute):
    return T0 + timedelta(minutes=minute)


def _gas(make_obs, pairs):
    return [make_obs(GAS, value, minute) for minute, value in pairs]


def _hover(minutes, low, high, start=0):
    """One reading a minute, alternating ``high`` and ``low``."""
    return [(start + m, high if m % 2 == 0 else low) for m in range(minutes)]


def _kinds(records):
    """(warning number, status, flapping) per record, warnings numbered in
    order of appearance."""
    ids: dict[str, int] = {}
    return [
        (ids.setdefault(r.id, len(ids) + 1), r.status.value, r.flapping)
        for r in records
    ]


@pytest.fixture
def bare(make_rule):
    """Over 25 %LEL, no clear: the default clear is `when` no longer holds."""
    return make_rule("{select: {metrics: [combustible_gas_lel]}, when: {above: 25}}")


@pytest.fixture
def hysteresis(make_rule):
    """Over 25 opens; under 20 for 3 minutes resolves."""
    return make_rule(
        """
        select: {metrics: [combustible_gas_lel]}
        when: {above: 25}
        clear: {below: 20}
        clear_for: 3m
        """
    )


# Syntax ----------------------------------------------------------------------


def test_every_rule_has_flap_detection_by_default(make_rule, default_rules):
    rule = make_rule("{when: {silent: true}}")
    assert rule.flap == Flap(
        window=timedelta(hours=1), changes=4, stable_for=timedelta(minutes=30)
    )
    assert all(r.flap == Flap() for r in default_rules)
    assert make_rule("{when: {silent: true}, flap: null}").flap is None
    custom = make_rule("{when: {silent: true}, flap: {changes: 6, window: 2h}}")
    assert (custom.flap.changes, custom.flap.window) == (6, timedelta(hours=2))
    assert custom.summary().endswith(
        "; flapping at 6 changes within 2h; resolves once its clear has held 30m"
    )


@pytest.mark.parametrize(
    ("flap", "field", "message"),
    [
        ({"changes": 1}, "flap.changes", "greater than or equal to 2"),
        ({"changes": 65}, "flap.changes", "less than or equal to 64"),
        ({"window": "0s"}, "flap.window", "longer than 0s"),
        ({"stable_for": "0s"}, "flap.stable_for", "longer than 0s"),
        ({"stable_for": "soon"}, "flap.stable_for", "expected a duration"),
        ({"count": 4}, "flap", "unknown key(s) 'count'"),
    ],
)
def test_a_bad_flap_policy_is_reported_with_its_field(tmp_path, flap, field, message):
    rule = {
        "id": "gas",
        "title": "gas",
        "level": "III",
        "when": {"silent": True},
        "flap": flap,
        "action": "a",
        "expected": "e",
    }
    (tmp_path / "gas.yaml").write_text(json.dumps({"rules": [rule]}))
    [problem] = check_rules(tmp_path).problems
    assert (problem.rule, problem.field) == ("#0 (gas)", field)
    assert message in problem.message


# A rule without clear ------------------------------------------------------


def test_a_hovering_value_without_clear_is_held_open_as_flapping(bare, make_obs, run):
    # 25.5, 24.5, ... for an hour: every reading flips the condition.
    records = run([bare], _gas(make_obs, _hover(60, 24.5, 25.5)))
    # The first warning resolves at the first dip (nothing says yet that the
    # value toggles); the second is marked flapping at its first dip, the
    # fourth change, and then stays open whatever the value does.
    assert _kinds(records) == [
        (1, "open", False),
        (1, "resolved", False),
        (2, "open", False),
        (2, "open", True),
    ]
    marked = records[-1]
    assert marked.history[-1].comment.startswith(
        "flapping: 4 changes since 2026-12-03T00:00:00Z; held open until its "
        "clear has held 30m"
    )
    assert [(e.status.value, e.from_status) for e in marked.history] == [
        ("open", None),
        ("open", WarningStatus.OPEN),
    ]
    assert "[flapping: 4 changes" in marked.items[0].observed
    assert marked.history[-1].level_change is None


def test_a_flapping_warning_resolves_once_its_clear_has_held_stable_for(
    bare, make_obs, run
):
    pairs = _hover(20, 24.5, 25.5) + [(20 + m, 10) for m in range(40)]
    records = run([bare], _gas(make_obs, pairs))
    assert _kinds(records) == [
        (1, "open", False),
        (1, "resolved", False),
        (2, "open", False),
        (2, "open", True),
        (2, "resolved", True),
    ]
    resolved = records[-1]
    # Last reading over 25 at minute 18, clear from 19: resolved 30m later.
    assert resolved.resolved_time == _moment(49)
    assert [e.status.value for e in resolved.history] == ["open", "open", "resolved"]
    assert resolved.history[:2] == records[-2].history


def test_new_openings_while_flapping_are_the_same_warning(bare, make_obs, run):
    # Hovering for two hours, with calm spells of 20 minutes in between:
    # each spell is shorter than stable_for, so it is one warning throughout.
    pairs = []
    for start in (0, 40, 80):
        pairs += _hover(20, 24.5, 25.5, start=start)
        pairs += [(start + 20 + m, 10) for m in range(20)]
    records = run([bare], _gas(make_obs, pairs))
    assert len({r.id for r in records}) == 2
    assert [r.status.value for r in records].count("resolved") == 1


# A rule with hysteresis ------------------------------------------------------


def test_a_value_toggling_across_both_thresholds_gives_one_warning(
    hysteresis, make_obs, run
):
    # Over 25, under 20 for 2 minutes, over 25 again, then under 20 for 4
    # minutes (clear_for 3m): without flap detection, one warning a cycle.
    pairs = []
    for base in range(0, 48, 8):
        values = [27, 18, 18, 27, 18, 18, 18, 18]
        pairs += [(base + m, v) for m, v in enumerate(values)]
    off = hysteresis.model_copy(update={"flap": None})
    assert len({r.id for r in run([off], _gas(make_obs, pairs))}) == 6
    records = run([hysteresis], _gas(make_obs, pairs))
    assert _kinds(records) == [(1, "open", False), (1, "open", True)]
    # Marked at the fourth change: opened at 0, clear from 1, over at 3,
    # clear again from 4.
    assert records[1].history[-1].at == _moment(4)


def test_the_hysteresis_band_is_no_change(hysteresis, make_obs, run):
    # Under 20, then 22 (between clear and when) restarts the clear run,
    # again and again, but the condition never fires again: no flap, and it
    # resolves once under 20 for 3 minutes.
    pairs = [(0, 30)] + [(m, 18 if m % 2 else 22) for m in range(1, 12)]
    pairs += [(12, 18), (13, 18), (14, 18), (15, 18)]
    records = run([hysteresis], _gas(make_obs, pairs))
    assert _kinds(records) == [(1, "open", False), (1, "resolved", False)]
    assert records[-1].resolved_time == _moment(14)


def test_one_episode_is_not_flapping(hysteresis, make_obs, run):
    pairs = [(0, 30), (1, 30), (2, 10), (3, 10), (4, 10), (5, 10)]
    records = run([hysteresis], _gas(make_obs, pairs))
    assert _kinds(records) == [(1, "open", False), (1, "resolved", False)]
    assert records[-1].resolved_time == _moment(5)  # clear_for as before


def test_changes_older_than_the_window_do_not_count(hysteresis, make_obs, run):
    # An episode every 70 minutes: at most three changes in any hour.
    pairs = []
    for start in (0, 70, 140, 210):
        pairs += [(start, 30), (start + 1, 10), (start + 2, 10), (start + 3, 10)]
        pairs += [(start + 4, 10)]
    records = run([hysteresis], _gas(make_obs, pairs))
    assert [r.status.value for r in records] == ["open", "resolved"] * 4
    assert not any(r.flapping for r in records)


def test_a_silence_is_no_change(hysteresis, make_obs, run):
    # Clearing, then silences between the clear readings: no evidence either
    # way, so no change is counted and the warning resolves as usual.
    pairs = [(0, 30)]
    observations = _gas(make_obs, pairs)
    for minute in range(1, 12, 2):
        observations.append(make_obs(GAS, 10, minute))
        observations.append(make_obs(GAS, None, minute + 1, silent_s=60))
    observations += _gas(make_obs, [(13, 10), (14, 10), (15, 10), (16, 10)])
    records = run([hysteresis], observations)
    assert _kinds(records) == [(1, "open", False), (1, "resolved", False)]


def test_the_change_log_stays_bounded(bare, make_obs, run):
    states = []
    run([bare], _gas(make_obs, _hover(600, 24.5, 25.5)), states=states)
    sizes = {len(s["flaps"]["r1|combustible_gas_lel"]["at"]) for s in states[10:]}
    assert max(sizes) <= Flap().changes
    assert len(json.dumps(states[-1])) < 2000


def test_the_change_log_survives_a_restart(bare, make_obs):
    observations = _gas(make_obs, _hover(4, 24.5, 25.5))
    engine = RuleEngine([bare], "X")
    state = {}
    for obs in observations[:-1]:
        state, _ = engine.evaluate(obs, None, state)
    restarted = RuleEngine([bare], "X")
    recovered = json.loads(json.dumps(state))
    _, records = restarted.evaluate(observations[-1], None, recovered)
    assert [(r.status.value, r.flapping) for r in records] == [("open", True)]


def test_a_level_change_after_the_mark_keeps_the_history_in_order(
    escalating_gas_rule, make_obs, run
):
    # Orange over 25, red over 50: over and under twice marks it flapping,
    # then the gas rises past 50.
    rule = escalating_gas_rule.model_copy(update={"clear_for": timedelta(minutes=3)})
    pairs = [(0, 30), (1, 10), (2, 30), (3, 10), (4, 55), (5, 55)]
    records = run([rule], _gas(make_obs, pairs))
    assert [(r.level.value, r.flapping) for r in records] == [
        ("II", False),
        ("II", True),
        ("I", True),
    ]
    # Every version's history is the one before and one more entry, so the
    # lifecycle's version numbers follow the engine's.
    for before, after in itertools.pairwise(records):
        assert after.history[:-1] == before.history
    assert records[-1].history[-1].level_change is not None


# The lifecycle and the platform ---------------------------------------------


def test_the_mark_is_its_own_command_and_event(bare, make_obs, run, make_warning):
    records = run([bare], _gas(make_obs, _hover(4, 24.5, 25.5)))
    opened, marked = records[-2:]
    command = Command.of_engine(marked)
    assert command.action is Action.FLAP
    assert Command.of_engine(opened).action is Action.OPEN
    stored = apply(None, Command.of_engine(opened))
    acked = apply(
        stored,
        Command(
            id="ack-1",
            warning=opened.id,
            action=Action.ACKNOWLEDGE,
            by="officer",
            at=_moment(3),
        ),
    )
    version = apply(acked, command)
    assert (version.status, version.flapping, version.level) == (
        WarningStatus.ACKNOWLEDGED,
        True,
        opened.level,
    )
    assert version.version == 3
    assert version.items == marked.items
    assert version.history[-1].comment == marked.history[-1].comment
    assert event_type(version) == FLAPPING
    assert event_type(stored) != FLAPPING
    assert apply(version, command) is None  # the same command again
    closed = acked.model_copy(update={"status": WarningStatus.CLOSED})
    with pytest.raises(TransitionError):
        apply(
            closed.model_copy(
                update={
                    "history": [
                        *closed.history[:-1],
                        closed.history[-1].model_copy(
                            update={"status": WarningStatus.CLOSED}
                        ),
                    ]
                }
            ),
            command,
        )
