"""Feed outages: many devices silent at once is one infrastructure fault.

When the broker, the gateway or the network between them fails, every device
behind it stops arriving at the same moment. Reported device by device, that
is one ``device-silent`` warning per device (and one ``safety-sensor-silent``
per gas detector) for a single fault nobody on site can fix, and the office
misses the one message that matters: the feed is down.

The worker's silence scan therefore hands the devices it found due for
silence to :meth:`FeedWatch.scan` first. When at least ``min_devices`` of
them, and at least ``share`` of the devices heard from in the last
``window_s``, are due in the same scan, it is a feed outage: one ``feed``
warning (level II, orange) opens, and the devices are marked as explained by
it instead of being reported. A device due alone is reported ``settle_s``
later than ``silent_after_s``, so that devices reporting at different moments
of their interval are all due when the outage is judged.

An outage explains only the devices that fell silent with it: those due at
once when it was found, and those falling due later whose last reading came
no more than ``settle_s`` after its start (the rest of its reporting
interval). A device that kept reporting after that and then goes quiet is
judged as if there were no outage: alone, or with the others quiet at the
same moment as a new outage, counted against the devices still heard (the
devices an open outage explains left out). So an outage whose devices never
return hides no later silence. When the devices still silent of an outage
are no longer an outage by the same test, its warning resolves once; the
devices still silent then have their silence clock restarted from the
recovery, so each is reported as usual if it stays silent for
``silent_after_s`` (and ``settle_s``) more.

Nothing here touches Kafka or Faust: the worker applies the :class:`ScanPlan`
(stream_jobs/app.py). The only memory is the open outages, and they can be
rebuilt from the marks in the device table after a restart.

A feed warning names no device: ``enterprise_id`` and ``device_id`` are
:data:`alert_rules.warning.ANY` and ``metric`` is None (docs/rules.md, "Feed
outages").
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from alert_rules.lifecycle import WORKER_ACTOR
from alert_rules.rule import Level, ScopeKind
from alert_rules.warning import (
    ANY,
    AuditEntry,
    LevelEntry,
    WarningItem,
    WarningRecord,
    WarningScope,
    WarningStatus,
    warning_id,
)

log = logging.getLogger(__name__)

OUTAGE_RULE = "feed-silent"
OUTAGE_LEVEL = Level.II
# How long the opening is valid for without news; the worker resolves it
# when data returns, whatever this says.
OUTAGE_VALID_FOR = timedelta(hours=1)
OUTAGE_ACTION = (
    "Check the MQTT broker, the gateway and the network between the devices "
    "and the gateway (power, link, credentials, disk); the devices themselves "
    "are probably not at fault."
)

# Device-state keys this module owns (the table's values are plain dicts).
OUTAGE_KEY = "outage"  # id of the outage that explains the device's silence
OUTAGE_START_KEY = "outage_start_ns"  # that outage's start, to rebuild it
SILENCE_FROM_KEY = "silence_from_ns"  # silence counted from here if later

DeviceState = dict[str, Any]


@dataclass(frozen=True)
class OutagePolicy:
    """When silent devices are a feed outage.

    Attributes:
        min_devices: at least this many devices due in one scan.
        share: and at least this share (0-1] of the devices heard from in
            the last ``window_s``.
        window_s: which devices count as the feed, in seconds of wall time
            before the scan (before the outage's start while one lasts).
        silent_after_s: a device is due for silence after this long unheard.
        settle_s: a device due for silence is reported alone only after
            this much longer, so that the devices of an outage, whose last
            readings are up to one reporting interval apart, fall due
            together first; keep it at least the longest reporting interval.
        scan_s: the period of the scan; the outage id rounds its start to it.
    """

    min_devices: int = 5
    share: float = 0.5
    window_s: float = 3600.0
    silent_after_s: float = 900.0
    settle_s: float = 60.0
    scan_s: float = 10.0

    def is_outage(self, silent: int, heard: int) -> bool:
        """``silent`` devices of ``heard`` are an outage.

        >>> OutagePolicy().is_outage(5, 10), OutagePolicy().is_outage(4, 4)
        (True, False)
        """
        return silent >= self.min_devices and silent >= self.share * heard


@dataclass(frozen=True)
class Outage:
    """One feed outage.

    Attributes:
        id: the feed warning's id.
        start_ns: wall time the last reading of its devices reached the
            gateway: when the feed went quiet.
        devices: devices it explained when it was found.
        heard: devices heard from in the window then.
        found_ns: wall time of the scan that found it (its start after a
            restart, when that scan is not known).
    """

    id: str
    start_ns: int
    devices: int
    heard: int
    found_ns: int


@dataclass
class ScanPlan:
    """What the worker does after one scan.

    Attributes:
        silent: devices to report silent one by one, as before.
        explained: devices to mark as explained by an outage, and by which.
        resume: devices marked by a resolved outage and still silent: their
            silence counts again from the scan.
        opened: an outage found in this scan.
        resolved: the outages that ended in this scan.
        outages: the outages in force after the scan, oldest first.
    """

    silent: list[bytes] = field(default_factory=list)
    explained: dict[bytes, Outage] = field(default_factory=dict)
    resume: list[bytes] = field(default_factory=list)
    opened: Outage | None = None
    resolved: list[Outage] = field(default_factory=list)
    outages: list[Outage] = field(default_factory=list)


def silent_since(state: DeviceState) -> int:
    """Wall time (ns) the device's silence counts from: its last reading's
    arrival, or a resumed silence clock if that is later."""
    return int(max(state["last_seen_ns"], state.get(SILENCE_FROM_KEY) or 0))


def due_for_silence(state: DeviceState | None, wall_ns: int, limit_s: float) -> bool:
    """True if the device has been heard from before, is not already marked
    silent, and nothing has arrived from it for ``limit_s`` seconds (since a
    resumed silence clock, if that is later)."""
    if not state or state["silent"] or state["last_ts"] is None:
        return False
    if state.get("last_seen_ns") is None:
        return False
    return bool((wall_ns - silent_since(state)) / 1e9 >= limit_s)


class FeedWatch:
    """The outage state of one worker, over the devices of its partitions.

    An outage explains only the devices that fell silent with it: those
    whose silence counts from no later than ``settle_s`` after its start.
    A device still reporting after that is no part of it, whatever it does
    next: once quiet it is judged alone, or with others quiet at the same
    moment as a new outage, by the same test.

    Args:
        policy: when silent devices are an outage.
        feed: what names this feed in the warning id and scope (the worker's
            ``app_id``).
    """

    def __init__(self, policy: OutagePolicy, feed: str) -> None:
        self.policy = policy
        self.feed = feed
        self.outages: dict[str, Outage] = {}  # open ones, by id
        # Resolved here: marks of theirs still in the table (the resume sent,
        # not yet applied) must not rebuild them.
        self._resolved: set[str] = set()

    def scan(
        self, states: Iterable[tuple[bytes, DeviceState]], wall_ns: int
    ) -> ScanPlan:
        """Decide about the devices of one scan of the device table."""
        items = [(key, state) for key, state in states if state]
        self._rebuild(items)
        plan = ScanPlan()
        by_key = dict(items)
        loose: list[bytes] = []
        for key in self._due(items, wall_ns):
            outage = self._member_of(by_key[key])
            if outage is None:
                loose.append(key)
            else:
                plan.explained[key] = outage
        # Each device explained by an open outage: marked, or due with it now.
        explaining = {
            key: self.outages[s[OUTAGE_KEY]]
            for key, s in items
            if s["silent"] and s.get(OUTAGE_KEY) in self.outages
        } | plan.explained
        for outage in sorted(self.outages.values(), key=lambda o: o.start_ns):
            self._follow(outage, explaining, plan, wall_ns)
        self._find(items, loose, explaining, plan, wall_ns)
        plan.outages = sorted(self.outages.values(), key=lambda o: o.start_ns)
        return plan

    def _member_of(self, state: DeviceState) -> Outage | None:
        """The open outage the device fell silent with, if any."""
        since = silent_since(state)
        settle_ns = self.policy.settle_s * 1e9
        return min(
            (o for o in self.outages.values() if since <= o.start_ns + settle_ns),
            key=lambda o: o.start_ns,
            default=None,
        )

    def _heard(
        self,
        items: list[tuple[bytes, DeviceState]],
        ref_ns: int,
        skip: Container[bytes] = (),
    ) -> int:
        since = ref_ns - self.policy.window_s * 1e9
        return sum(
            1
            for key, s in items
            if s.get("last_seen_ns") is not None
            and s["last_seen_ns"] >= since
            and key not in skip
        )

    def _due(self, items: list[tuple[bytes, DeviceState]], wall_ns: int) -> list[bytes]:
        limit = self.policy.silent_after_s
        return [key for key, s in items if due_for_silence(s, wall_ns, limit)]

    def _find(
        self,
        items: list[tuple[bytes, DeviceState]],
        due: list[bytes],
        explaining: dict[bytes, Outage],
        plan: ScanPlan,
        wall_ns: int,
    ) -> None:
        """Judge the devices due that no open outage explains: one by one, or
        together as a new outage. The feed they are a share of leaves out the
        devices an open outage explains: those were not heard when these fell
        silent."""
        heard = self._heard(items, wall_ns, explaining)
        states = dict(items)
        if not self.policy.is_outage(len(due), heard):
            # Held for settle_s: the rest of an outage falls due meanwhile.
            settled = self.policy.silent_after_s + self.policy.settle_s
            plan.silent = [
                key for key in due if due_for_silence(states[key], wall_ns, settled)
            ]
            return
        start_ns = max(states[key]["last_seen_ns"] for key in due)
        scan_ns = int(self.policy.scan_s * 1e9)
        # Rounded to the scan: the same outage found again (after a restart
        # before the marks were written) gets the same id.
        ident = warning_id(OUTAGE_RULE, self.subject, start_ns // scan_ns * scan_ns)
        outage = Outage(
            id=ident, start_ns=start_ns, devices=len(due), heard=heard, found_ns=wall_ns
        )
        self.outages[ident] = outage
        log.warning(
            "feed outage warning=%s feed=%s devices=%d heard=%d silent_s=%.0f",
            ident,
            self.feed,
            len(due),
            heard,
            (wall_ns - start_ns) / 1e9,
        )
        plan.explained |= dict.fromkeys(due, outage)
        plan.opened = outage

    def _follow(
        self,
        outage: Outage,
        explaining: dict[bytes, Outage],
        plan: ScanPlan,
        wall_ns: int,
    ) -> None:
        """Keep ``outage`` open while its devices still silent are an outage
        of the feed it was found in (``outage.heard``), or resolve it."""
        silent = [key for key, o in explaining.items() if o.id == outage.id]
        heard = outage.heard
        if self.policy.is_outage(len(silent), heard):
            return
        del self.outages[outage.id]
        self._resolved.add(outage.id)
        for key in silent:
            plan.explained.pop(key, None)
        log.info(
            "feed outage over warning=%s feed=%s still_silent=%d heard=%d "
            "silent_s=%.0f",
            outage.id,
            self.feed,
            len(silent),
            heard,
            (wall_ns - outage.start_ns) / 1e9,
        )
        plan.resume += silent
        plan.resolved.append(outage)

    def _rebuild(self, items: list[tuple[bytes, DeviceState]]) -> None:
        """The outages whose marks the table holds, after a restart."""
        marks = Counter(
            (s[OUTAGE_KEY], s.get(OUTAGE_START_KEY))
            for _, s in items
            if s["silent"]
            and s.get(OUTAGE_KEY)
            and s[OUTAGE_KEY] not in self.outages
            and s[OUTAGE_KEY] not in self._resolved
        )
        for (ident, start_ns), devices in sorted(marks.items(), key=_start):
            if start_ns is None:
                continue
            # The feed it was found in, as near as the table tells: the
            # devices heard in the window before its start but those an
            # earlier outage explains.
            earlier = {
                key
                for key, s in items
                if s["silent"]
                and s.get(OUTAGE_KEY) != ident
                and (s.get(OUTAGE_START_KEY) or start_ns) < start_ns
            }
            heard = self._heard(items, start_ns, earlier)
            log.info(
                "feed outage resumed warning=%s devices=%d heard=%d",
                ident,
                devices,
                heard,
            )
            self.outages[ident] = Outage(
                id=ident,
                start_ns=start_ns,
                devices=devices,
                heard=heard,
                found_ns=start_ns,
            )

    @property
    def subject(self) -> str:
        return f"feed/{self.feed}"


def _start(mark: tuple[tuple[str, int | None], int]) -> int:
    return mark[0][1] or 0


def explained(state: DeviceState, outage: Outage) -> DeviceState:
    """The device's state marked silent, its silence explained by ``outage``."""
    return {
        **state,
        "silent": True,
        OUTAGE_KEY: outage.id,
        OUTAGE_START_KEY: outage.start_ns,
    }


def resumed(state: DeviceState, wall_ns: int) -> DeviceState:
    """The device's state after its outage ended: silence counts from now."""
    return {
        **state,
        "silent": False,
        OUTAGE_KEY: None,
        OUTAGE_START_KEY: None,
        SILENCE_FROM_KEY: wall_ns,
    }


def feed_warning(
    outage: Outage,
    *,
    feed: str,
    authority: str,
    silent_after_s: float,
    now: datetime,
    resolved: bool = False,
) -> WarningRecord:
    """The feed warning of ``outage`` issued at ``now`` (wall clock): its
    opening, or with ``resolved`` (data returned) its resolution, as the rule
    engine would emit them."""
    start = datetime.fromtimestamp(outage.start_ns / 1e9, tz=UTC)
    opened = datetime.fromtimestamp(outage.found_ns / 1e9, tz=UTC)
    history = [
        AuditEntry(
            at=opened,
            status=WarningStatus.OPEN,
            by=WORKER_ACTOR,
            comment=f"{outage.devices} of {outage.heard} devices silent at once",
        )
    ]
    status = WarningStatus.OPEN
    valid_until = now + OUTAGE_VALID_FOR
    if resolved:
        status, valid_until = WarningStatus.RESOLVED, now
        history.append(
            AuditEntry(
                at=now,
                status=status,
                by=WORKER_ACTOR,
                comment="data arrives again from most devices",
                from_status=WarningStatus.OPEN,
            )
        )
    item = WarningItem(
        observed=(
            f"{outage.devices} of the {outage.heard} devices heard from in the "
            f"hour before went silent at once (none for {silent_after_s:.0f} s)"
        ),
        expected="readings from each device, through the broker and gateway",
        observed_value=float(outage.devices),
        expected_value=0.0,
        unit="devices",
        evidence=None,
        action=OUTAGE_ACTION,
    )
    return WarningRecord(
        id=outage.id,
        rule_id=OUTAGE_RULE,
        title="Feed outage: many devices silent at once",
        level=OUTAGE_LEVEL,
        colour=OUTAGE_LEVEL.colour,
        status=status,
        scope=WarningScope(
            kind=ScopeKind.FEED, id=feed, name=f"readings feed of worker {feed}"
        ),
        start_time=start,
        detection_time=opened,
        issue_time=now,
        valid_until=valid_until,
        resolved_time=now if resolved else None,
        items=[item],
        enterprise_id=ANY,
        enterprise_name=None,
        device_id=ANY,
        metric=None,
        district=None,
        grid=None,
        officer=None,
        authority=authority,
        history=history,
        levels=[
            LevelEntry.model_validate(
                {"level": OUTAGE_LEVEL, "from": start, "reason": "feed outage"}
            )
        ],
    )
