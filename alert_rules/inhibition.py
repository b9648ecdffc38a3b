"""Inhibition: a more severe warning of the same finding holds back lesser ones.

Rules that find the same thing at different levels or scopes name it with
the same ``finding`` (``device-silent`` for the blue device rule, the yellow
safety-sensor rule and the orange enterprise rule). A warning that opens
while an active warning (open, acknowledged or disposed) of the same finding
covers it is *inhibited*: it is opened, stored and written to InfluxDB with
``inhibited_by`` naming the inhibitor and ``held`` set, and is not posted to
the platform, exactly like a warning a silence holds. The worker releases it
(the platform then gets its latest version) once the inhibitor is no longer
active, if it still is; one that resolves first is never sent.

An active warning ``I`` inhibits an opening ``W`` when:

* both carry the same ``finding``;
* ``I`` is more severe than ``W`` (equal levels inhibit nothing);
* ``I``'s subject covers ``W``'s: the same device and metric for a device
  warning, ``W``'s enterprise for an enterprise warning, ``W``'s grid or
  district for a grid or district warning (``W`` may itself be a grouped
  warning of a smaller scope).

Only openings are judged: a warning already delivered when a more severe one
opens stays delivered, and so do its later versions, so the platform never
holds a warning it heard open and never hears end.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from alert_rules.lifecycle import ACTIVE
from alert_rules.rule import ScopeKind
from alert_rules.warning import ANY, WarningRecord
from riskwatch.compacted import ModelView

log = logging.getLogger(__name__)


def covers(inhibitor: WarningRecord, record: WarningRecord) -> bool:
    """Whether ``inhibitor`` inhibits the opening ``record`` (see the module
    docstring); the inhibitor's status is the caller's to check."""
    if inhibitor.id == record.id or inhibitor.finding is None:
        return False
    if inhibitor.finding != record.finding:
        return False
    if inhibitor.level.severity <= record.level.severity:
        return False
    kind = inhibitor.scope.kind
    place = _place(inhibitor, kind)
    return place is not None and place == _place(record, kind)


def _place(record: WarningRecord, kind: ScopeKind) -> tuple[object, ...] | None:
    """Where ``record`` is, told at the level of ``kind``: its device and
    metric, its enterprise, grid or district; None when it is not known at
    that level (a grid warning has no one enterprise, a feed no place)."""
    if kind == ScopeKind.DEVICE:
        if record.scope.kind != ScopeKind.DEVICE:
            return None
        return (record.enterprise_id, record.device_id, record.metric)
    place = {
        ScopeKind.ENTERPRISE: record.enterprise_id,
        ScopeKind.GRID: record.grid,
        ScopeKind.DISTRICT: record.district,
    }.get(kind)
    return None if place in (None, ANY) else (place,)


def inhibitor_of(
    record: WarningRecord, candidates: Iterable[WarningRecord]
) -> WarningRecord | None:
    """The active warning that inhibits ``record``, None if none does.

    When several do, the most severe (then the earliest start, then the
    smallest id), so the answer does not depend on the order they were read.
    """
    if record.finding is None:
        return None
    found = [c for c in candidates if c.status in ACTIVE and covers(c, record)]
    if not found:
        return None
    return min(found, key=lambda c: (-c.level.severity, c.start_time.timestamp(), c.id))


class ActiveFindings(ModelView[WarningRecord]):
    """The active warnings that carry a finding, from the warning store
    (compacted, latest version per warning id), on every partition.

    Keeps only what can inhibit: a version that is no longer active, or has
    no finding, removes its warning from the view.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(
            bootstrap,
            topic,
            WarningRecord,
            label="active findings",
            what="warning",
            logger=log,
        )

    def accept(self, key: str, item: WarningRecord) -> bool:
        if item.finding is None or item.status not in ACTIVE:
            self._items.pop(key, None)
            return False
        return True

    def note(self, record: WarningRecord) -> None:
        """Take a version this worker is publishing now, before the store
        has it back (a few hundred milliseconds later)."""
        if self.accept(record.id, record):
            self._items[record.id] = record

    def active(self, warning: str) -> bool:
        """Whether ``warning`` is active as far as this view knows."""
        return warning in self._items

    def inhibitor_of(
        self, record: WarningRecord, also: Iterable[WarningRecord] = ()
    ) -> WarningRecord | None:
        """:func:`inhibitor_of` over this view and ``also``."""
        return inhibitor_of(record, [*self._items.values(), *also])
