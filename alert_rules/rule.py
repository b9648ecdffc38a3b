"""The rule model: who a rule applies to, when it fires, when it clears."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import timedelta
from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from alert_rules._base import Duration, StrictModel, format_duration
from alert_rules._hysteresis import hysteresis_problems
from alert_rules.conditions import AnyCondition, Condition, walk
from alert_rules.errors import FieldError, FieldErrors
from riskwatch.contracts import ID_PATTERN, METRICS, Metric, Observation
from riskwatch.registry import Enterprise, Industry


class Level(StrEnum):
    """Warning levels, I the most severe, with their colours."""

    I = "I"  # noqa: E741 - the official name of the level
    II = "II"
    III = "III"
    IV = "IV"

    @property
    def colour(self) -> Colour:
        return _COLOURS[self]

    @property
    def severity(self) -> int:
        """4 for I down to 1 for IV: a larger number is more severe.

        >>> Level.I.severity > Level.III.severity
        True
        """
        return _SEVERITY[self]


Colour = Literal["red", "orange", "yellow", "blue"]
_COLOURS: dict[Level, Colour] = {
    Level.I: "red",
    Level.II: "orange",
    Level.III: "yellow",
    Level.IV: "blue",
}


_SEVERITY: dict[Level, int] = {Level.I: 4, Level.II: 3, Level.III: 2, Level.IV: 1}


def most_severe(levels: Iterable[Level]) -> Level:
    """The most severe of some levels (I before II before III before IV).

    >>> most_severe([Level.III, Level.I, Level.II]).value
    'I'

    Raises:
        ValueError: no level was given.
    """
    return max(levels, key=lambda level: level.severity)


RiskClass = Literal["A", "B", "C", "D"]
# A factor above 1 makes a class wait longer; ten times is already a day for
# a rule that waits a couple of hours.
MAX_RISK_FACTOR = 10.0


class ScopeKind(StrEnum):
    """What a warning is about.

    A ``device`` rule warns about one metric stream of one device. An
    ``enterprise``, ``grid`` or ``district`` rule groups the device findings
    of its members (devices of one enterprise; enterprises of one grid or
    district) into one warning about the group (alert_rules/grouping.py).

    ``feed`` is the worker's own: a whole feed of readings gone silent at once
    (a broker, gateway or network outage, see stream_jobs/outage.py); no rule
    has it.
    """

    DEVICE = "device"
    ENTERPRISE = "enterprise"
    GRID = "grid"
    DISTRICT = "district"
    FEED = "feed"

    @property
    def grouped(self) -> bool:
        """Whether warnings of this kind group device findings.

        >>> ScopeKind.GRID.grouped, ScopeKind.DEVICE.grouped
        (True, False)
        """
        return self in _GROUPED


_GROUPED = frozenset({ScopeKind.ENTERPRISE, ScopeKind.GRID, ScopeKind.DISTRICT})


def value_unit(metric: Metric) -> str:
    """The unit of an observation's value: per hour for counters.

    >>> value_unit(Metric.WATER_M3), value_unit(Metric.POWER_KW)
    ('m3/h', 'kW')
    """
    info = METRICS[metric]
    return f"{info.unit}/h" if info.counter else info.unit


# Units that measure the same quantity, for checking one threshold over several
# metrics: an energy register's rate in kWh per hour is a power in kW.
_SAME_UNIT = {"kWh/h": "kW"}


class Selector(StrictModel):
    """Which observations a rule looks at; an empty list means any.

    Selectors on the enterprise (industries, risk classes, the
    hazardous-chemicals flag, tags) never match a device whose enterprise is
    not in the registry. ``tags`` matches a device that has one of them, or
    whose enterprise has one (the registry's ``tags`` of either).
    """

    metrics: list[Metric] = Field(default_factory=list)
    industries: list[Industry] = Field(default_factory=list)
    risk_classes: list[RiskClass] = Field(default_factory=list)
    hazardous_chemicals: bool | None = None
    enterprises: list[str] = Field(default_factory=list)
    devices: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)

    def matches(self, observation: Observation, enterprise: Enterprise | None) -> bool:
        """Whether the rule applies to this observation and enterprise."""
        if self.metrics and observation.metric not in self.metrics:
            return False
        if self.enterprises and observation.enterprise not in self.enterprises:
            return False
        if self.devices and observation.device not in self.devices:
            return False
        needs_registry = (
            self.industries
            or self.risk_classes
            or self.hazardous_chemicals is not None
            or self.tags
        )
        if not needs_registry:
            return True
        if enterprise is None:
            return False
        return (
            (not self.industries or enterprise.industry in self.industries)
            and (not self.risk_classes or enterprise.risk_class in self.risk_classes)
            and (
                self.hazardous_chemicals is None
                or enterprise.hazardous_chemicals == self.hazardous_chemicals
            )
            and (
                not self.tags
                or not enterprise.tags_of(observation.device).isdisjoint(self.tags)
            )
        )


class EscalationStep(StrictModel):
    """One way an open warning's level rises above the rule's base level.

    The step is *met* once its condition has held on an unbroken run of
    readings (no reading that fails it, no silence, no two readings more than
    the rule's ``max_gap`` apart) for ``after``, in event time. Without its
    own ``when`` the condition is the rule's ``when``, and the run is the one
    that opened the warning: ``{after: 30m, to: II}`` is met 30 minutes after
    the start time if the condition held all along. A met step stops being
    met once ``clear`` (default: its condition no longer holds) has held for
    ``clear_for``.

    Attributes:
        to: the level while the step is met; more severe than the rule's.
        after: how long the condition must hold first; default 0.
        when: the step's condition (same language as the rule's); default
            the rule's ``when``.
        clear: what ends the step; default: its condition no longer holds.
            A bound below ``when``'s gives hysteresis.
        clear_for: how long ``clear`` must hold first; default 0.
        action: the recommended action while this step sets the level;
            default the rule's.
    """

    to: Level
    after: Duration = timedelta(0)
    when: Condition | None = None
    clear: Condition | None = None
    clear_for: Duration = timedelta(0)
    action: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> EscalationStep:
        if self.when is None and not self.after:
            raise FieldError(
                "after",
                "a step needs `when` (a second condition) or `after` (a "
                "duration longer than 0s); without either it is just a "
                "higher base level",
            )
        return self

    def condition(self, rule_when: Condition) -> Condition:
        """The condition the step's run is about."""
        return self.when if self.when is not None else rule_when

    def describe(self, rule_when: Condition) -> str:
        """The step's condition and duration in words.

        >>> from alert_rules.conditions import Above
        >>> step = EscalationStep.model_validate({"after": "30m", "to": "II"})
        >>> step.describe(Above(above=25))
        'value above 25 for 30m'
        """
        text = self.condition(rule_when).describe()
        if self.after:
            text += f" for {format_duration(self.after)}"
        return text

    def describe_clear(self, rule_when: Condition) -> str:
        """What ends the step, in words."""
        if self.clear is not None:
            text = self.clear.describe()
        else:
            text = f"no longer {self.condition(rule_when).describe()}"
        if self.clear_for:
            text += f" for {format_duration(self.clear_for)}"
        return text


class GroupSpec(StrictModel):
    """When the findings of a grouped rule's members make one warning.

    A member is a device for an ``enterprise`` rule and an enterprise for a
    ``grid`` or ``district`` rule; it has the finding while at least one of
    its device findings (the rule's state machine on one metric stream) is
    open.

    Attributes:
        min_members: the group warning opens once at least this many members
            have the finding, and resolves once fewer than this many have
            it; default 1 (enterprise rules only: grid and district rules
            must set it, at least 2).
        window: the members counted for the opening must have started their
            findings within this long of each other (event time); default
            none: members whose findings overlap in time count however far
            apart they started. Once open, the warning stays open while
            enough members have the finding, whenever they started.
    """

    min_members: int = Field(default=1, ge=1, le=1000)
    window: Duration | None = None

    @model_validator(mode="after")
    def _positive(self) -> GroupSpec:
        if self.window is not None and self.window <= timedelta(0):
            raise FieldError("window", "window must be longer than 0s")
        return self

    def describe(self, scope: ScopeKind) -> str:
        """The grouping in words.

        >>> GroupSpec(min_members=3, window=timedelta(hours=1)).describe(
        ...     ScopeKind.GRID)
        'at 3 or more enterprises of one grid within 1h'
        """
        member = "devices" if scope == ScopeKind.ENTERPRISE else "enterprises"
        text = f"at {self.min_members} or more {member} of one {scope.value}"
        if self.window is not None:
            text += f" within {format_duration(self.window)}"
        return text


MIN_FLAP_CHANGES = 2  # one opening and one clearing is an episode, not a flap
MAX_FLAP_CHANGES = 64  # the changes kept per subject: the state stays small


class Flap(StrictModel):
    """When an open warning counts as flapping, and what ends it.

    A *change* is the rule's condition flipping for one subject, in event
    time: the warning opening, its clear starting to hold (the resolution
    itself when ``clear_for`` is 0), and ``when`` holding again while it
    clears. A value between ``clear`` and ``when`` (the hysteresis band)
    and a reading with no evidence change nothing. With ``changes`` or more
    within ``window`` the warning is flapping: it is not resolved until its
    clear has held for ``stable_for`` (or ``clear_for``, if longer) on
    unbroken readings, and the condition firing again meanwhile is the same
    warning.

    Attributes:
        window: how far back changes count; default 1h.
        changes: how many changes within ``window`` make a flap; default 4
            (two full on-off cycles), at least 2, at most 64.
        stable_for: how long the clear must hold before a flapping warning
            resolves; default 30m.
    """

    window: Duration = timedelta(hours=1)
    changes: int = Field(default=4, ge=MIN_FLAP_CHANGES, le=MAX_FLAP_CHANGES)
    stable_for: Duration = timedelta(minutes=30)

    @model_validator(mode="after")
    def _consistent(self) -> Flap:
        if self.window <= timedelta(0):
            raise FieldError("window", "window must be longer than 0s")
        if self.stable_for <= timedelta(0):
            raise FieldError("stable_for", "stable_for must be longer than 0s")
        return self

    def describe(self) -> str:
        """The policy in words.

        >>> Flap().describe()
        '4 changes within 1h; resolves once its clear has held 30m'
        """
        return (
            f"{self.changes} changes within {format_duration(self.window)}; "
            f"resolves once its clear has held {format_duration(self.stable_for)}"
        )


class Rule(StrictModel):
    """One graded early-warning rule.

    Attributes:
        id: stable identifier; part of every warning id, so never reuse one.
        title: short name shown on the warning.
        description: longer explanation for the rule reference.
        level: I (red) to IV (blue).
        scope: what a warning is about: ``device`` (a warning per device
            and metric), or ``enterprise``, ``grid``, ``district`` (the
            device findings of the rule grouped into one warning per
            enterprise, grid or district; see :class:`GroupSpec`).
        group: for a grouped scope, how many members make a warning and
            within which window; refused on a device rule, required on a
            grid or district rule.
        finding: names what the rule finds, shared by rules that find the
            same thing at another level or scope: while a warning with a
            finding is active, a less severe warning opening with the same
            finding on a subject it covers is inhibited (held back; see
            alert_rules/inhibition.py). None: never inhibits nor is
            inhibited.
        enabled: False keeps the rule in the file but never evaluates it.
        select: which observations the rule considers.
        when: the condition that must hold to fire.
        for_: (``for`` in YAML) how long, in event time, the condition must
            hold on consecutive readings before the warning opens; default 0,
            fire on the first reading.
        max_gap: readings further apart than this break a ``for`` or
            ``clear_for`` run: a gap in the data is not evidence. Default 10m.
        clear: the condition that resolves the warning; default: ``when``
            no longer holds. Use a lower bound than ``when`` for hysteresis.
        clear_for: how long ``clear`` must hold before resolving; default 0.
        escalate: steps that raise an open warning's level while they are
            met (see :class:`EscalationStep`); the warning's level is the
            most severe of ``level`` and the met steps' ``to``.
        risk_factors: per enterprise risk class (A to D), a factor on
            ``for`` and on every escalation step's ``after``: ``{D: 0.5}``
            fires a class-D (high-risk) enterprise's warning, and escalates
            it, after half the time. A class not listed, and a device
            whose enterprise is not registered, keep ``for`` as it is.
        flap: when an open warning is flapping (see :class:`Flap`); default
            ``Flap()``, 4 changes within 1h, resolved after 30m of clear;
            None (``flap: null``) turns flap detection off.
        valid_for: validity of an open warning after its issue; default 24h.
        action: the recommended action, for the warning item.
        expected: what is expected instead, in words (with the unit).
    """

    id: str = Field(pattern=ID_PATTERN)
    title: str = Field(min_length=1, max_length=200)
    description: str = ""
    level: Level
    scope: ScopeKind = ScopeKind.DEVICE
    group: GroupSpec | None = None
    finding: str | None = Field(default=None, pattern=ID_PATTERN)
    enabled: bool = True
    select: Selector = Field(default_factory=Selector)
    when: Condition
    for_: Duration = Field(default=timedelta(0), alias="for")
    max_gap: Duration = timedelta(minutes=10)
    clear: Condition | None = None
    clear_for: Duration = timedelta(0)
    escalate: list[EscalationStep] = Field(default_factory=list)
    risk_factors: dict[RiskClass, float] = Field(default_factory=dict)
    flap: Flap | None = Field(default_factory=Flap)
    valid_for: Duration = timedelta(hours=24)
    action: str = Field(min_length=1)
    expected: str = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        problems = [*self._problems()]
        if problems:
            raise FieldErrors(problems)
        return self

    def _problems(self) -> Iterator[FieldError]:
        """Every model-level problem of the rule, so that one check lists
        them all instead of the author fixing one per run."""
        if self.scope == ScopeKind.FEED:
            yield FieldError(
                "scope",
                "feed warnings are the worker's own (worker.outage_*); a rule "
                "scope is one of device, enterprise, grid, district",
            )
        yield from self._group_problems()
        yield from self._hysteresis_problems()
        for risk_class, factor in self.risk_factors.items():
            if not 0 < factor <= MAX_RISK_FACTOR:
                yield FieldError(
                    f"risk_factors.{risk_class}",
                    f"a risk factor must be above 0 and at most "
                    f"{MAX_RISK_FACTOR:g}, got {factor:g}",
                )
            elif (
                factor != 1
                and not self.for_
                and not any(step.after for step in self.escalate)
            ):
                yield FieldError(
                    f"risk_factors.{risk_class}",
                    "risk factors scale `for` and the escalation steps' "
                    "`after`, which this rule does not set",
                )
        if self.max_gap <= timedelta(0):
            yield FieldError("max_gap", "max_gap must be longer than 0s")
        if self.valid_for <= timedelta(0):
            yield FieldError("valid_for", "valid_for must be longer than 0s")
        for index, step in enumerate(self.escalate):
            if step.to.severity <= self.level.severity:
                yield FieldError(
                    f"escalate.{index}.to",
                    f"a step must raise the level above the rule's "
                    f"{self.level.value} (I is the most severe), got "
                    f"{step.to.value}",
                )
        conditions = [self.when, self.clear]
        conditions += [c for step in self.escalate for c in (step.when, step.clear)]
        if any(c is not None and c.uses_value() for c in conditions):
            if not self.select.metrics:
                yield FieldError(
                    "select.metrics",
                    "a rule comparing values (above/below) must list its "
                    "metrics, since thresholds have units",
                )
            units = {value_unit(m) for m in self.select.metrics}
            if len({_SAME_UNIT.get(u, u) for u in units}) > 1:
                yield FieldError(
                    "select.metrics",
                    "a rule comparing values must select metrics of one unit, "
                    f"got {', '.join(sorted(units))}",
                )

    def _hysteresis_problems(self) -> Iterator[FieldError]:
        """A clear that can hold while its condition fires is refused."""
        pairs = [(self.when, self.clear, "clear")]
        pairs += [
            (step.condition(self.when), step.clear, f"escalate.{index}.clear")
            for index, step in enumerate(self.escalate)
        ]
        for when, clear, path in pairs:
            for field_path, message in hysteresis_problems(when, clear, path):
                yield FieldError(field_path, message)

    def _group_problems(self) -> Iterator[FieldError]:
        if self.scope == ScopeKind.DEVICE and self.group is not None:
            yield FieldError(
                "group",
                "a device rule warns about one device and has no members to "
                "group; use scope enterprise, grid or district",
            )
        if self.scope in (ScopeKind.GRID, ScopeKind.DISTRICT):
            if self.group is None:
                yield FieldError(
                    "group",
                    f"a {self.scope.value} rule needs group.min_members: at how "
                    f"many enterprises of one {self.scope.value} the finding "
                    "makes one warning (at least 2)",
                )
            elif self.group.min_members < 2:
                yield FieldError(
                    "group.min_members",
                    f"a {self.scope.value} rule groups at least 2 enterprises, "
                    f"got {self.group.min_members}; one enterprise's finding is "
                    "an enterprise rule",
                )

    @property
    def grouping(self) -> GroupSpec | None:
        """How the rule groups its findings; None for a device rule.

        An enterprise rule without ``group`` groups from one member on.
        """
        if not self.scope.grouped:
            return None
        return self.group if self.group is not None else GroupSpec()

    def for_at(self, enterprise: Enterprise | None) -> timedelta:
        """How long ``when`` must hold for this enterprise's risk class.

        >>> rule = Rule.model_validate({
        ...     "id": "r", "title": "t", "level": "III", "when": {"silent": True},
        ...     "for": "30m", "risk_factors": {"D": 0.5},
        ...     "action": "a", "expected": "e"})
        >>> rule.for_at(None)
        datetime.timedelta(seconds=1800)
        """
        return self.for_ * self.risk_factor(enterprise)

    def after_at(
        self, step: EscalationStep, enterprise: Enterprise | None
    ) -> timedelta:
        """How long a step's condition must hold for this enterprise's risk
        class: its ``after`` scaled like ``for``.

        >>> rule = Rule.model_validate({
        ...     "id": "r", "title": "t", "level": "III", "when": {"silent": True},
        ...     "escalate": [{"after": "2h", "to": "II"}], "risk_factors": {"D": 0.5},
        ...     "action": "a", "expected": "e"})
        >>> rule.after_at(rule.escalate[0], None)
        datetime.timedelta(seconds=7200)
        """
        return step.after * self.risk_factor(enterprise)

    def risk_factor(self, enterprise: Enterprise | None) -> float:
        """The factor on ``for`` and ``after`` for this enterprise: 1 for a
        class not listed and for a device whose enterprise is not registered."""
        if enterprise is None:
            return 1.0
        return self.risk_factors.get(enterprise.risk_class, 1.0)

    def clear_time(self, *, flapping: bool) -> timedelta:
        """How long ``clear`` must hold to resolve: ``clear_for``, and for a
        flapping warning at least the flap's ``stable_for``."""
        if flapping and self.flap is not None:
            return max(self.clear_for, self.flap.stable_for)
        return self.clear_for

    def conditions(self) -> Iterator[tuple[str, AnyCondition]]:
        """Every condition of the rule, nested ones too, with its field path:
        ``when``, ``clear`` and each escalation step's."""
        tops: list[tuple[str, Condition | None]] = [
            ("when", self.when),
            ("clear", self.clear),
        ]
        for index, step in enumerate(self.escalate):
            tops += [(f"escalate.{index}.when", step.when)]
            tops += [(f"escalate.{index}.clear", step.clear)]
        for path, top in tops:
            if top is not None:
                yield from walk(top, path)

    def summary(self) -> str:
        """One line: id, level, scope, condition and timing."""
        text = f"{self.id} [{self.level.value} {self.level.colour}] {self.scope}: "
        text += self.when.describe()
        if self.for_:
            text += f" for {format_duration(self.for_)}"
        if self.risk_factors:
            factors = ", ".join(
                f"{k} x{v:g}" for k, v in sorted(self.risk_factors.items())
            )
            text += f" (risk classes: {factors})"
        if self.clear is not None:
            text += f"; clears on {self.clear.describe()}"
        if self.clear_for:
            text += f" for {format_duration(self.clear_for)}"
        if self.grouping is not None:
            text += f"; {self.grouping.describe(self.scope)}"
        if self.finding is not None:
            text += f"; finding {self.finding}"
        if self.flap is None:
            text += "; no flap detection"
        elif self.flap != Flap():
            text += f"; flapping at {self.flap.describe()}"
        for step in self.escalate:
            text += f"; {step.to.value} on {step.describe(self.when)}"
            if step.clear is not None or step.clear_for:
                text += f" until {step.describe_clear(self.when)}"
        return text + ("" if self.enabled else " (disabled)")

    def level_with(self, met: Iterable[int]) -> Level:
        """The level while the escalation steps of these indices are met."""
        return most_severe([self.level, *(self.escalate[i].to for i in met)])


class RuleFile(StrictModel):
    """The content of one rule file: ``rules:`` and a list of rules."""

    rules: list[Rule] = Field(min_length=1)
