"""Warning versions as CloudEvents 1.0 in structured JSON mode.

One published version of a warning is one event:

============== ==============================================================
``id``         :attr:`WarningRecord.version_id` (``<warning id>.v<version>``),
               so a retry or a restart re-sends the same id
``source``     ``urn:riskwatch:<platform.sender_id>``: this riskwatch instance
``type``       from the last history entry: its status (:data:`EVENT_TYPES`),
               or for a level change :data:`ESCALATED` / :data:`DEESCALATED`,
               for the mark of a flapping warning :data:`FLAPPING`, for a
               grouped warning's new members :data:`UPDATED`
``subject``    the warning id
``time``       the version's ``issue_time``
``data``       the :class:`WarningRecord` as JSON (``application/json``)
============== ==============================================================

:func:`to_http` is pure: the same record gives the same headers and body
bytes, which is what the signature is computed over.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, from_http, to_structured
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from alert_rules.warning import WarningRecord, WarningStatus
from riskwatch.signing import IDEMPOTENCY_HEADER

TYPE_PREFIX = "org.riskwatch.warning."
EVENT_TYPES: Mapping[WarningStatus, str] = {
    WarningStatus.OPEN: TYPE_PREFIX + "opened",
    WarningStatus.ACKNOWLEDGED: TYPE_PREFIX + "acknowledged",
    WarningStatus.DISPOSED: TYPE_PREFIX + "disposed",
    WarningStatus.CLOSED: TYPE_PREFIX + "closed",
    WarningStatus.RESOLVED: TYPE_PREFIX + "resolved",
    WarningStatus.EXPIRED: TYPE_PREFIX + "expired",
}
ESCALATED = TYPE_PREFIX + "escalated"
"""A version that raised the level (towards I) of a warning still active."""
DEESCALATED = TYPE_PREFIX + "deescalated"
"""A version that lowered the level, never below the rule's own."""
LEVEL_TYPES = (ESCALATED, DEESCALATED)
FLAPPING = TYPE_PREFIX + "flapping"
"""The version that marked an active warning flapping (status unchanged)."""
UPDATED = TYPE_PREFIX + "updated"
"""A version of a grouped warning whose members changed, its status and
level as they were (alert_rules/grouping.py)."""
CONTENT_TYPE = JSONFormat.CONTENT_TYPE
_FORMAT = JSONFormat()


class EventError(ValueError):
    """A request body is not a CloudEvent riskwatch understands."""


def source_of(sender_id: str) -> str:
    """The CloudEvents ``source`` of a riskwatch instance.

    >>> source_of("riskwatch.local")
    'urn:riskwatch:riskwatch.local'
    """
    return f"urn:riskwatch:{sender_id}"


def event_type(record: WarningRecord) -> str:
    """The event type of the transition that made this version."""
    last = record.history[-1]
    change = last.level_change
    if change is not None:
        before, after = change
        return ESCALATED if after.severity > before.severity else DEESCALATED
    if record.flapping and last.from_status == last.status:
        return FLAPPING
    if record.members and last.from_status == last.status:
        return UPDATED
    return EVENT_TYPES[last.status]


def to_event(record: WarningRecord, source: str) -> CloudEvent:
    """The CloudEvent of one warning version."""
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": record.version_id,
        "source": source,
        "type": event_type(record),
        "subject": record.id,
        "time": record.issue_time,
        "datacontenttype": "application/json",
    }
    return CloudEvent(attributes, record.model_dump(mode="json"))


def to_http(record: WarningRecord, source: str) -> tuple[dict[str, str], bytes]:
    """Headers and body of the structured-mode POST of one warning version.

    The headers are ``Content-Type: application/cloudevents+json`` and
    ``Idempotency-Key: <event id>``; the signature headers are added per
    attempt by the sender.
    """
    message = to_structured(to_event(record, source), _FORMAT)
    headers = {"Content-Type": CONTENT_TYPE, IDEMPOTENCY_HEADER: record.version_id}
    return headers, message.body


def from_request(headers: Mapping[str, str], body: bytes) -> BaseCloudEvent:
    """Parse a CloudEvent from an HTTP request, structured or binary mode.

    Raises:
        EventError: the body or headers do not make a valid CloudEvent 1.0;
            the message says why.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    if not any(key.startswith("ce-") for key in lowered) and not body.lstrip(
        b" \t\r\n"
    ).startswith(b"{"):
        # The library assumes a JSON object here and fails on anything else
        # with an AttributeError that would read as a bug of ours.
        raise EventError("body must be a CloudEvent JSON object")
    try:
        return from_http(HTTPMessage(headers=lowered, body=body), _FORMAT, CloudEvent)
    except (BaseCloudEventException, ValueError, TypeError) as exc:
        raise EventError(f"not a CloudEvent 1.0: {exc}") from exc
