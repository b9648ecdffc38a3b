"""Warning versions as OASIS Common Alerting Protocol (CAP) 1.2 documents.

One ``<alert>`` per published version of a warning (:func:`cap_document`,
:func:`render_cap`), for the officer API and any CAP consumer of the office:

* ``identifier`` is :attr:`WarningRecord.version_id`, the CloudEvent id of
  the same version, so the two channels name a version alike;
* ``msgType`` is ``Alert`` for the opening, ``Cancel`` for a version that
  ends the warning (resolved, closed, expired: :data:`ENDED`) and ``Update``
  for any other later one; a later version's ``references`` lists every
  earlier version as ``sender,identifier,sent``, and ``incidents`` is the
  warning id;
* ``scope`` is ``Restricted``: a warning names an enterprise, its devices and
  the grid officer's phone, and an early warning from sensors is for the
  supervisors to act on, not a public announcement;
* urgency, severity, certainty and responseType come from the level
  (:data:`LEVEL_MAPPING`); ``category`` from the metric (:data:`CATEGORIES`).

CAP times have whole seconds and a numeric offset; UTC is written ``-00:00``
as CAP 1.2 (section 3.3.2) requires.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from lxml import etree

from alert_rules.rule import Level
from alert_rules.warning import (
    ANY,
    WarningItem,
    WarningRecord,
    WarningStatus,
    version_id,
)
from riskwatch.contracts import Metric

CAP_NAMESPACE = "urn:oasis:names:tc:emergency:cap:1.2"
CAP_MEDIA_TYPE = "application/cap+xml"
"""The media type CAP documents are served with (``GET /warnings/{id}/cap``)."""
RESTRICTION = (
    "For the work-safety supervision office and the grid officers in charge; "
    "names enterprises and officers, not for public dissemination."
)
HEADLINE_CHARS = 160  # CAP 1.2 asks for headlines of about this length at most

ENDED = frozenset({WarningStatus.RESOLVED, WarningStatus.CLOSED, WarningStatus.EXPIRED})
"""Statuses whose version cancels the alert: nothing is asked of anyone any more.
(A resolved warning may still be acknowledged or closed by an officer; for
the CAP consumer the hazard message is withdrawn either way.)"""

# responseType of an ending version: the condition cleared (resolved) or an
# officer closed the case, so all clear; an expired warning's condition was
# never seen to clear, so nothing is recommended rather than "all clear".
_ENDED_RESPONSE = {
    WarningStatus.RESOLVED: "AllClear",
    WarningStatus.CLOSED: "AllClear",
    WarningStatus.EXPIRED: "None",
}


@dataclass(frozen=True)
class CapGrade:
    """How one warning level reads in CAP."""

    urgency: str
    severity: str
    certainty: str
    response: str


# Every warning stands on measured readings (or a measured silence), so its
# certainty is Observed; the level says how bad and how soon.
LEVEL_MAPPING: Mapping[Level, CapGrade] = {
    Level.I: CapGrade("Immediate", "Extreme", "Observed", "Execute"),
    Level.II: CapGrade("Expected", "Severe", "Observed", "Prepare"),
    Level.III: CapGrade("Future", "Moderate", "Observed", "Monitor"),
    Level.IV: CapGrade("Future", "Minor", "Observed", "Monitor"),
}

CATEGORIES: Mapping[Metric, tuple[str, ...]] = {
    Metric.COMBUSTIBLE_GAS_LEL: ("Safety",),
    Metric.TOXIC_GAS_PPM: ("Safety", "Env"),
    Metric.TEMPERATURE_C: ("Safety",),
    Metric.PRESSURE_MPA: ("Safety",),
    Metric.LEVEL_PCT: ("Safety",),
    # Utility meters watch whether an enterprise runs (shut-down orders,
    # unreported operation): its supply, not a hazard of its own.
    Metric.POWER_KW: ("Infra",),
    Metric.ENERGY_KWH: ("Infra",),
    Metric.WATER_M3: ("Infra",),
    Metric.GAS_M3: ("Infra",),
}
# A feed warning (no metric): riskwatch's own data supply has failed.
FEED_CATEGORIES: tuple[str, ...] = ("Infra",)

# Characters XML 1.0 cannot carry at all, even escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# CAP 1.2: sender and identifier must not contain spaces, commas, < or &.
_CAP_ID = re.compile(r"^[^\s,<&]+$")


def cap_time(moment: datetime) -> str:
    """A time as CAP writes it.

    >>> cap_time(datetime(2026, 12, 3, 1, 2, 3, 999_999, tzinfo=UTC))
    '2026-12-03T01:02:03-00:00'
    """
    text = moment.astimezone(UTC).replace(microsecond=0).isoformat()
    return text.removesuffix("+00:00") + "-00:00"


def cap_expires(record: WarningRecord) -> datetime:
    """The version's ``expires``: the warning's ``valid_until``, but never
    before the version was sent.

    A version issued after the warning stopped being valid (an officer
    acknowledges or closes it hours after it resolved) keeps its
    ``valid_until`` (the resolution), which is earlier than its ``issue_time``
    (the officer's action). Such a version announces nothing still in force:
    it expires the moment it is sent (``expires`` = ``effective``), rather
    than claiming a validity the warning no longer has.
    """
    return max(record.valid_until, record.issue_time)


def msg_type(record: WarningRecord) -> str:
    """``Alert``, ``Update`` or ``Cancel`` for this version."""
    if record.version == 1:
        return "Alert"
    return "Cancel" if record.status in ENDED else "Update"


def cap_document(record: WarningRecord, *, sender: str) -> etree._Element:
    """The ``<alert>`` element of one warning version.

    Args:
        record: the warning version.
        sender: this riskwatch instance's CAP sender id
            (``platform.sender_id``).

    Raises:
        ValueError: ``sender`` contains a space, comma, ``<`` or ``&``.
    """
    if not _CAP_ID.match(sender):
        raise ValueError(
            f"sender {sender!r} must not be empty or contain spaces, commas, < or &"
        )
    alert = etree.Element(_tag("alert"), nsmap={None: CAP_NAMESPACE})
    _add(alert, "identifier", record.version_id)
    _add(alert, "sender", sender)
    _add(alert, "sent", cap_time(record.issue_time))
    _add(alert, "status", "Actual")
    _add(alert, "msgType", msg_type(record))
    _add(alert, "scope", "Restricted")
    _add(alert, "restriction", RESTRICTION)
    if record.version > 1:
        _add(alert, "note", record.history[-1].comment or record.status.value)
        _add(alert, "references", _references(record, sender))
    _add(alert, "incidents", record.id)
    _info(alert, record)
    return alert


def render_cap(record: WarningRecord, *, sender: str) -> bytes:
    """The CAP document of one warning version as UTF-8 XML bytes."""
    return etree.tostring(
        cap_document(record, sender=sender),
        xml_declaration=True,
        encoding="UTF-8",
        pretty_print=True,
    )


def _references(record: WarningRecord, sender: str) -> str:
    # Version n was sent at the n-th history entry (see alert_rules.warning).
    return " ".join(
        f"{sender},{version_id(record.id, n)},{cap_time(entry.at)}"
        for n, entry in enumerate(record.history[:-1], start=1)
    )


def _info(alert: etree._Element, record: WarningRecord) -> None:
    grade = LEVEL_MAPPING[record.level]
    info = _add(alert, "info")
    _add(info, "language", "en")
    categories = FEED_CATEGORIES if record.metric is None else CATEGORIES[record.metric]
    for category in categories:
        _add(info, "category", category)
    _add(info, "event", record.title)
    _add(info, "responseType", _ENDED_RESPONSE.get(record.status, grade.response))
    _add(info, "urgency", grade.urgency)
    _add(info, "severity", grade.severity)
    _add(info, "certainty", grade.certainty)
    _add(info, "effective", cap_time(record.issue_time))
    _add(info, "onset", cap_time(record.start_time))
    _add(info, "expires", cap_time(cap_expires(record)))
    _add(info, "senderName", record.authority)
    _add(info, "headline", _headline(record))
    _add(info, "description", "\n".join(_item_lines(record)))
    actions = dict.fromkeys(item.action for item in record.items if item.action)
    if actions:
        _add(info, "instruction", "\n".join(actions))
    if record.officer is not None:
        phone = f" {record.officer.phone}" if record.officer.phone else ""
        _add(info, "contact", f"{record.officer.name}{phone}")
    for name, value in (
        ("warningId", record.id),
        ("level", record.level.value),
        ("colour", record.colour),
        ("status", record.status.value),
        ("rule", record.rule_id),
        ("enterprise", record.enterprise_id),
        ("device", record.device_id),
        ("metric", record.metric.value if record.metric else ANY),
    ):
        parameter = _add(info, "parameter")
        _add(parameter, "valueName", name)
        _add(parameter, "value", value)
    _area(info, record)


def _headline(record: WarningRecord) -> str:
    where = record.enterprise_name or record.enterprise_id
    if record.enterprise_id == ANY:  # a grid, district or feed: no one enterprise
        where = record.scope.name
    state = f"{record.status.value}: " if record.status in ENDED else ""
    text = (
        f"{state}level {record.level.value} ({record.colour}) {record.title}, {where}"
    )
    if len(text) <= HEADLINE_CHARS:
        return text
    return text[: HEADLINE_CHARS - 1] + "…"


def _item_lines(record: WarningRecord) -> list[str]:
    return [_item_line(item) for item in record.items]


def _item_line(item: WarningItem) -> str:
    evidence = item.evidence
    if evidence is None:  # a feed warning: no one device's readings
        return f"{item.observed} (expected: {item.expected})"
    return (
        f"{item.observed} (expected: {item.expected}; device {evidence.device}, "
        f"{evidence.from_.isoformat()} to {evidence.to.isoformat()})"
    )


def _area(info: etree._Element, record: WarningRecord) -> None:
    area = _add(info, "area")
    known = [
        (record.scope.kind.value, record.scope.id, record.scope.name),
        ("enterprise", record.enterprise_id, record.enterprise_name),
        ("grid", record.grid, None),
        ("district", record.district, None),
    ]
    # The scope first, then what contains it; each kind once.
    seen: dict[str, tuple[str, str | None]] = {}
    for kind, ident, name in known:
        if ident and ident != ANY and kind not in seen:
            seen[kind] = (ident, name)
    _add(
        area,
        "areaDesc",
        ", ".join(f"{kind} {name or ident}" for kind, (ident, name) in seen.items()),
    )
    for kind, (ident, _) in seen.items():
        geocode = _add(area, "geocode")
        _add(geocode, "valueName", kind)
        _add(geocode, "value", ident)


def _tag(name: str) -> str:
    return f"{{{CAP_NAMESPACE}}}{name}"


def _add(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, _tag(name))
    if text is not None:
        element.text = _NOT_XML.sub("\ufffd", text)
    return element
