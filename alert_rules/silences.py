"""Silences and maintenance windows: which warnings an officer asked to hold.

A :class:`Silence` names a subject (a device ``<enterprise>/<device>``, an
enterprise or a rule), a reason and an end time (``until``), optionally a
start (``starts``: a maintenance window planned ahead). It is recorded by the
officer API on the compacted silences topic, keyed by its id; lifting it early
records the same id again with ``until`` moved to the lifting time.

Silences are administrative acts, so they are judged on the wall clock (UTC),
never on a device's event time: a backlog of readings from last week replayed
today is silenced by today's silences, not last week's. What the worker does
with a warning a silence covers is in docs/rules.md ("Silences and
maintenance windows").
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from riskwatch.compacted import ModelView
from riskwatch.contracts import ID_PATTERN
from riskwatch.settings import SilenceLimits

log = logging.getLogger(__name__)


class _Input(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SilenceKind(StrEnum):
    """What a silence is about."""

    DEVICE = "device"
    ENTERPRISE = "enterprise"
    RULE = "rule"


_ID = re.compile(ID_PATTERN)


class SilenceSubject(_Input):
    """A device (``id`` is ``<enterprise>/<device>``), an enterprise or a rule.

    Ids are spelt as in the registry and the rule files (ASCII letters,
    digits, ``_ . -``), so a silence that could never match is refused.
    """

    kind: SilenceKind
    id: str = Field(min_length=1, max_length=130)

    @field_validator("id")
    @classmethod
    def _spelt_as_its_kind(cls, value: str, info: ValidationInfo) -> str:
        # A field validator (kind is validated first), so that the error
        # names subject.id rather than the whole subject.
        kind = info.data.get("kind")
        if kind is None:  # kind itself was refused; that error is reported
            return value
        parts = value.split("/") if kind == SilenceKind.DEVICE else [value]
        shape = "<enterprise>/<device>" if kind == SilenceKind.DEVICE else "an id"
        wanted = 2 if kind == SilenceKind.DEVICE else 1
        if len(parts) != wanted or not all(_ID.fullmatch(p) for p in parts):
            article = "an" if kind.value[0] in "aeiou" else "a"
            raise ValueError(
                f"{article} {kind.value} silence names {shape} of ASCII letters, "
                f"digits, '_', '.' or '-', got {value[:80]!r}"
            )
        return value


class Silence(_Input):
    """A silence as recorded on the silences topic (keyed by ``id``).

    Attributes:
        at: when it was recorded (UTC).
        starts: when it begins; None: at ``at``.
        until: when it ends (exclusive); moved to the lifting time when an
            officer lifts it early.
        lifted_by, lifted_at: who lifted it early and when; None otherwise.
    """

    v: int = 1
    id: str
    subject: SilenceSubject
    reason: str
    until: AwareDatetime
    by: str
    at: AwareDatetime
    starts: AwareDatetime | None = None
    lifted_by: str | None = None
    lifted_at: AwareDatetime | None = None

    def active(self, now: datetime) -> bool:
        """Whether the silence holds at wall time ``now`` (start inclusive)."""
        return (self.starts or self.at) <= now < self.until

    def covers(self, enterprise: str, device: str, rule: str) -> bool:
        """Whether the silence is about this device, its enterprise or rule.

        >>> s = Silence.model_validate({"id": "s", "reason": "r", "by": "li",
        ...     "subject": {"kind": "device", "id": "HC001/GD-1"},
        ...     "until": "2026-12-03T02:00:00Z", "at": "2026-12-03T01:00:00Z"})
        >>> s.covers("HC001", "GD-1", "gas-red"), s.covers("HC001", "GD-2", "x")
        (True, False)
        """
        wanted = {
            SilenceKind.DEVICE: f"{enterprise}/{device}",
            SilenceKind.ENTERPRISE: enterprise,
            SilenceKind.RULE: rule,
        }[self.subject.kind]
        return self.subject.id == wanted


def longest(kind: SilenceKind, limits: SilenceLimits, *, supervisor: bool) -> timedelta:
    """The longest silence of ``kind`` an officer (or a supervisor) may record.

    >>> longest(SilenceKind.RULE, SilenceLimits(), supervisor=False)
    datetime.timedelta(days=1)
    >>> longest(SilenceKind.DEVICE, SilenceLimits(), supervisor=True).days
    28
    """
    hours = {
        SilenceKind.DEVICE: limits.device_h,
        SilenceKind.ENTERPRISE: limits.enterprise_h,
        SilenceKind.RULE: limits.rule_h,
    }[kind]
    return timedelta(hours=hours * (limits.supervisor_factor if supervisor else 1))


def span_refusal(
    kind: SilenceKind,
    *,
    starts: datetime | None,
    until: datetime,
    now: datetime,
    limits: SilenceLimits,
    supervisor: bool,
) -> tuple[str, str] | None:
    """Why a silence asked at ``now`` is too long or planned too far ahead:
    (field, message), or None when it may be recorded.

    A silence is measured from its start (``starts``, else ``now``) to
    ``until``, so a maintenance window planned ahead is held to the same
    length as one beginning now.

    >>> from datetime import UTC
    >>> now = datetime(2026, 12, 3, tzinfo=UTC)
    >>> span_refusal(SilenceKind.RULE, starts=None, until=datetime(9999, 12, 31,
    ...     tzinfo=UTC), now=now, limits=SilenceLimits(), supervisor=False)[0]
    'until'
    """
    ahead = timedelta(hours=limits.ahead_h)
    if starts is not None and starts - now > ahead:
        return "starts", (
            f"a maintenance window may start at most {_span(ahead)} ahead "
            f"(api.silences.ahead_h); this one starts in {_span(starts - now)}"
        )
    allowed = longest(kind, limits, supervisor=supervisor)
    asked = until - (starts or now)
    if asked <= allowed:
        return None
    who = "a supervisor's" if supervisor else "an officer's"
    if not supervisor:
        wider = longest(kind, limits, supervisor=True)
        hint = f"; a supervisor may record up to {_span(wider)}"
    else:
        hint = ""
    return "until", (
        f"{who} {kind.value} silence may last at most {_span(allowed)} "
        f"(api.silences.{kind.value}_h); this one lasts {_span(asked)} from its "
        f"start{hint}"
    )


def _span(length: timedelta) -> str:
    """A length in days from one day on, else in hours or minutes.

    >>> _span(timedelta(days=7)), _span(timedelta(hours=36)), _span(timedelta(days=1))
    ('7 days', '1.5 days', '1 day')
    >>> _span(timedelta(hours=5)), _span(timedelta(minutes=121)), _span(timedelta(0))
    ('5 h', '2 h 1 min', '0 min')
    """
    days = length / timedelta(days=1)
    if days >= 1:
        shown = f"{days:.1f}".removesuffix(".0")
        return f"{shown} day" if shown == "1" else f"{shown} days"
    hours, minutes = divmod(round(length / timedelta(minutes=1)), 60)
    parts = [f"{hours} h"] if hours else []
    if minutes or not hours:
        parts.append(f"{minutes} min")
    return " ".join(parts)


def covering(
    silences: Iterable[Silence],
    *,
    enterprise: str,
    device: str,
    rule: str,
    now: datetime,
) -> Silence | None:
    """The active silence covering a warning's subject, None if there is none.

    When several do, the one that ends last is returned (ties: the smallest
    id), so the answer does not depend on the order the silences were read.
    """
    found = [
        s for s in silences if s.active(now) and s.covers(enterprise, device, rule)
    ]
    if not found:
        return None
    return min(found, key=lambda s: (-s.until.timestamp(), s.id))


class SilenceView(ModelView[Silence]):
    """Every silence, kept current from the silences topic (all partitions)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(
            bootstrap, topic, Silence, label="silences", what="silence", logger=log
        )

    def silences(self) -> list[Silence]:
        """Every silence recorded, oldest first, ended ones included."""
        return sorted(self._items.values(), key=lambda s: s.at)

    def covering(
        self, *, enterprise: str, device: str, rule: str, now: datetime
    ) -> Silence | None:
        """:func:`covering` over the silences of this view."""
        return covering(
            self._items.values(),
            enterprise=enterprise,
            device=device,
            rule=rule,
            now=now,
        )
