"""The warning lifecycle: allowed and refused transitions, the audit trail."""

import itertools
import json
from datetime import timedelta

import pytest
from pydantic import ValidationError

from alert_rules import WarningRecord, WarningStatus
from alert_rules.lifecycle import (
    OFFICER_ACTIONS,
    TRANSITIONS,
    Action,
    Command,
    TransitionError,
    UnknownWarning,
    allowed_actions,
    apply,
    latest,
    step,
    worker_command,
)
from alert_rules.rule import Level
from tests.unit.conftest import T0, make_warning_record

S = WarningStatus
OPENED = make_warning_record(level=Level.II)
RESOLVED = make_warning_record(level=Level.II, resolved=True)
_n = iter(range(1_000_000))


def officer(action, minutes=10, comment="", by="officer-li", ident=None):
    return Command(
        id=ident or f"cmd-{next(_n)}",
        warning=OPENED.id,
        action=action,
        by=by,
        at=T0 + timedelta(minutes=minutes),
        comment=comment or ("pump sealed" if action == Action.DISPOSE else ""),
    )


def run(*commands):
    """The versions published and the errors, applying commands in order."""
    state, versions, errors = None, [], []
    for command in commands:
        new, version, error = step(state, command)
        state = new if new is not None else state
        versions += [version] if version is not None else []
        errors += [error] if error is not None else []
    return state, versions, errors


def test_opening_sets_the_deadline_from_the_level_and_names_the_command():
    _, [version], _ = run(Command.of_engine(OPENED))
    assert version.status == S.OPEN
    assert version.deadline == OPENED.issue_time + timedelta(hours=4)
    assert version.history[0].command == OPENED.version_id
    custom = apply(None, Command.of_engine(OPENED), {Level.II: timedelta(minutes=5)})
    assert custom.deadline == OPENED.issue_time + timedelta(minutes=5)


def test_full_officer_path_appends_one_entry_per_transition_in_order():
    state, versions, errors = run(
        Command.of_engine(OPENED),
        officer(Action.ACKNOWLEDGE, 10, "on my way"),
        officer(Action.DISPOSE, 20, "valve closed, area ventilated"),
        officer(Action.CLOSE, 30),
    )
    assert errors == []
    assert [v.status for v in versions] == [
        S.OPEN,
        S.ACKNOWLEDGED,
        S.DISPOSED,
        S.CLOSED,
    ]
    assert [v.version for v in versions] == [1, 2, 3, 4]
    final = versions[-1]
    assert [(e.from_status, e.status) for e in final.history] == [
        (None, S.OPEN),
        (S.OPEN, S.ACKNOWLEDGED),
        (S.ACKNOWLEDGED, S.DISPOSED),
        (S.DISPOSED, S.CLOSED),
    ]
    assert final.history[2].comment == "valve closed, area ventilated"
    assert final.history[2].by == "officer-li"
    assert final.issue_time == T0 + timedelta(minutes=30)
    # History is never rewritten: each version's history is a prefix of the next.
    for earlier, later in itertools.pairwise(versions):
        assert later.history[: len(earlier.history)] == earlier.history
    assert latest(state) == final
    # The state survives a JSON round trip (a Faust changelog).
    assert latest(json.loads(json.dumps(state))) == final


def test_engine_resolution_after_acknowledgement_keeps_it_in_the_history():
    _, versions, errors = run(
        Command.of_engine(OPENED),
        officer(Action.ACKNOWLEDGE, 5),
        Command.of_engine(RESOLVED),
        officer(Action.CLOSE, 40),
    )
    assert errors == []
    resolved = versions[2]
    assert resolved.status == S.RESOLVED
    assert resolved.resolved_time == RESOLVED.resolved_time
    assert resolved.valid_until == RESOLVED.valid_until
    assert [e.status for e in versions[-1].history] == [
        S.OPEN,
        S.ACKNOWLEDGED,
        S.RESOLVED,
        S.CLOSED,
    ]
    assert versions[-1].history[2].from_status == S.ACKNOWLEDGED


@pytest.mark.parametrize("status", list(WarningStatus))
@pytest.mark.parametrize("action", [*OFFICER_ACTIONS, Action.RESOLVE])
def test_every_status_and_action_is_allowed_exactly_as_the_table_says(status, action):
    current = OPENED.model_copy(
        update={
            "status": status,
            "history": [
                *OPENED.history,
                OPENED.history[0].model_copy(update={"status": status}),
            ],
        }
    )
    command = (
        Command.of_engine(RESOLVED) if action == Action.RESOLVE else officer(action)
    )
    allowed, target = TRANSITIONS[action]
    if status in allowed:
        version = apply(current, command)
        assert version.status == target
        assert version.history[:-1] == current.history
    else:
        with pytest.raises(TransitionError, match=f"is {status.value}: {action.value}"):
            apply(current, command)


def test_allowed_actions_follow_the_table():
    assert allowed_actions(S.OPEN) == [Action.ACKNOWLEDGE]
    assert allowed_actions(S.ACKNOWLEDGED) == [Action.DISPOSE]
    assert allowed_actions(S.DISPOSED) == [Action.CLOSE]
    assert allowed_actions(S.CLOSED) == []
    assert allowed_actions(S.EXPIRED) == []


def test_a_refused_command_changes_nothing_and_is_not_applied_on_redelivery():
    ack_early = officer(Action.DISPOSE, 5)
    state, versions, errors = run(Command.of_engine(OPENED), ack_early)
    assert [type(e) for e in errors] == [TransitionError]
    assert len(versions) == 1
    assert state["rejected"] == [ack_early.id]
    # Acknowledged now, so the same disposal would be allowed: a redelivery of
    # the refused command must still not apply.
    state, _, _ = step(state, officer(Action.ACKNOWLEDGE, 6))
    assert step(state, ack_early) == (None, None, None)


def test_the_same_command_twice_is_applied_once():
    ack = officer(Action.ACKNOWLEDGE, 5)
    _, versions, errors = run(
        Command.of_engine(OPENED), ack, ack, Command.of_engine(OPENED)
    )
    assert errors == []
    assert [v.status for v in versions] == [S.OPEN, S.ACKNOWLEDGED]


def test_an_officer_command_for_an_unknown_warning_is_refused():
    state, version, error = step(None, officer(Action.ACKNOWLEDGE))
    assert (state, version) == (None, None)
    assert isinstance(error, UnknownWarning)


def test_a_resolution_seen_first_is_kept_as_the_engine_wrote_it():
    version = apply(None, Command.of_engine(RESOLVED))
    assert [e.status for e in version.history] == [S.OPEN, S.RESOLVED]
    assert version.history[-1].command == RESOLVED.version_id


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"action": "dispose", "comment": "  "}, "a disposal needs a note"),
        ({"action": "open"}, "record: required for open"),
        ({"id": "bad id"}, "String should match pattern"),
        ({"comment": "x" * 2001}, "at most 2000 characters"),
        ({"at": "2026-12-03T01:00:00"}, "timezone"),
    ],
)
def test_bad_commands_are_refused_naming_the_field(changes, message):
    data = {
        "id": "cmd-1",
        "warning": OPENED.id,
        "action": "acknowledge",
        "by": "officer-li",
        "at": T0.isoformat(),
        **changes,
    }
    with pytest.raises(ValidationError, match=message):
        Command.model_validate(data)


def test_records_written_before_the_lifecycle_still_read():
    old = json.loads(RESOLVED.to_json())
    for entry in old["history"]:
        del entry["from_status"], entry["command"]
    del old["deadline"]
    record = WarningRecord.model_validate(old)
    assert record.history[-1].from_status is None
    assert record.deadline is None


@pytest.mark.parametrize(
    "handled", [(), (Action.ACKNOWLEDGE,), (Action.ACKNOWLEDGE, Action.DISPOSE)]
)
def test_expiry_applies_to_every_active_status_and_is_final(handled):
    expire = worker_command(OPENED.id, Action.EXPIRE, T0 + timedelta(days=8), "gone")
    steps = [officer(action) for action in handled]
    _, versions, errors = run(
        Command.of_engine(OPENED), *steps, expire, expire, officer(Action.CLOSE)
    )
    assert versions[-1].status == S.EXPIRED
    assert versions[-1].history[-1].by == "riskwatch-worker"
    assert len(versions) == 2 + len(handled)
    [refused] = errors  # closing an expired warning
    assert isinstance(refused, TransitionError)


def test_release_clears_held_once_and_only_while_active():
    held = OPENED.model_copy(update={"held": True, "silenced_by": "sil-1"})
    release = worker_command(OPENED.id, Action.RELEASE, T0, "silence ended")
    _, versions, errors = run(Command.of_engine(held), release, release)
    assert [v.held for v in versions] == [True, False]
    assert versions[1].version_id == versions[0].version_id
    assert errors == []
    _, versions, _ = run(
        Command.of_engine(held), Command.of_engine(RESOLVED.model_copy()), release
    )
    assert [(v.status, v.held) for v in versions] == [
        (S.OPEN, True),
        (S.RESOLVED, True),
    ]
