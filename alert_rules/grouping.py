"""Grouped warnings: the same finding at several members is one warning.

A rule of scope ``enterprise``, ``grid`` or ``district`` runs the rule
engine's state machine on every device's metric streams, like a device rule
(``for``, ``clear``, escalation steps and all). Its device-scope records are
not delivered: each is a *finding* of a *member* of a group, and
:func:`apply` folds it into the group's state:

* an ``enterprise`` rule: the members are the devices of one enterprise;
* a ``grid`` or ``district`` rule: the members are the enterprises of one
  grid or district (an enterprise has the finding while one of its devices
  does).

The group warning opens once ``group.min_members`` members have the finding
(all of them started within ``group.window`` of each other, when a window is
set), escalates and de-escalates with the most severe level of its members'
findings, and resolves once fewer than ``min_members`` members have it (for
an enterprise rule without ``group``: once none has). Its versions are
ordinary :class:`~alert_rules.warning.WarningRecord` versions (open, level
change, resolved), which go through the lifecycle, delivery and storage like
any other.

* ``start_time``: for ``min_members`` 1, the earliest member's start; for
  more, the start of the member that completed the group (the earliest one
  that did, with a window): a grid "at 3 enterprises" situation begins when
  the third enterprise's finding does. Never before the previous warning of
  the same group resolved, so each episode has its own id.
* ``id``: :func:`~alert_rules.warning.warning_id` of the rule,
  ``<kind>/<scope id>`` and that start time.
* ``members``: every member the warning has had, with its own start time and
  level, ``active`` while it has the finding; ``items``: one per device
  finding still open (the device's observation and evidence), at most
  :data:`MAX_ITEMS`.

Pure and deterministic: no I/O, no clock. Times come from the member records
(event time of the readings, issue times as the engine wrote them), so the
same member records in the same order give the same versions with the same
ids. The caller keeps one state per group, a JSON-serialisable dict, in a
changelog-backed table keyed like the topic that carries the member records:
:func:`group_key` (stream_jobs/app.py, agent ``group``).
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from alert_rules._base import to_ns
from alert_rules.engine import _moment, _ns, engine_entry
from alert_rules.rule import GroupSpec, Level, Rule, ScopeKind, most_severe
from alert_rules.warning import (
    ANY,
    LevelEntry,
    Member,
    Officer,
    WarningItem,
    WarningRecord,
    WarningScope,
    WarningStatus,
    _Record,
    warning_id,
)
from riskwatch.contracts import Metric
from riskwatch.registry import Enterprise

logger = logging.getLogger(__name__)

MAX_ITEMS = 50
"""Items of a group warning: the earliest device findings; ``members`` lists
every member whatever their number."""


class ExpiredDevice(_Record):
    """A device whose warnings the worker expired (no reading for
    ``worker.expire_after_s``): its findings leave every group."""

    enterprise: str
    device: str
    at: AwareDatetime


class GroupNote(_Record):
    """One message on the grouping topic, keyed by :func:`group_key`.

    Attributes:
        rule: the grouped rule.
        group: ``<kind>/<scope id>`` (:func:`group_of`).
        record: a member's device-scope version, as the engine emitted it
            (opening, level change or resolution).
        expire: or a device gone for good.
    """

    v: int = 1
    rule: str = Field(min_length=1)
    group: str = Field(min_length=1)
    record: WarningRecord | None = None
    expire: ExpiredDevice | None = None

    @model_validator(mode="after")
    def _one(self) -> GroupNote:
        if (self.record is None) == (self.expire is None):
            raise ValueError("record: a note carries a record or an expire, one")
        return self

    @property
    def key(self) -> bytes:
        return group_key(self.rule, self.group)


def group_of(rule: Rule, record: WarningRecord) -> str | None:
    """``<kind>/<scope id>`` of the group a member record belongs to.

    None for a grid or district rule when the device's enterprise is not in
    the registry (its grid and district are not known).
    """
    ident = {
        ScopeKind.ENTERPRISE: record.enterprise_id,
        ScopeKind.GRID: record.grid,
        ScopeKind.DISTRICT: record.district,
    }.get(rule.scope)
    return None if ident is None else f"{rule.scope.value}/{ident}"


def group_key(rule: str, group: str) -> bytes:
    """The Kafka and table key of one group of one rule.

    >>> group_key("hazchem-sensors-silent", "enterprise/HC001")
    b'hazchem-sensors-silent|enterprise/HC001'
    """
    return f"{rule}|{group}".encode()


def group_for_device(
    rule: Rule, enterprise_id: str, enterprise: Enterprise | None
) -> str | None:
    """``<kind>/<scope id>`` of the group of ``rule`` a device belongs to."""
    ident = {
        ScopeKind.ENTERPRISE: enterprise_id,
        ScopeKind.GRID: enterprise.grid if enterprise else None,
        ScopeKind.DISTRICT: enterprise.district if enterprise else None,
    }.get(rule.scope)
    return None if ident is None else f"{rule.scope.value}/{ident}"


@dataclass(frozen=True)
class GroupInfo:
    """What the registry says about a group, for its records.

    Attributes:
        name: readable name of the scope (the enterprise's name; ``grid
            nanhu-g2``).
        enterprise_name: the enterprise's name, for an enterprise group.
        grid: the grid id (an enterprise's; a grid's own), None for a
            district or when unknown.
        district: the district id, None when unknown.
        officer: who the warning is routed to (see :func:`group_info`).
    """

    name: str
    enterprise_name: str | None = None
    grid: str | None = None
    district: str | None = None
    officer: Officer | None = None


def group_info(group: str, enterprises: Iterable[Enterprise]) -> GroupInfo:
    """The :class:`GroupInfo` of ``<kind>/<scope id>`` from the registry.

    An enterprise group goes to the enterprise's officer; a grid group to
    the grid officer, the officer the registry names for most of the grid's
    enterprises (ties: the smallest officer id). The registry names no
    district officer: a district group carries none, and the platform
    routes it by district.
    """
    kind, ident = group.split("/", 1)
    if kind == ScopeKind.ENTERPRISE.value:
        found = next((e for e in enterprises if e.id == ident), None)
        if found is None:
            return GroupInfo(name=ident)
        return GroupInfo(
            name=found.name,
            enterprise_name=found.name,
            grid=found.grid,
            district=found.district,
            officer=_officer(found),
        )
    if kind == ScopeKind.GRID.value:
        inside = [e for e in enterprises if e.grid == ident]
        districts = {e.district for e in inside}
        counts = Counter(e.officer.id for e in inside)
        officer = None
        if counts:
            best = min(counts, key=lambda o: (-counts[o], o))
            officer = next(_officer(e) for e in inside if e.officer.id == best)
        return GroupInfo(
            name=f"grid {ident}",
            grid=ident,
            district=districts.pop() if len(districts) == 1 else None,
            officer=officer,
        )
    return GroupInfo(name=f"district {ident}", district=ident)


def _officer(enterprise: Enterprise) -> Officer:
    o = enterprise.officer
    return Officer(id=o.id, name=o.name, phone=o.phone)


def split_members(
    grouped: Mapping[str, Rule], records: Iterable[WarningRecord]
) -> tuple[list[GroupNote], list[WarningRecord]]:
    """The notes for the grouping stage, and the records to publish as they
    are.

    Args:
        grouped: the grouped rules by id.
        records: what the engine (or the group stage) emitted.

    Returns:
        One note per device record of a grouped rule whose group is known
        (a grid or district rule skips a device of an enterprise missing
        from the registry), and every other record.
    """
    notes: list[GroupNote] = []
    others: list[WarningRecord] = []
    for record in records:
        rule = grouped.get(record.rule_id)
        if rule is None or record.scope.kind != ScopeKind.DEVICE:
            others.append(record)
            continue
        group = group_of(rule, record)
        if group is None:
            logger.debug(
                "member without a group skipped warning=%s rule=%s enterprise=%s",
                record.id,
                rule.id,
                record.enterprise_id,
            )
            continue
        notes.append(GroupNote(rule=rule.id, group=group, record=record))
    return notes, others


class GroupTable:
    """Every group's state in a dict, as the worker's table keeps it, with
    the worker's routing: for offline replays (the bench, scenario tests).

    Args:
        rules: all the rules; the grouped ones are used.
        enterprises: the registry.
        authority: written on the group records.
    """

    def __init__(
        self, rules: Iterable[Rule], enterprises: Sequence[Enterprise], authority: str
    ) -> None:
        self.grouped = {r.id: r for r in rules if r.enabled and r.scope.grouped}
        self.enterprises = enterprises
        self.authority = authority
        self.states: dict[bytes, dict[str, Any]] = {}

    def feed(self, records: Iterable[WarningRecord]) -> list[WarningRecord]:
        """The records to publish for what the engine emitted: the others as
        they are, then the group versions the members made."""
        notes, out = split_members(self.grouped, records)
        for note in notes:
            out.extend(self.apply(note))
        return out

    def apply(self, note: GroupNote) -> list[WarningRecord]:
        """One note, as the worker's group agent applies it."""
        state, records = apply(
            self.grouped[note.rule],
            self.states.get(note.key),
            note,
            group_info(note.group, self.enterprises),
            authority=self.authority,
        )
        self.states[note.key] = state
        return records


# State -------------------------------------------------------------------


class _Finding(BaseModel):
    """One open device finding of a member: the member's device-scope
    warning as its latest version stood."""

    model_config = ConfigDict(extra="forbid")

    enterprise: str
    device: str
    metric: Metric
    level: Level
    start: int
    item: WarningItem


class _Mark(BaseModel):
    """One version of the open warning: its opening, a level change, or an
    update (members joined or left, level unchanged)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["open", "level", "update"]
    level: Level
    at: int
    issued: int
    reason: str


class _Seen(BaseModel):
    """A member as the open warning last saw it."""

    model_config = ConfigDict(extra="forbid")

    enterprise: str
    start: int
    level: Level
    active: bool = True


class _Episode(BaseModel):
    """The group's open warning."""

    model_config = ConfigDict(extra="forbid")

    id: str
    start: int
    detected: int
    metric: Metric
    marks: list[_Mark]
    members: dict[str, _Seen] = Field(default_factory=dict)
    items: list[WarningItem] = Field(default_factory=list)


class _GroupState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    v: Literal[1] = 1
    # Open device findings, by the member's device-scope warning id.
    findings: dict[str, _Finding] = Field(default_factory=dict)
    open: _Episode | None = None
    # Event time the last warning of the group resolved, and its id.
    ended: int | None = None
    last_id: str | None = None
    # Per member metric stream (<enterprise>/<device>/<metric>): the start
    # and version of the latest member record applied. A record not after it
    # is a redelivery (Kafka is at least once, and the table may be ahead of
    # the committed offset after a crash) and changes nothing; bounded by
    # the group's devices and metrics.
    seen: dict[str, tuple[int, int]] = Field(default_factory=dict)


@dataclass(frozen=True)
class _Member:
    id: str
    enterprise: str
    start: int
    level: Level


def apply(
    rule: Rule,
    state: dict[str, Any] | None,
    note: GroupNote,
    info: GroupInfo,
    *,
    authority: str,
) -> tuple[dict[str, Any], list[WarningRecord]]:
    """Fold one member record (or a device's expiry) into its group.

    Args:
        rule: the grouped rule the note is about.
        state: what this function returned for the same group last time;
            None or ``{}`` for a new group. Not modified.
        note: the member's version or the expired device.
        info: the group's names and officer from the registry.
        authority: the issuing authority written on the group's records.

    Returns:
        The group's new state (JSON-serialisable, bounded by the members'
        open findings) and the group warning's new version, if the note made
        one: an opening, a level change or a resolution.
    """
    current = _load(state, note.key)
    if note.record is not None:
        record = note.record
        at, issued = _times(record)
        if record.metric is None:  # the worker sends device records only
            logger.warning("group note without a metric skipped warning=%s", record.id)
            return current.model_dump(mode="json"), []
        subject = f"{record.enterprise_id}/{record.device_id}/{record.metric.value}"
        position = (_ns(record.start_time), record.version)
        last = current.seen.get(subject)
        if last is not None and position <= tuple(last):
            logger.debug(
                "member record already applied warning=%s version=%d group=%s",
                record.id,
                record.version,
                note.group,
            )
            return current.model_dump(mode="json"), []
        current.seen[subject] = position
        if record.status == WarningStatus.OPEN:
            current.findings[record.id] = _Finding(
                enterprise=record.enterprise_id,
                device=record.device_id,
                metric=record.metric,
                level=record.level,
                start=_ns(record.start_time),
                item=_placed(record.items[0], record.enterprise_id),
            )
        else:
            current.findings.pop(record.id, None)
        why = f"device {record.enterprise_id}/{record.device_id}"
    else:
        gone = note.expire
        assert gone is not None  # noqa: S101 - GroupNote holds one of the two
        at = issued = _ns(gone.at)
        # Findings that started after the expiry are the device's return
        # (an expiry note delivered again after it): they stay.
        current.findings = {
            k: f
            for k, f in current.findings.items()
            if (f.enterprise, f.device) != (gone.enterprise, gone.device)
            or f.start > at
        }
        why = f"device {gone.enterprise}/{gone.device} expired"
    record_out = _judge(
        rule,
        current,
        note.group,
        info,
        at=at,
        issued=issued,
        why=why,
        authority=authority,
    )
    return current.model_dump(mode="json"), [record_out] if record_out else []


def _placed(item: WarningItem, enterprise: str) -> WarningItem:
    """The member's item with its enterprise on the evidence, which a grid
    or district record (enterprise ``*``) does not otherwise tell."""
    if item.evidence is None:
        return item
    evidence = item.evidence.model_copy(update={"enterprise": enterprise})
    return item.model_copy(update={"evidence": evidence})


def _load(state: dict[str, Any] | None, key: bytes) -> _GroupState:
    try:
        return _GroupState.model_validate(state or {})
    except ValidationError as exc:
        # As the engine does with a device state it cannot read: the group
        # starts afresh rather than stopping the agent.
        logger.warning(
            "unreadable group state reset group=%s errors=%d",
            key.decode(errors="replace"),
            exc.error_count(),
        )
        return _GroupState()


def _times(record: WarningRecord) -> tuple[int, int]:
    """Event time and issue time of a member's version."""
    issued = _ns(record.history[-1].at)
    if record.resolved_time is not None:
        return _ns(record.resolved_time), issued
    if record.history[-1].level_change is not None and record.levels:
        return _ns(record.levels[-1].from_), issued
    return _ns(record.detection_time), issued


def members_of(rule: Rule, findings: Iterable[_Finding]) -> list[_Member]:
    """The members with an open finding, earliest start first."""
    by_member: dict[str, list[_Finding]] = {}
    for f in findings:
        ident = f.device if rule.scope == ScopeKind.ENTERPRISE else f.enterprise
        by_member.setdefault(ident, []).append(f)
    members = [
        _Member(
            id=ident,
            enterprise=found[0].enterprise,
            start=min(f.start for f in found),
            level=most_severe(f.level for f in found),
        )
        for ident, found in by_member.items()
    ]
    return sorted(members, key=lambda m: (m.start, m.id))


def formed_at(spec: GroupSpec, starts: list[int]) -> int | None:
    """When the group formed: the start of the member that completed it.

    ``starts`` sorted; None when fewer than ``min_members`` started within
    the window.

    >>> from datetime import timedelta
    >>> spec = GroupSpec(min_members=2, window=timedelta(seconds=10))
    >>> s = 10**9
    >>> formed_at(spec, [0, 30 * s, 35 * s]) == 35 * s, formed_at(spec, [0, 30 * s])
    (True, None)
    """
    k = spec.min_members
    if len(starts) < k:
        return None
    if spec.window is None:
        return starts[k - 1]
    window = to_ns(spec.window)
    for first, last in zip(starts, starts[k - 1 :], strict=False):
        if last - first <= window:
            return last
    return None


def _judge(
    rule: Rule,
    state: _GroupState,
    group: str,
    info: GroupInfo,
    *,
    at: int,
    issued: int,
    why: str,
    authority: str,
) -> WarningRecord | None:
    spec = rule.grouping or GroupSpec()
    members = members_of(rule, state.findings.values())
    episode = state.open
    if episode is None:
        formed = formed_at(spec, [m.start for m in members])
        if formed is None:
            return None
        start = max(formed, state.ended or formed)
        ident = warning_id(rule.id, group, start)
        if ident == state.last_id:
            # The previous warning opened and resolved at this very instant.
            start += 1
            ident = warning_id(rule.id, group, start)
        level = most_severe(m.level for m in members)
        reason = (
            f"opened: {rule.when.describe()} {spec.describe(rule.scope)} "
            f"({len(members)} now)"
        )
        first = min(state.findings.values(), key=lambda f: (f.start, f.device))
        episode = _Episode(
            id=ident,
            start=start,
            detected=at,
            metric=first.metric,
            marks=[
                _Mark(kind="open", level=level, at=at, issued=issued, reason=reason)
            ],
        )
        _snapshot(episode, members, state)
        state.open = episode
        record = _record(rule, episode, group, info, authority, resolved=None)
        logger.info(
            "group warning opened warning=%s rule=%s group=%s level=%s members=%d",
            record.id,
            rule.id,
            group,
            level.value,
            len(members),
        )
        return record
    joined, left = _snapshot(episode, members, state)
    if len(members) < spec.min_members:
        state.open, state.ended, state.last_id = None, at, episode.id
        word = "no member has" if not members else f"only {len(members)} have"
        comment = f"cleared: {word} the finding any more ({why})"
        record = _record(
            rule, episode, group, info, authority, resolved=(at, issued, comment)
        )
        logger.info(
            "group warning resolved warning=%s rule=%s group=%s members=%d",
            record.id,
            rule.id,
            group,
            len(members),
        )
        return record
    level = most_severe(m.level for m in members)
    before = episode.marks[-1].level
    if level != before:
        direction = "escalated" if level.severity > before.severity else "de-escalated"
        reason = (
            f"{direction} {before.value} -> {level.value}: the most severe member "
            f"is at {level.value} ({why})"
        )
        kind: Literal["level", "update"] = "level"
    elif joined or left:
        reason = _changes(joined, left, len(members))
        kind = "update"
    else:
        return None
    episode.marks.append(
        _Mark(kind=kind, level=level, at=at, issued=issued, reason=reason)
    )
    record = _record(rule, episode, group, info, authority, resolved=None)
    logger.info(
        "group warning %s warning=%s rule=%s group=%s from_level=%s level=%s "
        "members=%d",
        "level changed" if kind == "level" else "updated",
        record.id,
        rule.id,
        group,
        before.value,
        level.value,
        len(members),
    )
    return record


def _changes(joined: list[str], left: list[str], count: int) -> str:
    """An update's reason in words.

    >>> _changes(["HC002"], [], 3)
    'members: HC002 joined; 3 with the finding'
    """
    parts = []
    if joined:
        parts.append(f"{', '.join(joined)} joined")
    if left:
        parts.append(f"{', '.join(left)} left")
    return f"members: {'; '.join(parts)}; {count} with the finding"


def _snapshot(
    episode: _Episode, members: list[_Member], state: _GroupState
) -> tuple[list[str], list[str]]:
    """Write the members and open findings into the open warning; the ids of
    the members that joined and that left since the last snapshot."""
    before = {ident for ident, seen in episode.members.items() if seen.active}
    now = {m.id for m in members}
    for seen in episode.members.values():
        seen.active = False
    for m in members:
        episode.members[m.id] = _Seen(
            enterprise=m.enterprise, start=m.start, level=m.level
        )
    findings = sorted(
        state.findings.values(), key=lambda f: (f.start, f.enterprise, f.device)
    )
    if findings:
        # A resolution keeps the items of the last findings it had.
        episode.items = [f.item for f in findings[:MAX_ITEMS]]
    return sorted(now - before), sorted(before - now)


def _record(
    rule: Rule,
    episode: _Episode,
    group: str,
    info: GroupInfo,
    authority: str,
    *,
    resolved: tuple[int, int, str] | None,
) -> WarningRecord:
    kind, scope_id = group.split("/", 1)
    scope = ScopeKind(kind)
    opening = episode.marks[0]
    history = [
        engine_entry(
            _moment(opening.issued),
            f"rule {rule.id}: {opening.reason.removeprefix('opened: ')}",
            from_status=None,
        )
    ]
    for before, mark in itertools.pairwise(episode.marks):
        change = mark.kind == "level"
        history.append(
            engine_entry(
                _moment(mark.issued),
                mark.reason,
                from_level=before.level if change else None,
                level=mark.level if change else None,
            )
        )
    status = WarningStatus.OPEN
    issued: datetime = history[-1].at
    valid_until = issued + rule.valid_for
    resolved_time: datetime | None = None
    if resolved is not None:
        at, issued_ns, comment = resolved
        resolved_time, valid_until = _moment(at), _moment(issued_ns)
        status, issued = WarningStatus.RESOLVED, valid_until
        history.append(engine_entry(valid_until, comment, status=status))
    level = episode.marks[-1].level
    member_kind = (
        ScopeKind.DEVICE if scope == ScopeKind.ENTERPRISE else ScopeKind.ENTERPRISE
    )
    members = sorted(episode.members.items(), key=lambda kv: (kv[1].start, kv[0]))
    return WarningRecord(
        id=episode.id,
        rule_id=rule.id,
        title=rule.title,
        level=level,
        colour=level.colour,
        status=status,
        scope=WarningScope(kind=scope, id=scope_id, name=info.name),
        start_time=_moment(episode.start),
        detection_time=_moment(episode.detected),
        issue_time=issued,
        valid_until=valid_until,
        resolved_time=resolved_time,
        items=episode.items,
        enterprise_id=scope_id if scope == ScopeKind.ENTERPRISE else ANY,
        enterprise_name=info.enterprise_name,
        device_id=ANY,
        metric=episode.metric,
        district=info.district,
        grid=info.grid,
        officer=info.officer,
        authority=authority,
        history=history,
        levels=[
            LevelEntry.model_validate(
                {"level": m.level, "from": _moment(m.at), "reason": m.reason}
            )
            for m in episode.marks
            if m.kind != "update"
        ],
        members=[
            Member(
                kind=member_kind,
                id=ident,
                enterprise=seen.enterprise,
                start_time=_moment(seen.start),
                level=seen.level,
                active=seen.active,
            )
            for ident, seen in members
        ],
        finding=rule.finding,
    )
