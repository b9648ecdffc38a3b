"""Whether a rule's ``clear`` can give hysteresis against its ``when``.

A ``clear`` that can hold while ``when`` still holds never keeps a warning
open between two thresholds: the warning resolves while the rule still
fires and opens again at the next reading, so it flaps. This finds the
one-sided bounds (``above``/``below``, their ``_idle`` forms, ``score``,
``clock_skew_above`` and ``not`` of each) that each way of firing implies
(every member of an ``any`` fires alone) and checks each way the clear can
hold (a bound, a member of an ``any``, an ``all`` of bounds) against them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from itertools import combinations

from alert_rules._base import format_duration
from alert_rules.conditions import (
    Above,
    AboveIdle,
    AllOf,
    AnyCondition,
    AnyOf,
    Below,
    BelowIdle,
    ClockSkewAbove,
    Not,
    Score,
)


@dataclass(frozen=True)
class _Bound:
    """A condition that holds on one side of a threshold of one quantity.

    ``upward``: it holds above the threshold (below it otherwise); ``key``
    is the threshold's field below the condition (``below``,
    ``not.score.at_least``).
    """

    condition: AnyCondition
    quantity: tuple[str, ...]
    upward: bool
    threshold: float
    key: str

    @property
    def shown(self) -> str:
        """The threshold as the rule author writes it."""
        if self.quantity == ("clock",):
            return format_duration(timedelta(seconds=self.threshold))
        return f"{self.threshold:g}"


def _bound(condition: AnyCondition) -> _Bound | None:  # noqa: PLR0911 - one per kind
    """The condition as a one-sided bound; None if it is not one."""
    if isinstance(condition, Above):
        return _Bound(condition, ("value",), True, condition.above, "above")
    if isinstance(condition, Below):
        return _Bound(condition, ("value",), False, condition.below, "below")
    if isinstance(condition, AboveIdle):
        factor = condition.above_idle.factor
        return _Bound(condition, ("idle",), True, factor, "above_idle.factor")
    if isinstance(condition, BelowIdle):
        factor = condition.below_idle.factor
        return _Bound(condition, ("idle",), False, factor, "below_idle.factor")
    if isinstance(condition, Score):
        of = ("score", *sorted(condition.score.detectors))
        return _Bound(condition, of, True, condition.score.at_least, "score.at_least")
    if isinstance(condition, ClockSkewAbove):
        seconds = condition.clock_skew_above.total_seconds()
        return _Bound(condition, ("clock",), True, seconds, "clock_skew_above")
    if isinstance(condition, Not):
        inner = _bound(condition.not_)
        if inner is None:
            return None
        return _Bound(
            condition,
            inner.quantity,
            not inner.upward,
            inner.threshold,
            f"not.{inner.key}",
        )
    return None


def _implied(when: AnyCondition) -> list[_Bound]:
    """The bounds that hold whenever ``when`` does (all of ``all``'s)."""
    if isinstance(when, AllOf):
        return [bound for member in when.all_ for bound in _implied(member)]
    bound = _bound(when)
    return [] if bound is None else [bound]


def _ways_to_fire(when: AnyCondition) -> list[list[_Bound]]:
    """The bounds implied by each way ``when`` can hold: one list for each
    member of an ``any`` (the rule fires on each alone), else one."""
    if isinstance(when, AnyOf):
        return [way for member in when.any_ for way in _ways_to_fire(member)]
    return [_implied(when)]


@dataclass(frozen=True)
class _Clearing:
    """One way ``clear`` can hold: every bound in ``bounds`` together.

    ``path`` is its field (``clear``, ``clear.any.1``), ``condition`` the
    condition as written.
    """

    path: str
    condition: AnyCondition
    bounds: tuple[_Bound, ...]


def _offered(clear: AnyCondition, path: str) -> Iterator[_Clearing]:
    """Each way ``clear`` resolves on its own: a member of an ``any``, a
    bound, or an ``all`` made only of bounds (any other member cannot be
    judged, so such an ``all`` is passed over)."""
    if isinstance(clear, AnyOf):
        for index, member in enumerate(clear.any_):
            yield from _offered(member, f"{path}.any.{index}")
        return
    if isinstance(clear, AllOf):
        members = [_bound(member) for member in clear.all_]
        bounds = [bound for bound in members if bound is not None]
        if len(bounds) == len(members):
            yield _Clearing(f"{path}.all", clear, tuple(bounds))
        return
    bound = _bound(clear)
    if bound is not None:
        yield _Clearing(f"{path}.{bound.key}", clear, (bound,))


def _overlap(firing: _Bound, clearing: _Bound) -> str | None:
    """Why ``clearing`` can hold while ``firing`` does; None if it cannot."""
    if firing.quantity != clearing.quantity:
        return None
    if firing.upward == clearing.upward:
        return "both hold on the same side"
    # Equal thresholds meet at one point that neither side holds on (above
    # 25 / below 25) or that only the clear holds on (not above 25): no
    # overlap, though also no hysteresis band.
    if firing.upward and clearing.threshold > firing.threshold:
        return f"a clear bound must be at most {firing.shown}"
    if not firing.upward and clearing.threshold < firing.threshold:
        return f"a clear bound must be at least {firing.shown}"
    return None


def _all_hold_together(firing: list[_Bound], clearing: _Clearing) -> bool:
    """Whether every bound of an ``all`` clear can hold while ``firing`` does.

    Each bound is a half-line of its quantity, and half-lines that meet
    pairwise have a point in common (Helly's theorem on a line), so checking
    pairs is exact. A bound on a quantity the firing does not bound cannot be
    judged, and makes the answer no.
    """
    for bound in clearing.bounds:
        same = [f for f in firing if f.quantity == bound.quantity]
        if not same or any(_overlap(f, bound) is None for f in same):
            return False
    pairs = combinations(clearing.bounds, 2)
    return all(a.quantity != b.quantity or _overlap(a, b) for a, b in pairs)


def hysteresis_problems(
    when: AnyCondition, clear: AnyCondition | None, path: str
) -> Iterator[tuple[str, str]]:
    """(field path, message) for each way ``clear`` can hold while ``when``
    fires; ``path`` is the clear's field (``clear``, ``escalate.0.clear``)."""
    if clear is None:
        return
    if clear == when:
        yield (
            path,
            f"clear is the same as when ({when.describe()}): it holds whenever "
            "the rule fires, so the warning resolves and opens again at once; "
            "leave clear out or put it on the safe side of when",
        )
        return
    for firing in _ways_to_fire(when):
        for clearing in _offered(clear, path):
            if len(clearing.bounds) > 1:
                if _all_hold_together(firing, clearing):
                    yield (
                        clearing.path,
                        f"clear {clearing.condition.describe()} can hold while "
                        "the rule fires on "
                        f"{' and '.join(f.condition.describe() for f in firing)}"
                        ", so it gives no hysteresis and the warning flaps",
                    )
                continue
            (bound,) = clearing.bounds
            for fired in firing:
                why = _overlap(fired, bound)
                if why is not None:
                    yield (
                        clearing.path,
                        f"clear {bound.condition.describe()} can hold while the "
                        f"rule fires on {fired.condition.describe()} ({why}), so "
                        "it gives no hysteresis and the warning flaps",
                    )
