"""The warning lifecycle: which transitions are allowed, and applying them.

A warning's status changes only through :func:`step`, which the lifecycle agent
of the worker (:mod:`stream_jobs.app`) calls for every command on the commands
topic, one warning at a time and in the order of that topic's partition. The
rule engine's versions arrive there as commands too (:meth:`Command.of_engine`),
so the engine and the officers never write the same warning concurrently.

Transitions (``TRANSITIONS``; anything else is refused with
:class:`TransitionError`)::

    (none)        --open (engine)---------> open
    open          --acknowledge (officer)-> acknowledged
    resolved      --acknowledge (officer)-> acknowledged
    acknowledged  --dispose (officer)-----> disposed       a note is required
    disposed      --close (officer)-------> closed
    resolved      --close (officer)-------> closed
    open, acknowledged, disposed
                  --resolve (engine)------> resolved       the condition cleared
    open, acknowledged, disposed
                  --expire (worker)-------> expired        no reading for
                                                           worker.expire_after_s
    open, acknowledged, disposed
                  --escalate, deescalate (engine)--> the same status, at the
                                                   engine's new level
    open, acknowledged, disposed
                  --flap (engine)---------> the same status, ``flapping`` set
    open, acknowledged, disposed
                  --update (engine)-------> the same status and level: a
                                            grouped warning's members changed

Every transition appends one :class:`AuditEntry` (who, when, from, to,
comment, command id); the history is never rewritten, so a resolution after an
acknowledgement leaves the acknowledgement in it. Closed and expired are final.

A level change keeps the status: an acknowledged warning that escalates stays
acknowledged (the officer is on it), and the new version, delivered like any
other, tells the platform of the new level. Its handling deadline follows the
new level (:func:`deadline_after`).

``release`` (worker) is not a transition: a warning whose opening a silence
covered is kept with ``held`` set, and released (``held`` cleared, no new
history entry, the same version id) when no silence covers it any more and
it is still active; the platform then gets the version it was never sent.
A later engine version a silence covered (a silence recorded while the
warning was open) sets ``held`` and ``held_from`` (its version number); such
a warning is released however it stands, so the platform, which has its
opening, also hears how it ended.

Applying is deterministic: the new version takes its times from the command,
never from a clock, so the same command applied again after a restart gives
the same version with the same version id.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, Field, ValidationError, model_validator

from alert_rules.rule import Level
from alert_rules.warning import (
    AuditEntry,
    WarningRecord,
    WarningStatus,
    _Record,
)

logger = logging.getLogger(__name__)

COMMAND_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
COMMENT_CHARS = 2000  # an officer's note, not a report: those go elsewhere
REJECTED_KEPT = 64  # refused command ids remembered per warning, for redeliveries

DEFAULT_HANDLING_LIMITS: Mapping[Level, timedelta] = {
    Level.I: timedelta(hours=1),
    Level.II: timedelta(hours=4),
    Level.III: timedelta(hours=24),
    Level.IV: timedelta(hours=72),
}
"""How long an officer has to handle a warning of each level, from its opening."""


class Action(StrEnum):
    """What a command asks for."""

    OPEN = "open"
    RESOLVE = "resolve"
    ACKNOWLEDGE = "acknowledge"
    DISPOSE = "dispose"
    CLOSE = "close"
    EXPIRE = "expire"
    RELEASE = "release"
    ESCALATE = "escalate"
    DEESCALATE = "deescalate"
    FLAP = "flap"
    UPDATE = "update"


OFFICER_ACTIONS = (Action.ACKNOWLEDGE, Action.DISPOSE, Action.CLOSE)
LEVEL_ACTIONS = (Action.ESCALATE, Action.DEESCALATE)
"""The engine's level changes: allowed while the warning is active, and
leaving its status as it is."""
IN_PLACE_ACTIONS = (*LEVEL_ACTIONS, Action.FLAP, Action.UPDATE)
"""The engine's versions that keep the status: level changes, the mark of a
flapping warning and a grouped warning's new members."""
_ENGINE_ACTIONS = (Action.OPEN, Action.RESOLVE, *IN_PLACE_ACTIONS)

WORKER_ACTOR = "riskwatch-worker"
"""The ``by`` of the commands the worker's timers send (expire, release)."""

S = WarningStatus
ACTIVE = frozenset({S.OPEN, S.ACKNOWLEDGED, S.DISPOSED})
"""Statuses in which the condition may still hold: resolve and expire apply."""

TRANSITIONS: Mapping[Action, tuple[frozenset[WarningStatus], WarningStatus]] = {
    Action.ACKNOWLEDGE: (frozenset({S.OPEN, S.RESOLVED}), S.ACKNOWLEDGED),
    Action.DISPOSE: (frozenset({S.ACKNOWLEDGED}), S.DISPOSED),
    Action.CLOSE: (frozenset({S.DISPOSED, S.RESOLVED}), S.CLOSED),
    Action.RESOLVE: (ACTIVE, S.RESOLVED),
    # Expiry is resolve's counterpart when evidence stops for good, so it
    # applies where resolve does: an acknowledged warning left alone on a
    # device that never reports again must not stay acknowledged forever
    # while the rule engine has forgotten it.
    Action.EXPIRE: (ACTIVE, S.EXPIRED),
}
"""Per action: the statuses it may be applied in, and the status it leads to.
``open``, ``release`` and the level changes (:data:`LEVEL_ACTIONS`) are not
here: one creates a warning, the others change no status."""


class LifecycleError(Exception):
    """A command that cannot be applied to the warning as it stands."""


class UnknownWarning(LifecycleError):
    """The command names a warning that does not exist."""

    def __init__(self, warning: str) -> None:
        super().__init__(f"warning {warning!r} does not exist")
        self.warning = warning


class TransitionError(LifecycleError):
    """The action is not allowed from the warning's current status."""

    def __init__(self, warning: str, status: WarningStatus, action: Action) -> None:
        allowed = ", ".join(sorted(s.value for s in allowed_from(action)))
        super().__init__(
            f"warning {warning} is {status.value}: {action.value} is allowed only "
            f"when it is {allowed or 'new'}"
        )
        self.warning, self.status, self.action = warning, status, action


def allowed_from(action: Action) -> frozenset[WarningStatus]:
    """The statuses ``action`` may be applied in (none for ``open``)."""
    if action in IN_PLACE_ACTIONS:
        return ACTIVE
    entry = TRANSITIONS.get(action)
    return entry[0] if entry is not None else frozenset()


def allowed_actions(status: WarningStatus) -> list[Action]:
    """The officer actions allowed on a warning in ``status``.

    >>> [a.value for a in allowed_actions(WarningStatus.RESOLVED)]
    ['acknowledge', 'close']
    """
    return [a for a in OFFICER_ACTIONS if status in TRANSITIONS[a][0]]


class Command(_Record):
    """One request to change a warning, as it travels on the commands topic.

    Attributes:
        id: unique per request; the same id delivered again is applied once.
            Engine versions use their version id (``rw-….v1``).
        warning: the warning id (also the Kafka key).
        action: what to do.
        by: who asks: an officer's API user name, or the rule engine.
        at: when riskwatch accepted the request (UTC); the new version's
            issue time and the audit entry's ``at``.
        comment: why; for ``dispose`` the required note of what was done.
        record: the engine's version, for ``open``, ``resolve``,
            ``escalate``, ``deescalate`` and ``flap`` only.
    """

    v: int = 1
    id: str = Field(pattern=COMMAND_ID_PATTERN)
    warning: str = Field(min_length=1, max_length=128)
    action: Action
    by: str = Field(min_length=1, max_length=128)
    at: AwareDatetime
    comment: str = Field(default="", max_length=COMMENT_CHARS)
    record: WarningRecord | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Command:
        if self.action == Action.DISPOSE and not self.comment.strip():
            raise ValueError("comment: a disposal needs a note of what was done")
        engine = self.action in _ENGINE_ACTIONS
        if engine != (self.record is not None):
            raise ValueError(
                f"record: required for {self.action.value}"
                if engine
                else f"record: not allowed for {self.action.value}"
            )
        if self.record is not None and self.record.id != self.warning:
            raise ValueError(
                f"record: id {self.record.id!r} is not warning {self.warning!r}"
            )
        return self

    @classmethod
    def of_engine(cls, record: WarningRecord) -> Command:
        """The command carrying one version the rule engine emitted."""
        last = record.history[-1]
        change = last.level_change
        if record.status != S.OPEN:
            action = Action.RESOLVE
        elif change is None and last.from_status is None:
            action = Action.OPEN
        elif change is None:
            # Neither an opening nor a level change: a grouped warning's
            # members changed (only grouped warnings have members), or the
            # flapping mark.
            action = Action.UPDATE if record.members else Action.FLAP
        else:
            up = change[1].severity > change[0].severity
            action = Action.ESCALATE if up else Action.DEESCALATE
        return cls(
            id=record.version_id,
            warning=record.id,
            action=action,
            by=last.by,
            at=last.at,
            comment=last.comment,
            record=record,
        )


class Refusal(_Record):
    """A command the lifecycle agent refused, as it travels on the refusals
    topic (keyed by warning id): the officer API answers the request that
    sent it 409 as soon as it reads this, instead of waiting in vain.

    Attributes:
        command: the refused command's id.
        warning, action, by: the command's.
        status: the warning's status when the command came; None when the
            warning does not exist.
        reason: why, naming the status and what the action needs.
    """

    v: int = 1
    command: str
    warning: str
    action: Action
    by: str
    status: WarningStatus | None
    reason: str

    @classmethod
    def of(cls, command: Command, error: LifecycleError) -> Refusal:
        """The refusal of ``command`` for ``error`` (:func:`step`'s)."""
        return cls(
            command=command.id,
            warning=command.warning,
            action=command.action,
            by=command.by,
            status=error.status if isinstance(error, TransitionError) else None,
            reason=str(error),
        )


def worker_command(warning: str, action: Action, at: datetime, comment: str) -> Command:
    """A command of one of the worker's timers (``expire``, ``release``).

    Its id is one per warning and action, so a timer that sends it again
    before the first was applied changes nothing.
    """
    return Command(
        id=f"{action.value}-{warning}",
        warning=warning,
        action=action,
        by=WORKER_ACTOR,
        at=at,
        comment=comment,
    )


def apply(
    current: WarningRecord | None,
    command: Command,
    limits: Mapping[Level, timedelta] = DEFAULT_HANDLING_LIMITS,
) -> WarningRecord | None:
    """The version ``command`` makes of ``current``; None if already applied.

    Args:
        current: the warning's latest version, None if it has none yet.
        command: the request.
        limits: handling time per level, for the ``deadline`` of a new warning.

    Raises:
        UnknownWarning: an officer command for a warning with no version.
        TransitionError: the action is not allowed from the current status.
    """
    if current is None:
        if command.record is None:
            raise UnknownWarning(command.warning)
        return _created(command.record, command, limits)
    if any(entry.command == command.id for entry in current.history):
        return None
    if command.action == Action.OPEN:
        # The same opening under another command id (a version written before
        # audit entries carried ids): the warning exists, nothing changes.
        return None
    if command.action == Action.RELEASE:
        return _released(current)
    if command.action in IN_PLACE_ACTIONS:
        return _in_place(current, command, limits)
    allowed, target = TRANSITIONS[command.action]
    if current.status not in allowed:
        raise TransitionError(current.id, current.status, command.action)
    entry = AuditEntry(
        at=command.at,
        status=target,
        by=command.by,
        comment=command.comment,
        from_status=current.status,
        command=command.id,
    )
    update: dict[str, Any] = {
        "status": target,
        "history": [*current.history, entry],
        "issue_time": command.at,
    }
    if command.record is not None:  # resolve: the engine's view of the clearing
        update |= {
            "resolved_time": command.record.resolved_time,
            "valid_until": command.record.valid_until,
            "items": command.record.items,
            "members": command.record.members,
        }
    return current.model_copy(update=update | _held_later(current, command))


def _held_later(current: WarningRecord, command: Command) -> dict[str, Any]:
    """The held marks of an engine version a silence covered when it was
    emitted, for a warning not held yet: from this version on it is held."""
    record = command.record
    if current.held or record is None or not record.held:
        return {}
    return {
        "held": True,
        "silenced_by": record.silenced_by,
        "held_from": len(current.history) + 1,
    }


def _released(current: WarningRecord) -> WarningRecord | None:
    # Already released, or held from its opening and over (resolved, closed,
    # expired while held): nothing the platform still needs to hear about.
    # One held only from a later version was sent open: it hears the end.
    if not current.held or (current.status not in ACTIVE and not current.held_from):
        return None
    return current.model_copy(update={"held": False})


def _in_place(
    current: WarningRecord, command: Command, limits: Mapping[Level, timedelta]
) -> WarningRecord:
    """The engine's level change, flapping mark or grouped warning's update
    (its members, level unchanged) applied to ``current``, status kept."""
    record = command.record
    if record is None:  # pragma: no cover - Command checks this
        raise TransitionError(current.id, current.status, command.action)
    if current.status not in ACTIVE:
        raise TransitionError(current.id, current.status, command.action)
    flap = command.action == Action.FLAP
    same_level = flap or command.action == Action.UPDATE
    entry = AuditEntry(
        at=command.at,
        status=current.status,
        by=command.by,
        comment=command.comment,
        from_status=current.status,
        command=command.id,
        from_level=None if same_level else current.level,
        level=None if same_level else record.level,
    )
    update: dict[str, Any] = {
        "items": record.items,
        "members": record.members,
        "valid_until": record.valid_until,
        "history": [*current.history, entry],
        "issue_time": command.at,
    }
    update |= _held_later(current, command)
    if flap:
        update["flapping"] = True
    else:
        update |= {
            "level": record.level,
            "colour": record.colour,
            "levels": record.levels,
            "deadline": deadline_after(current, record.level, command.at, limits),
        }
    return current.model_copy(update=update)


def deadline_after(
    current: WarningRecord,
    level: Level,
    at: datetime,
    limits: Mapping[Level, timedelta] = DEFAULT_HANDLING_LIMITS,
) -> datetime:
    """The handling deadline once ``current`` changes to ``level`` at ``at``.

    Up, the officer has the new level's time from the change, but never more
    than before: ``min(deadline, at + limit[level])``. Down, the deadline is
    what the opening would have had at the new level, but never earlier than
    before: ``max(deadline, opened + limit[level])``. A warning opened at II
    (4 h) escalated to I after 30 minutes is due 1 h 30 min after its
    opening; de-escalated again, 4 h after it.
    """
    opened = current.history[0].at
    before = current.deadline or opened + limits[current.level]
    if level.severity > current.level.severity:
        return min(before, at + limits[level])
    return max(before, opened + limits[level])


def _created(
    record: WarningRecord, command: Command, limits: Mapping[Level, timedelta]
) -> WarningRecord:
    # The first version this agent sees is normally the opening; a resolution
    # whose opening it never saw (a table lost with its changelog) is kept as
    # the engine wrote it. Either way the last entry names this command.
    history = list(record.history)
    history[-1] = history[-1].model_copy(update={"command": command.id})
    return record.model_copy(
        update={"history": history, "deadline": history[0].at + limits[record.level]}
    )


def step(
    state: Mapping[str, Any] | None,
    command: Command,
    limits: Mapping[Level, timedelta] = DEFAULT_HANDLING_LIMITS,
) -> tuple[dict[str, Any] | None, WarningRecord | None, LifecycleError | None]:
    """Apply ``command`` to one warning's table state.

    The state is JSON-compatible: ``{"record": <latest version>, "rejected":
    [<command ids refused>]}``. Refused ids are kept (the last
    ``REJECTED_KEPT``) so that a command delivered again after a restart is
    not applied to a warning that has moved on since it was refused.

    Returns:
        The new state (None: unchanged), the version to publish (None:
        nothing new) and the error when the command was refused.
    """
    current = latest(state)
    rejected: list[str] = list((state or {}).get("rejected", []))
    if command.id in rejected:
        return None, None, None
    try:
        version = apply(current, command, limits)
    except LifecycleError as exc:
        if current is None:
            return None, None, exc
        rejected = [*rejected, command.id][-REJECTED_KEPT:]
        return (
            {"record": current.model_dump(mode="json"), "rejected": rejected},
            None,
            exc,
        )
    if version is None:
        return None, None, None
    return (
        {"record": version.model_dump(mode="json"), "rejected": rejected},
        version,
        None,
    )


def latest(state: Mapping[str, Any] | None) -> WarningRecord | None:
    """The latest version held in a table state, None if there is none."""
    if not state or state.get("record") is None:
        return None
    try:
        return WarningRecord.model_validate(state["record"])
    except ValidationError as exc:
        # Not expected (the agent wrote it); losing the history silently would
        # be worse than refusing officer commands for this warning.
        logger.error(  # noqa: TRY400 - the reason is in the message
            "unreadable warning state warning=%s errors=%d",
            state["record"].get("id"),
            exc.error_count(),
        )
        return None
