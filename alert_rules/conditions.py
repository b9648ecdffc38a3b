"""Conditions: what a rule tests on one observation.

Every condition answers :meth:`test` with three values: True (it holds),
False (it does not) or None (*no evidence*: the observation has no value, the
enterprise is unknown, its working hours are not registered). Combinators use
three-valued logic, so a missing value never counts as meeting a condition,
nor as clearing one.

In a rule file a condition is a mapping with exactly one key::

    above: 25                      # value > 25 (the metric's unit)
    below: 0.1                     # value < 0.1
    above_idle: {factor: 1.5, at_least: 5}   # value > the registered idle load
    below_idle: {factor: 1.2, at_least: 3}   # x factor, the bound >= at_least
    score: {at_least: 0.9, detectors: [robust_z]}
    fired: [stuck]                 # a finding of one of these detectors
    silent: 30m                    # a silence observation, silent >= 30 min
    stale: 15m                     # the metric left out >= 15 min, others sent
    clock_skew_above: 5m           # the device clock off by more than 5 min
    context: shutdown_order        # see ContextName
    all: [<condition>, ...]
    any: [<condition>, ...]
    not: <condition>
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
)

from alert_rules._base import StrictModel, format_duration, parse_duration
from riskwatch.contracts import (
    NS_PER_S,
    RULE_DETECTORS,
    Detector,
    Finding,
    FiniteFloat,
    Observation,
)
from riskwatch.registry import Enterprise

ContextName = Literal[
    "shutdown_order",
    "closed",
    "unlicensed",
    "working_hours",
    "outside_working_hours",
]


@dataclass(frozen=True)
class Context:
    """An observation with what the registry knows about its enterprise.

    Attributes:
        observation: the scored reading or silence.
        enterprise: the device's enterprise; None when it is not registered.
        moment: the observation's event time (device clock), UTC.
    """

    observation: Observation
    enterprise: Enterprise | None
    moment: datetime

    @classmethod
    def of(cls, observation: Observation, enterprise: Enterprise | None) -> Context:
        seconds, ns = divmod(observation.ts_ns, NS_PER_S)
        moment = datetime.fromtimestamp(seconds, tz=UTC) + timedelta(
            microseconds=ns // 1000
        )
        return cls(observation, enterprise, moment)


class _Condition(StrictModel):
    tag: ClassVar[str]

    def test(self, ctx: Context) -> bool | None:
        """True, False, or None for no evidence either way."""
        raise NotImplementedError

    def describe(self) -> str:
        """The condition in words, for summaries and warning items."""
        raise NotImplementedError

    def thresholds(self) -> Iterator[float]:
        """Value thresholds inside this condition (the expected-value bound)."""
        return iter(())

    def threshold_at(self, ctx: Context) -> float | None:
        """The first value threshold as it applies to this observation (an
        idle bound depends on the enterprise); None if there is none."""
        return next(iter(self.thresholds()), None)

    def uses_value(self) -> bool:
        """Whether the condition compares the observation's value."""
        return False

    def findings(self, ctx: Context) -> list[Finding]:
        """The findings this condition relied on, as evidence."""
        return []

    def measured(self, ctx: Context) -> Measured | None:
        """What the condition measured when it is not the observation's value
        (a clock offset), for the warning item; None: the value is."""
        return None


@dataclass(frozen=True)
class Measured:
    """A quantity a condition measured: its value, unit and words."""

    value: float
    unit: str
    said: str


def _value(ctx: Context) -> float | None:
    obs = ctx.observation
    return obs.value if obs.kind == "reading" else None


class Above(_Condition):
    """The value is strictly above a threshold, in the metric's unit."""

    tag: ClassVar[str] = "above"
    above: FiniteFloat

    def test(self, ctx: Context) -> bool | None:
        value = _value(ctx)
        return None if value is None else value > self.above

    def describe(self) -> str:
        return f"value above {self.above:g}"

    def thresholds(self) -> Iterator[float]:
        yield self.above

    def uses_value(self) -> bool:
        return True


class Below(_Condition):
    """The value is strictly below a threshold, in the metric's unit."""

    tag: ClassVar[str] = "below"
    below: FiniteFloat

    def test(self, ctx: Context) -> bool | None:
        value = _value(ctx)
        return None if value is None else value < self.below

    def describe(self) -> str:
        return f"value below {self.below:g}"

    def thresholds(self) -> Iterator[float]:
        yield self.below

    def uses_value(self) -> bool:
        return True


class IdleSpec(StrictModel):
    """A bound relative to the idle load the registry records for the
    metric (``idle_load`` of the enterprise): ``factor`` times it, but never
    below ``at_least`` (a floor for a site that idles at almost nothing);
    ``at_least`` alone where no idle load is recorded, no evidence where
    neither is there."""

    factor: float = Field(gt=0, allow_inf_nan=False)
    at_least: FiniteFloat | None = None


def _idle_spec(data: Any) -> Any:  # noqa: ANN401 - raw YAML of any shape
    """``above_idle: 1.5`` is ``above_idle: {factor: 1.5}``."""
    return {"factor": data} if isinstance(data, int | float) else data


class _IdleBound(_Condition):
    """Shared by :class:`AboveIdle` and :class:`BelowIdle`."""

    above: ClassVar[bool]

    def spec(self) -> IdleSpec:
        raise NotImplementedError

    def bound(self, ctx: Context) -> float | None:
        spec = self.spec()
        enterprise = ctx.enterprise
        idle = (
            None if enterprise is None else enterprise.idle_of(ctx.observation.metric)
        )
        if idle is None:
            return spec.at_least
        scaled = spec.factor * idle
        return scaled if spec.at_least is None else max(scaled, spec.at_least)

    def test(self, ctx: Context) -> bool | None:
        value, bound = _value(ctx), self.bound(ctx)
        if value is None or bound is None:
            return None
        return value > bound if self.above else value < bound

    def describe(self) -> str:
        spec = self.spec()
        side = "above" if self.above else "below"
        text = f"value {side} {spec.factor:g} x the registered idle load"
        if spec.at_least is not None:
            text += f" (at least {spec.at_least:g})"
        return text

    def threshold_at(self, ctx: Context) -> float | None:
        return self.bound(ctx)

    def uses_value(self) -> bool:
        return True


class AboveIdle(_IdleBound):
    """The value is strictly above ``factor`` times the idle load the
    registry records for the metric (floored at ``at_least``)."""

    tag: ClassVar[str] = "above_idle"
    above: ClassVar[bool] = True
    above_idle: Annotated[IdleSpec, BeforeValidator(_idle_spec)]

    def spec(self) -> IdleSpec:
        return self.above_idle


class BelowIdle(_IdleBound):
    """The value is strictly below ``factor`` times the registered idle load
    (floored at ``at_least``): the clear of an :class:`AboveIdle`."""

    tag: ClassVar[str] = "below_idle"
    above: ClassVar[bool] = False
    below_idle: Annotated[IdleSpec, BeforeValidator(_idle_spec)]

    def spec(self) -> IdleSpec:
        return self.below_idle


def _detector_name(name: str) -> str:
    """A detector a rule may name (:data:`~riskwatch.contracts.RULE_DETECTORS`):
    any other name is a condition that can never hold, most likely a typo."""
    if name in RULE_DETECTORS:
        return name
    known = ", ".join(sorted(RULE_DETECTORS))
    if name == Detector.MISSING:
        raise ValueError(
            f"{name!r} findings always score 0 (a value that is not a number), "
            f"so no score or fired condition holds on them; known detectors: {known}"
        )
    raise ValueError(f"unknown detector {name!r}; known detectors: {known}")


DetectorName = Annotated[str, AfterValidator(_detector_name)]
"""The name of a detector in a rule, refused unless the detectors report it."""


class ScoreSpec(StrictModel):
    """``at_least`` in (0, 1]; ``detectors`` empty means the combined score,
    else names of :data:`~riskwatch.contracts.RULE_DETECTORS` (any other is
    refused)."""

    at_least: float = Field(gt=0.0, le=1.0)
    detectors: list[DetectorName] = Field(default_factory=list)


class Score(_Condition):
    """The anomaly score is at or above ``at_least``.

    Without ``detectors`` the observation's combined score is compared; with
    them, the highest score among findings of those detectors (0 when none).
    A silence or stale observation is no evidence, unless it carries a
    finding of a named detector.
    """

    tag: ClassVar[str] = "score"
    score: ScoreSpec

    def _relevant(self, ctx: Context) -> list[Finding]:
        if not self.score.detectors:
            return list(ctx.observation.findings)
        names = set(self.score.detectors)
        return [f for f in ctx.observation.findings if f.detector in names]

    def test(self, ctx: Context) -> bool | None:
        found = self._relevant(ctx)
        if ctx.observation.kind != "reading" and not found:
            return None  # no reading, so nothing was scored
        if not self.score.detectors:
            return ctx.observation.score >= self.score.at_least
        return max((f.score for f in found), default=0.0) >= self.score.at_least

    def describe(self) -> str:
        of = "/".join(self.score.detectors) or "combined"
        return f"{of} score at least {self.score.at_least:g}"

    def findings(self, ctx: Context) -> list[Finding]:
        return [f for f in self._relevant(ctx) if f.score >= self.score.at_least]


class Fired(_Condition):
    """A detector named here reported a finding with a score above zero
    (names of :data:`~riskwatch.contracts.RULE_DETECTORS`; any other is
    refused).

    On a silence or stale observation without such a finding: no evidence.
    """

    tag: ClassVar[str] = "fired"
    fired: list[DetectorName] = Field(min_length=1)

    def test(self, ctx: Context) -> bool | None:
        if self.findings(ctx):
            return True
        # A silence or a stale metric carries no verdict of the detectors.
        return None if ctx.observation.kind != "reading" else False

    def describe(self) -> str:
        return "detector " + " or ".join(self.fired) + " fired"

    def findings(self, ctx: Context) -> list[Finding]:
        names = set(self.fired)
        return [
            f for f in ctx.observation.findings if f.detector in names and f.score > 0
        ]


def _silent_for(value: object) -> timedelta:
    if value is True:
        return timedelta(0)
    if value is False:
        raise ValueError("use true or a duration such as '30m', got false")
    return parse_duration(value)


class Silent(_Condition):
    """The device sent no data for the metric (a ``silence`` observation).

    ``silent: true`` accepts any silence the stream jobs report (they report
    after ``worker.silent_after_s``); a duration also requires ``silent_s`` to
    be at least that long.
    """

    tag: ClassVar[str] = "silent"
    silent: Annotated[timedelta, BeforeValidator(_silent_for)]

    def test(self, ctx: Context) -> bool | None:
        obs = ctx.observation
        if obs.kind == "stale":
            return None  # the device is back, but not this metric
        if obs.kind != "silence":
            return False
        return (obs.silent_s or 0.0) >= self.silent.total_seconds()

    def describe(self) -> str:
        if not self.silent:
            return "device silent"
        return f"device silent for at least {format_duration(self.silent)}"


def _positive_duration(value: object) -> timedelta:
    duration = parse_duration(value)
    if duration <= timedelta(0):
        raise ValueError(f"expected a duration longer than 0s, got {value!r}")
    return duration


class Stale(_Condition):
    """The metric has not been updated for a while, yet the device still
    sends its other metrics (a ``stale`` observation).

    A reading of the metric is False (it is updated again), a silence of
    the whole device no evidence (that is ``silent``'s case).
    """

    tag: ClassVar[str] = "stale"
    stale: Annotated[timedelta, BeforeValidator(_positive_duration)]

    def test(self, ctx: Context) -> bool | None:
        obs = ctx.observation
        if obs.kind == "silence":
            return None
        if obs.kind != "stale":
            return False
        return (obs.stale_s or 0.0) >= self.stale.total_seconds()

    def describe(self) -> str:
        return (
            f"metric not updated for {format_duration(self.stale)} while the "
            "device sends others"
        )


class ClockSkewAbove(_Condition):
    """The device's clock is off the gateway's by more than a duration.

    Tested on the observations that carry a clock measurement
    (``clock_offset_s``: one metric per device, once its last readings agree,
    see stream_jobs/clock.py); on any other observation: no evidence.
    """

    tag: ClassVar[str] = "clock_skew_above"
    clock_skew_above: Annotated[timedelta, BeforeValidator(_positive_duration)]

    def test(self, ctx: Context) -> bool | None:
        offset = ctx.observation.clock_offset_s
        if offset is None:
            return None
        return abs(offset) > self.clock_skew_above.total_seconds()

    def describe(self) -> str:
        return f"device clock off by more than {format_duration(self.clock_skew_above)}"

    def thresholds(self) -> Iterator[float]:
        yield self.clock_skew_above.total_seconds()

    def measured(self, ctx: Context) -> Measured | None:
        obs = ctx.observation
        if obs.clock_offset_s is None:
            return None
        offset = obs.clock_offset_s
        side = "behind" if offset < 0 else "ahead of"
        return Measured(
            offset,
            "s",
            f"device {obs.device}'s clock is {abs(offset):.0f} s {side} the gateway's",
        )


class InContext(_Condition):
    """A fact from the registry at the observation's event time.

    ``shutdown_order``: an order is active; ``closed``: the enterprise is
    registered as closed; ``unlicensed``: it holds no licence;
    ``working_hours`` / ``outside_working_hours``: inside or outside its
    registered hours (no evidence when none are registered).
    """

    tag: ClassVar[str] = "context"
    context: ContextName

    def test(self, ctx: Context) -> bool | None:
        enterprise = ctx.enterprise
        if enterprise is None:
            return None
        if self.context == "shutdown_order":
            return enterprise.shutdown_order_at(ctx.moment) is not None
        if self.context == "closed":
            return enterprise.status == "closed"
        if self.context == "unlicensed":
            return not enterprise.licensed
        if not enterprise.working_hours:
            return None
        working = enterprise.working_at(ctx.moment)
        return working if self.context == "working_hours" else not working

    def describe(self) -> str:
        return {
            "shutdown_order": "during a shutdown order",
            "closed": "site registered as closed",
            "unlicensed": "site without a licence",
            "working_hours": "inside working hours",
            "outside_working_hours": "outside working hours",
        }[self.context]


class AllOf(_Condition):
    """Every condition holds (False if one is False, else None if one is None)."""

    tag: ClassVar[str] = "all"
    all_: list[Condition] = Field(alias="all", min_length=1)

    def test(self, ctx: Context) -> bool | None:
        verdicts = [c.test(ctx) for c in self.all_]
        if False in verdicts:
            return False
        return None if None in verdicts else True

    def describe(self) -> str:
        return " and ".join(_grouped(c) for c in self.all_)

    def thresholds(self) -> Iterator[float]:
        for c in self.all_:
            yield from c.thresholds()

    def threshold_at(self, ctx: Context) -> float | None:
        return _first_threshold(self.all_, ctx)

    def uses_value(self) -> bool:
        return any(c.uses_value() for c in self.all_)

    def measured(self, ctx: Context) -> Measured | None:
        return next((m for c in self.all_ if (m := c.measured(ctx)) is not None), None)

    def findings(self, ctx: Context) -> list[Finding]:
        return [f for c in self.all_ for f in c.findings(ctx)]


class AnyOf(_Condition):
    """One condition holds (True if one is True, else None if one is None)."""

    tag: ClassVar[str] = "any"
    any_: list[Condition] = Field(alias="any", min_length=1)

    def test(self, ctx: Context) -> bool | None:
        verdicts = [c.test(ctx) for c in self.any_]
        if True in verdicts:
            return True
        return None if None in verdicts else False

    def describe(self) -> str:
        return " or ".join(_grouped(c) for c in self.any_)

    def thresholds(self) -> Iterator[float]:
        for c in self.any_:
            yield from c.thresholds()

    def threshold_at(self, ctx: Context) -> float | None:
        return _first_threshold(self.any_, ctx)

    def uses_value(self) -> bool:
        return any(c.uses_value() for c in self.any_)

    def measured(self, ctx: Context) -> Measured | None:
        return next((m for c in self.any_ if (m := c.measured(ctx)) is not None), None)

    def findings(self, ctx: Context) -> list[Finding]:
        return [f for c in self.any_ if c.test(ctx) for f in c.findings(ctx)]


class Not(_Condition):
    """The condition does not hold (None stays None)."""

    tag: ClassVar[str] = "not"
    not_: Condition = Field(alias="not")

    def test(self, ctx: Context) -> bool | None:
        verdict = self.not_.test(ctx)
        return None if verdict is None else not verdict

    def describe(self) -> str:
        return f"not {_grouped(self.not_)}"

    def uses_value(self) -> bool:
        return self.not_.uses_value()


AnyCondition = _Condition
"""The base of every condition (for code that walks them)."""


def walk(condition: _Condition, path: str) -> Iterator[tuple[str, _Condition]]:
    """Every condition inside ``condition`` (itself first) with its field path
    as a rule author writes it (``when.all.0.silent``)."""
    yield f"{path}.{condition.tag}", condition
    if isinstance(condition, AllOf | AnyOf):
        children = condition.all_ if isinstance(condition, AllOf) else condition.any_
        for index, child in enumerate(children):
            yield from walk(child, f"{path}.{condition.tag}.{index}")
    elif isinstance(condition, Not):
        yield from walk(condition.not_, f"{path}.not")


def _first_threshold(conditions: Sequence[_Condition], ctx: Context) -> float | None:
    at = (c.threshold_at(ctx) for c in conditions)
    return next((t for t in at if t is not None), None)


def _grouped(condition: _Condition) -> str:
    text = condition.describe()
    return f"({text})" if isinstance(condition, AllOf | AnyOf) else text


_KINDS: tuple[type[_Condition], ...] = (
    Above,
    Below,
    AboveIdle,
    BelowIdle,
    Score,
    Fired,
    Silent,
    Stale,
    ClockSkewAbove,
    InContext,
    AllOf,
    AnyOf,
    Not,
)
TAGS = tuple(kind.tag for kind in _KINDS)


def _shape(data: Any) -> Any:  # noqa: ANN401 - raw YAML of any shape
    """Reject anything but a mapping with exactly one condition key."""
    if isinstance(data, BaseModel):
        return data
    allowed = ", ".join(TAGS)
    if not isinstance(data, dict):
        raise ValueError(
            f"a condition is a mapping with one key ({allowed}), got {data!r}"
        )
    keys = list(data)
    if len(keys) != 1 or keys[0] not in TAGS:
        got = ", ".join(repr(k) for k in keys) or "no key"
        raise ValueError(
            f"a condition has exactly one key, one of: {allowed}; got {got}"
        )
    return data


def _tag_of(data: Any) -> str | None:  # noqa: ANN401 - raw YAML or a model
    if isinstance(data, _Condition):
        return data.tag
    if isinstance(data, dict) and len(data) == 1:
        return str(next(iter(data)))
    return None


Condition = Annotated[
    Annotated[Above, Tag("above")]
    | Annotated[Below, Tag("below")]
    | Annotated[AboveIdle, Tag("above_idle")]
    | Annotated[BelowIdle, Tag("below_idle")]
    | Annotated[Score, Tag("score")]
    | Annotated[Fired, Tag("fired")]
    | Annotated[Silent, Tag("silent")]
    | Annotated[Stale, Tag("stale")]
    | Annotated[ClockSkewAbove, Tag("clock_skew_above")]
    | Annotated[InContext, Tag("context")]
    | Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[Not, Tag("not")],
    Discriminator(_tag_of),
    BeforeValidator(_shape),
]
"""Any condition, parsed from its one-key mapping."""

AllOf.model_rebuild()
AnyOf.model_rebuild()
Not.model_rebuild()


def negate(verdict: bool | None) -> bool | None:
    """Three-valued not."""
    return None if verdict is None else not verdict
