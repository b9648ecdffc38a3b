"""Level changes through the lifecycle agent: the status is kept, the level,
its history and the handling deadline follow the engine's version."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alert_rules import Level, WarningStatus
from alert_rules.lifecycle import (
    Action,
    Command,
    TransitionError,
    deadline_after,
    step,
)

S = WarningStatus
T0 = datetime(2026, 12, 3, tzinfo=UTC)  # minute 0 of the make_obs fixture


@pytest.fixture
def versions(escalating_gas_rule, make_obs, run):
    """The engine's versions of one gas warning: opened II at minute 0,
    escalated to I at 30, de-escalated to II at 50, resolved at 60."""
    pairs = [(0, 30), (30, 55), (40, 45), (50, 35), (60, 10)]
    observations = [make_obs("combustible_gas_lel", v, m) for m, v in pairs]
    # Readings 10 minutes apart are within the default max_gap.
    return run([escalating_gas_rule], observations)


def officer(warning, action, minute):
    return Command(
        id=f"cmd-{action.value}-{minute}",
        warning=warning,
        action=action,
        by="officer-li",
        at=T0 + timedelta(minutes=minute),
        comment="valve closed" if action == Action.DISPOSE else "",
    )


def apply_all(commands):
    state, published, errors = None, [], []
    for command in commands:
        new, version, error = step(state, command)
        state = new if new is not None else state
        published += [version] if version is not None else []
        errors += [error] if error is not None else []
    return published, errors


def test_the_engine_versions_become_escalate_and_deescalate_commands(versions):
    assert [Command.of_engine(v).action for v in versions] == [
        Action.OPEN,
        Action.ESCALATE,
        Action.DEESCALATE,
        Action.RESOLVE,
    ]


def test_an_open_warning_escalates_and_de_escalates_in_place(versions):
    published, errors = apply_all(Command.of_engine(v) for v in versions)
    assert errors == []
    assert [(v.status, v.level) for v in published] == [
        (S.OPEN, Level.II),
        (S.OPEN, Level.I),
        (S.OPEN, Level.II),
        (S.RESOLVED, Level.II),
    ]
    assert [v.version for v in published] == [1, 2, 3, 4]
    escalated = published[1]
    entry = escalated.history[-1]
    assert (entry.from_level, entry.level, entry.by) == (
        Level.II,
        Level.I,
        "riskwatch-rules",
    )
    assert entry.command == versions[1].version_id
    assert escalated.levels == versions[1].levels
    assert escalated.colour == "red"
    assert escalated.issue_time == T0 + timedelta(minutes=30)
    # Opened at II: 4 h; escalated to I at 30 min: 1 h from then.
    assert published[0].deadline == T0 + timedelta(hours=4)
    assert escalated.deadline == T0 + timedelta(minutes=90)
    # Back to II: the time the opening had at II.
    assert published[2].deadline == T0 + timedelta(hours=4)
    assert [e.level.value for e in published[-1].levels] == ["II", "I", "II"]


@pytest.mark.parametrize(
    ("handled", "status"),
    [
        ((Action.ACKNOWLEDGE,), S.ACKNOWLEDGED),
        ((Action.ACKNOWLEDGE, Action.DISPOSE), S.DISPOSED),
    ],
)
def test_a_handled_warning_keeps_its_status_and_is_published_again(
    versions, handled, status
):
    opened, escalated, deescalated, _ = (Command.of_engine(v) for v in versions)
    steps = [officer(opened.warning, a, 10 + n) for n, a in enumerate(handled)]
    published, errors = apply_all([opened, *steps, escalated, deescalated])
    assert errors == []
    *_, up, down = published
    assert (up.status, up.level, down.status, down.level) == (
        status,
        Level.I,
        status,
        Level.II,
    )
    assert up.history[-1].from_status == up.history[-1].status == status
    handled_statuses = [S.ACKNOWLEDGED, S.DISPOSED][: len(handled)]
    assert [e.status for e in up.history] == [S.OPEN, *handled_statuses, status]


def test_a_level_change_after_the_warning_ended_is_refused(versions):
    opened, escalated, _, resolved = (Command.of_engine(v) for v in versions)
    published, [error] = apply_all([opened, resolved, escalated])
    assert isinstance(error, TransitionError)
    assert "escalate is allowed only when it is acknowledged, disposed, open" in str(
        error
    )
    assert published[-1].status == S.RESOLVED


def test_a_level_change_delivered_twice_is_applied_once(versions):
    opened, escalated, *_ = (Command.of_engine(v) for v in versions)
    published, errors = apply_all([opened, escalated, escalated])
    assert errors == []
    assert len(published) == 2


def test_the_deadline_never_grows_on_escalation(versions):
    opened = versions[0].model_copy(update={"deadline": T0 + timedelta(minutes=20)})
    later = T0 + timedelta(minutes=15)
    assert deadline_after(opened, Level.I, later) == T0 + timedelta(minutes=20)
    assert deadline_after(opened, Level.III, later) == T0 + timedelta(hours=24)
