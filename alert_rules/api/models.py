"""What the officer API takes in: request bodies, query parameters, silences.

Every model forbids unknown fields, so a misspelt field is a 422 naming it
rather than silently ignored.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from alert_rules.lifecycle import COMMAND_ID_PATTERN, COMMENT_CHARS
from alert_rules.rule import Level, ScopeKind
from alert_rules.warning import WarningStatus

LIST_LIMIT = 1000


class _Input(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ActionBody(_Input):
    """Body of acknowledge and close (all optional; an empty body is fine).

    ``command_id`` makes a retried request safe: the same id is applied once.
    """

    comment: str = Field(default="", max_length=COMMENT_CHARS)
    command_id: str | None = Field(default=None, pattern=COMMAND_ID_PATTERN)


class DisposeBody(_Input):
    """Body of dispose: ``note`` (required) says what was done."""

    note: str = Field(min_length=1, max_length=COMMENT_CHARS, pattern=r"\S")
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
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    limit: int = Field(default=100, ge=1, le=LIST_LIMIT)


class SilenceKind(StrEnum):
    """What a silence is about."""

    DEVICE = "device"
    ENTERPRISE = "enterprise"
    RULE = "rule"


class SilenceSubject(_Input):
    """A device (``id`` is ``<enterprise>/<device>``), an enterprise or a rule."""

    kind: SilenceKind
    id: str = Field(min_length=1, max_length=130, pattern=r"^[A-Za-z0-9][\w./-]*$")


class SilenceBody(_Input):
    """Body of ``POST /silences``."""

    subject: SilenceSubject
    reason: str = Field(min_length=1, max_length=COMMENT_CHARS, pattern=r"\S")
    until: AwareDatetime


class Silence(_Input):
    """A silence as recorded on the silences topic (keyed by ``id``)."""

    v: int = 1
    id: str
    subject: SilenceSubject
    reason: str
    until: AwareDatetime
    by: str
    at: AwareDatetime
