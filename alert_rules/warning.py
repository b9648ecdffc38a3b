"""The warning record: what riskwatch publishes when a rule fires or clears.

A record is JSON-serialisable (:meth:`WarningRecord.to_json`) and carries its
whole audit history, so each published version stands alone: the ``open``
version has one history entry, the ``resolved`` update of the same ``id`` has
two. Times are UTC and in event time (device clocks) except ``issue_time`` and
the history's ``at``, which are when riskwatch issued the version.

A rule with escalation steps changes the level of an open warning: each
change is a new version of the same id with one more history entry (status
unchanged, ``from_level`` -> ``level``) and one more entry in ``levels``.

A ``feed`` warning (scope kind ``feed``: a whole feed of readings gone silent,
see stream_jobs/outage.py) is about no one device: its ``enterprise_id`` and
``device_id`` are :data:`ANY` (``"*"``), its ``metric`` is None and its items
carry no ``evidence``. Every other warning has all three.

A grouped warning (scope kind ``enterprise``, ``grid`` or ``district``, see
alert_rules/grouping.py) lists its ``members`` (devices, or enterprises)
with their own start times, and has one item per device finding; its
``device_id`` is :data:`ANY`, its ``enterprise_id`` too unless it is about
one enterprise, and its ``metric`` is that of its earliest finding.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from alert_rules.rule import Colour, Level, ScopeKind
from riskwatch.contracts import Metric

# The enterprise and device of a warning about no one of them (a feed).
ANY = "*"


class _Record(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


class WarningStatus(StrEnum):
    """Lifecycle of a warning; the allowed transitions are in
    :mod:`alert_rules.lifecycle` (and docs/contracts.md)."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    DISPOSED = "disposed"
    CLOSED = "closed"
    RESOLVED = "resolved"
    EXPIRED = "expired"


class WarningScope(_Record):
    """What the warning is about: kind, registry id and a readable name."""

    kind: ScopeKind
    id: str
    name: str


class Evidence(_Record):
    """The readings behind an item: one device's metric over a time range.

    ``enterprise`` is the device's enterprise where the record names none (a
    grid or district warning, whose items are of several enterprises); None
    means the record's ``enterprise_id``.
    """

    device: str
    metric: Metric
    from_: AwareDatetime = Field(alias="from")
    to: AwareDatetime
    enterprise: str | None = None


class Member(_Record):
    """One member of a grouped warning, as it stood at that version.

    Attributes:
        kind: ``device`` (members of an enterprise warning) or ``enterprise``
            (of a grid or district warning).
        id: the device id, or the enterprise id.
        enterprise: the member's enterprise (its own id for an enterprise).
        start_time: event time its earliest finding started.
        level: the most severe level of its findings.
        active: whether it still had the finding at this version; a member
            that no longer has it stays listed, with False.
    """

    kind: ScopeKind
    id: str
    enterprise: str
    start_time: AwareDatetime
    level: Level
    active: bool = True


class WarningItem(_Record):
    """One observed fact, what was expected instead, and what to do.

    Attributes:
        observed: what was observed, in words.
        expected: what is expected instead, in words.
        observed_value: the value that set the warning off, in ``unit``
            (None for a silence).
        expected_value: the threshold crossed, or the detector's expected
            value, in ``unit``; None when neither exists.
        unit: unit of both values (per hour for counter rates, ``s`` for a
            silence).
        evidence: where the readings are; None for a feed warning, which
            has no readings to show.
        action: the recommended action.
    """

    observed: str
    expected: str
    observed_value: float | None
    expected_value: float | None
    unit: str
    evidence: Evidence | None
    action: str


class Officer(_Record):
    """The grid officer in charge of the enterprise."""

    id: str
    name: str
    phone: str | None = None


class AuditEntry(_Record):
    """One status transition: when, from and to which status, by whom, and why.

    Attributes:
        at: when riskwatch applied the transition (UTC).
        status: the status it led to.
        by: who: an officer's API user name, or the rule engine.
        comment: why, or (for a disposal) what was done.
        from_status: the status before; None for the opening, and in records
            written before the lifecycle existed (their history reads in order).
        command: id of the command that made the transition, so a command
            delivered twice is applied once; None for older records.
        from_level: for a level change (escalation or de-escalation), the
            level before; None for every other entry.
        level: for a level change, the level after; None otherwise.
    """

    at: AwareDatetime
    status: WarningStatus
    by: str
    comment: str = ""
    from_status: WarningStatus | None = None
    command: str | None = None
    from_level: Level | None = None
    level: Level | None = None

    @property
    def level_change(self) -> tuple[Level, Level] | None:
        """``(from, to)`` when this entry changed the level, else None."""
        if self.from_level is None or self.level is None:
            return None
        return self.from_level, self.level


class LevelEntry(_Record):
    """One period of a warning at one level.

    Attributes:
        level: the level from then on.
        from_: (``from`` in JSON) event time of the reading that set it.
        reason: why, in words (the condition or escalation step).
    """

    level: Level
    from_: AwareDatetime = Field(alias="from")
    reason: str


class WarningRecord(_Record):
    """A graded early warning, as published (see the module docstring).

    ``id`` is :func:`warning_id` of the rule, the subject and the start time,
    so every retry, restart and update carries the same id.
    """

    v: int = 1
    id: str
    rule_id: str
    title: str
    level: Level
    colour: Colour
    status: WarningStatus
    scope: WarningScope
    start_time: AwareDatetime
    detection_time: AwareDatetime
    issue_time: AwareDatetime
    valid_until: AwareDatetime
    resolved_time: AwareDatetime | None = None
    # When an officer must have handled it by: the opening's issue time plus
    # the level's handling limit; set by the lifecycle agent, None before.
    deadline: AwareDatetime | None = None
    items: list[WarningItem] = Field(min_length=1)
    enterprise_id: str
    enterprise_name: str | None
    device_id: str
    # None only for a feed warning (see the module docstring).
    metric: Metric | None
    district: str | None
    grid: str | None
    officer: Officer | None
    authority: str
    history: list[AuditEntry] = Field(min_length=1)
    # The silence that covered the warning's subject when it opened (None:
    # none did), and whether its versions are still held back from the
    # platform: recorded and stored, not delivered (see docs/rules.md).
    silenced_by: str | None = None
    held: bool = False
    # The first version held back when a silence recorded after the opening
    # caught a later version (None: held from the opening, or not held). The
    # platform knows such a warning, so its latest version is released
    # however it ended.
    held_from: int | None = None
    # The level history, oldest first; the last entry is ``level``. Empty in
    # records written before escalation existed.
    levels: list[LevelEntry] = Field(default_factory=list)
    # A grouped warning's members (devices or enterprises), earliest first;
    # empty for a device or feed warning.
    members: list[Member] = Field(default_factory=list)
    # The rule's `finding` (what it finds, shared by the rules that may
    # inhibit one another), and the active warning that inhibited this one
    # when it opened (its versions are then `held`; see docs/rules.md).
    finding: str | None = None
    inhibited_by: str | None = None
    # Whether the rule engine found the warning flapping (its condition
    # toggling, see docs/rules.md "Flapping"): it then resolves only once its
    # clear has held for the rule's flap.stable_for. False in older records.
    flapping: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> WarningRecord:
        feed = self.scope.kind == ScopeKind.FEED
        if (self.metric is None) != feed:
            raise ValueError(
                f"metric {self.metric!r} with scope {self.scope.kind.value}: "
                "only a feed warning has no metric, and it has none"
            )
        if not feed and any(item.evidence is None for item in self.items):
            raise ValueError("an item without evidence outside a feed warning")
        if self.colour != self.level.colour:
            raise ValueError(
                f"colour {self.colour!r} does not match level {self.level.value} "
                f"({self.level.colour})"
            )
        if self.levels and self.levels[-1].level != self.level:
            raise ValueError(
                f"level {self.level.value} differs from the last entry of "
                f"levels ({self.levels[-1].level.value})"
            )
        if self.history[-1].status != self.status:
            raise ValueError(
                f"status {self.status.value!r} differs from the last history "
                f"entry {self.history[-1].status.value!r}"
            )
        return self

    @property
    def version(self) -> int:
        """Which published version this is: 1 for the opening, then one more
        per status transition or level change (the history grows by one
        entry each time)."""
        return len(self.history)

    @property
    def version_id(self) -> str:
        """Stable id of this version, the same on every retry and restart:
        the CloudEvent ``id`` and the CAP ``identifier`` (no spaces, commas,
        ``<`` or ``&``, as CAP requires)."""
        return version_id(self.id, self.version)

    def to_json(self) -> str:
        """The record as JSON text."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> WarningRecord:
        """Parse a record produced by :meth:`to_json`."""
        return cls.model_validate_json(text)


def warning_id(rule_id: str, subject: str, start_ns: int) -> str:
    """The stable id of a warning.

    Args:
        rule_id: the rule that fired.
        subject: what it is about (``<enterprise>/<device>/<metric>`` for a
            device rule).
        start_ns: event time of the first reading that met the condition.

    >>> warning_id("gas-red", "E001/G1/combustible_gas_lel", 0)
    'rw-706553cb95a39a10dafcff51'
    """
    digest = hashlib.sha256(f"{rule_id}|{subject}|{start_ns}".encode()).hexdigest()
    return f"rw-{digest[:24]}"


def version_id(warning: str, version: int) -> str:
    """The id of version ``version`` (1-based) of warning ``warning``.

    >>> version_id("rw-706553cb95a39a10dafcff51", 2)
    'rw-706553cb95a39a10dafcff51.v2'
    """
    return f"{warning}.v{version}"
