"""What the officer API takes in: request bodies, query parameters, silences
(the :class:`Silence` model itself lives in :mod:`alert_rules.silences`).

Every model forbids unknown fields, so a misspelt field is a 422 naming it
rather than silently ignored.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from alert_rules.lifecycle import COMMAND_ID_PATTERN, COMMENT_CHARS
from alert_rules.rule import Level, ScopeKind
from alert_rules.silences import Silence, SilenceKind, SilenceSubject
from alert_rules.warning import WarningStatus
from riskwatch.text import FreeText, free_text

LIST_LIMIT = 1000


class _Input(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _has_text(text: str) -> str:
    # str.strip() also removes the control characters \x1c-\x1f, which the
    # regular expression \S lets through: a note of those is no note.
    if not text.strip() or not any(
        ch.isprintable() and not ch.isspace() for ch in text
    ):
        raise ValueError("must say something: blank or control characters only")
    return text


# Line breaks and tabs are text; every other control character (ESC, NUL,
# BEL, ...) is refused (riskwatch.text): it would go into the audit trail as
# is and reach the next officer's terminal through `riskwatch warnings show`.
Text = Annotated[str, AfterValidator(_has_text), AfterValidator(free_text)]
Comment = FreeText

# A time of day in ISO 8601 starts with a four-digit year and a dash; pydantic
# alone also takes a number (or a string of digits) as seconds or milliseconds
# since 1970, which a typo or a client in another unit turns into a time far
# off without a word.
_ISO_START = re.compile(r"\d{4}-")


def _iso_8601(value: object) -> object:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_START.match(value):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise ValueError(
            "must be an ISO 8601 time with a timezone, like "
            f"2026-12-03T08:00:00+08:00; got {shown} (epoch numbers are refused)"
        )
    return value


IsoTime = Annotated[AwareDatetime, BeforeValidator(_iso_8601)]
"""An aware time written in ISO 8601 only: no epoch seconds, no naive time."""


class ActionBody(_Input):
    """Body of acknowledge and close (all optional; an empty body is fine).

    ``command_id`` makes a retried request safe: the same id is applied once.
    """

    comment: Comment = Field(default="", max_length=COMMENT_CHARS)
    command_id: str | None = Field(default=None, pattern=COMMAND_ID_PATTERN)


class DisposeBody(_Input):
    """Body of dispose: ``note`` (required) says what was done."""

    note: Text = Field(min_length=1, max_length=COMMENT_CHARS)
    command_id: str | None = Field(default=None, pattern=COMMAND_ID_PATTERN)


class ListQuery(_Input):
    """Filters of ``GET /warnings``; all optional, combined with and.

    ``since``/``until`` bound the warning's ``start_time`` (until exclusive).
    """

    level: Level | None = None
    status: WarningStatus | None = None
    scope: ScopeKind | None = None
    enterprise: str | None = None
    grid: str | None = None
    since: IsoTime | None = None
    until: IsoTime | None = None
    limit: int = Field(default=100, ge=1, le=LIST_LIMIT)

    @field_validator("until")
    @classmethod
    def _after_since(
        cls, until: datetime | None, info: ValidationInfo
    ) -> datetime | None:
        since = info.data.get("since")
        if until is not None and since is not None and until <= since:
            raise ValueError(
                f"must be after since ({since.isoformat()}); the range is reversed"
            )
        return until


class ShowQuery(_Input):
    """Parameters of ``GET /warnings/{id}``: ``evidence`` (default true) reads
    the evidence series from InfluxDB; false, 0, no or off skip it."""

    evidence: bool = True


class NoQuery(_Input):
    """Parameters of a route that takes none (``GET /warnings/{id}/cap``,
    ``GET /silences``): any given is a 422 naming it."""


class SilenceBody(_Input):
    """Body of ``POST /silences``: ``starts`` (optional, default now) plans a
    maintenance window ahead; ``until`` is its end."""

    subject: SilenceSubject
    reason: Text = Field(min_length=1, max_length=COMMENT_CHARS)
    until: IsoTime
    starts: IsoTime | None = None


__all__ = [
    "LIST_LIMIT",
    "ActionBody",
    "DisposeBody",
    "IsoTime",
    "ListQuery",
    "NoQuery",
    "ShowQuery",
    "Silence",
    "SilenceBody",
    "SilenceKind",
    "SilenceSubject",
]
