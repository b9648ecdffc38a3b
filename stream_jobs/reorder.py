"""Event time per device: a bounded reorder buffer held until the watermark,
with the device's clock checked against the gateway's.

Readings of one device can reach the worker out of their timestamp order: a
QoS 1 redelivery after a reconnect, two gateways of a shared subscription
producing the same device's messages a moment apart, a device flushing a
short backlog while it also sends live readings. The detectors and the rules
need each series in timestamp order, and a warning's start time is only right
if the reading that started the condition was evaluated where it belongs.

So the scoring agent does not apply a reading when it arrives. It puts it in
the device's *reorder buffer* (the ``reorder`` entry of the device's state in
the changelog-backed table, so a restart loses nothing) and releases, in
timestamp order, the readings the device's *watermark* has passed: the
latest device time seen from the device minus ``lateness``. A reading that
arrives out of order by up to ``lateness`` of device time is therefore
scored and evaluated in its place.

The watermark does not trust one reading's clock. Every reading also carries
when it reached the gateway (``received_ns``, NTP time), and the device's
clock offset (device minus gateway) is measured over its last
``CLOCK_READINGS`` arrivals when they agree (:func:`stream_jobs.clock.measure`:
device time and gateway time advanced alike over them). A reading advances
the watermark at most to the device time the gateway's clock projects for it,
``received + offset + CLOCK_TOLERANCE_NS``. One reading 290 s in the future
(the gateway accepts 300 s) is held until the device's time reaches it and is
evaluated there; the readings after it are not made late by it.

A clock that *steps* (the measured offset moves by more than the lateness,
at least ``CLOCK_TOLERANCE_NS``, and the last ``CLOCK_READINGS`` readings
agree on the new one) re-bases the device's event time: a reading's event
time is its device time plus the device's ``shift``. A step back of D whose
readings would be too late adds D to the shift, so the readings of the
stepped clock continue where the old ones ended instead of being too late
for D; a step forward pays the shift back (never below 0; with no shift,
event time jumps forward with the clock, which makes nothing late). A delay
that grew is no step: its readings are still in device-time order, and the
offset trusted only falls by a step (delays only make offsets smaller), so
the lateness, the delay variation the operator allows, is never mistaken
for a clock. While a step back is being confirmed, its first readings
(older than what the device already applied) are held aside as *suspects*;
the confirmation re-bases them too, and a reading on the old clock instead
releases them as they are. Observations and warnings carry the event time;
InfluxDB stores each reading at its own device time, and the device's clock
warning (``clock_skew_above``) is measured on device time.

A device that goes quiet does not keep its last readings forever: the
worker's silence scan releases them once nothing has arrived from it for
``lateness`` of wall time (:func:`drain` with the scan's time), up to the
device time the gateway's clock projects for that moment, so a reading from
the future stays held until its time; before a silence is judged, everything
is released.

The buffer is bounded in readings and in bytes (the JSON size of its
entries, each a reading without the device's ids). When a reading would
overflow it, the oldest readings are released before the watermark reaches
them (:attr:`Admission.overflow`). They are evaluated; a reading that
arrives later with an older time than one of them cannot be placed and is
too late (stored, not evaluated, reported as such by the worker).

A reading with the same device time as one held is a repeat when it has the
same values (dropped, :attr:`Admission.duplicate`) and a *conflict* when a
metric's value differs (:attr:`Admission.conflict`): its conflicting metrics
are taken out, the first value stays.

Nothing here scores or evaluates: :func:`stream_jobs.processing.process_arrival`
applies what :func:`admit` releases. ``lateness`` 0 releases each reading as
it arrives and keeps no buffer (the clock is still followed, so that a step
re-bases event time).
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from riskwatch.contracts import NS_PER_S, ReadingRecord
from stream_jobs.clock import measure

log = logging.getLogger(__name__)

REORDER_KEY = "reorder"
"""The device-state key of the buffer: ``{"readings": [{"ts": <event time>,
"bytes", "record": <the reading without v, enterprise and device>}, ...]
(oldest first), "bytes": <sum>, "max_ts": <the watermark's latest event time>,
"full": <an overflow was logged and the buffer has not drained since>,
"device": [<enterprise>, <device>], "clock": {"window": [[ts_ns,
received_ns], ...], "offset": <device minus gateway, ns, or None>, "shift":
<ns added to device time>}, "suspects": [<entries held aside>]}``. Entries
written before the clock was followed hold the whole reading and no
``device``; they are read alike."""

CLOCK_READINGS = 3
"""Consecutive arrivals whose offsets must agree before the device's clock
offset is taken (and a step of it believed)."""

CLOCK_TOLERANCE_NS = 10 * NS_PER_S
"""How far a reading may be ahead of the device time the gateway's clock
projects and still advance the watermark, and the least move of the
measured offset that is a step (it is the lateness when that is longer):
network jitter is well under a second, and a step of less than this makes
at most this much of device time late."""

DeviceState = dict[str, Any]
Entry = dict[str, Any]


@dataclass(frozen=True)
class ReorderPolicy:
    """How long and how much the buffer holds.

    Attributes:
        lateness_ns: a reading is held until the device's latest time is this
            far past it (nanoseconds of device time); 0 holds nothing.
        max_readings: at most this many readings held per device.
        max_bytes: at most this many bytes (JSON) held per device; it is
            part of the device's table entry, which Kafka limits to 1 MiB.
    """

    lateness_ns: int = 120 * NS_PER_S
    max_readings: int = 2048
    max_bytes: int = 262_144

    @classmethod
    def of(
        cls, lateness_s: float, max_readings: int = 2048, max_bytes: int = 262_144
    ) -> ReorderPolicy:
        """The policy from settings in seconds.

        >>> ReorderPolicy.of(2.5).lateness_ns
        2500000000
        """
        return cls(round(lateness_s * NS_PER_S), max_readings, max_bytes)


@dataclass(frozen=True)
class Timed:
    """A reading released for evaluation, with its event time (its device
    time plus the device's shift when it was taken)."""

    record: ReadingRecord
    ts_ns: int


@dataclass(frozen=True)
class Conflict:
    """A reading with the same device time as one already taken, and another
    value for some metric: those metrics of it are refused.

    Attributes:
        record: the refused reading as it arrived.
        metrics: ``(metric, value kept, value refused)`` for each conflict.
    """

    record: ReadingRecord
    metrics: tuple[tuple[str, float, float], ...]

    @property
    def reason(self) -> str:
        """Why it is refused, for its dead letter (field ``ts``).

        >>> from riskwatch.contracts import Measurement, Metric
        >>> r = ReadingRecord(enterprise="E", device="D", ts_ns=0, received_ns=0,
        ...     metrics=[Measurement(metric=Metric("pressure_mpa"), value=2.0)])
        >>> reason = Conflict(r, (("pressure_mpa", 1.0, 2.0),)).reason
        >>> reason.endswith("ts (1970-01-01T00:00:00Z): pressure_mpa 2 here, 1 kept")
        True
        """
        values = ", ".join(
            f"{metric} {refused:g} here, {kept:g} kept"
            for metric, kept, refused in self.metrics
        )
        return (
            "conflicts with the reading already taken at this ts "
            f"({format_ts(self.record.ts_ns)}): {values}"
        )


@dataclass
class Admission:
    """What :func:`admit` decided about one arriving reading.

    Attributes:
        state: the device's state with the buffer updated.
        release: readings to apply now, in event-time order (the new one
            among them when the watermark has already passed it).
        duplicate: the reading is already held (the same time and values):
            dropped.
        overflow: how many of ``release`` left the buffer early because it
            was full.
        conflict: some metric of it has another value than the reading held
            at the same device time; those metrics were taken out (the rest,
            if any, is held as usual).
    """

    state: DeviceState
    release: list[Timed] = field(default_factory=list)
    duplicate: bool = False
    overflow: int = 0
    conflict: Conflict | None = None


def held(state: DeviceState | None) -> int:
    """How many readings the device's buffer holds (suspects included).

    >>> held({"reorder": {"readings": [{"ts": 1}], "suspects": []}}), held(None)
    (1, 0)
    """
    buffer = (state or {}).get(REORDER_KEY) or {}
    return len(buffer.get("readings") or []) + len(buffer.get("suspects") or [])


def watermark(state: DeviceState | None, policy: ReorderPolicy) -> int | None:
    """The event time up to which the device's readings are released."""
    buffer = (state or {}).get(REORDER_KEY) or {}
    latest = buffer.get("max_ts")
    return None if latest is None else int(latest) - policy.lateness_ns


def shift(state: DeviceState | None) -> int:
    """What the device's clock steps back added to its device time (ns)."""
    buffer = (state or {}).get(REORDER_KEY) or {}
    return int((buffer.get("clock") or {}).get("shift") or 0)


def admit(
    state: DeviceState, record: ReadingRecord, policy: ReorderPolicy
) -> Admission:
    """Take one arriving reading into the device's buffer.

    Args:
        state: the device's state (not modified).
        record: the reading as it arrived.
        policy: lateness and bounds.

    Returns:
        The new state and what to apply now.
    """
    buffer = dict(state.get(REORDER_KEY) or {})
    entries: list[Entry] = list(buffer.get("readings") or [])
    suspects: list[Entry] = list(buffer.get("suspects") or [])
    fresh, conflict = _screen(entries + suspects, record)
    if fresh is None:
        return Admission(state=state, duplicate=conflict is None, conflict=conflict)
    mark, last = watermark(state, policy), state.get("last_ts")
    clock, step = _follow(buffer.get("clock"), fresh, policy, (mark, last))
    buffer.update(clock=clock, device=[record.enterprise, record.device])
    if step:
        entries, suspects = _rebase(entries, suspects, clock, step), []
        _log_step(fresh, step, clock)
    entry = _entry(fresh, fresh.ts_ns + clock["shift"])
    behind = clock["offset"] is not None and (
        fresh.ts_ns - fresh.received_ns < clock["offset"] - _step_ns(policy)
    )
    release: list[Entry] = []
    if suspects and not behind:
        # On the device's known clock: the readings held aside were delayed,
        # not a step. They go as they are, before it.
        release, suspects = suspects, []
    if behind and policy.lateness_ns > 0 and _too_late(entry["ts"], mark, last):
        # Too late as it stands; the start of a step back, perhaps: held
        # aside until the next arrivals tell.
        suspects.append(entry)
        if len(suspects) >= CLOCK_READINGS:
            release.append(suspects.pop(0))
        buffer.update(suspects=suspects)
        return _admitted(state, buffer, release, conflict)
    buffer.update(suspects=suspects)
    if policy.lateness_ns <= 0:
        return _admitted(state, buffer, [*release, entry], conflict)
    out, overflow = _hold(buffer, entries, entry, fresh, policy)
    admission = _admitted(state, buffer, [*release, *out], conflict)
    admission.overflow = overflow
    return admission


def _screen(
    entries: list[Entry], record: ReadingRecord
) -> tuple[ReadingRecord | None, Conflict | None]:
    """``record`` without the metrics already held for its device time (None
    if that leaves none), and the conflict of those held with another value."""
    taken = _metrics_at(entries, record.ts_ns)
    fresh = [m for m in record.metrics if m.metric.value not in taken]
    conflicts = tuple(
        (m.metric.value, taken[m.metric.value], m.value)
        for m in record.metrics
        if m.metric.value in taken and taken[m.metric.value] != m.value
    )
    conflict = Conflict(record, conflicts) if conflicts else None
    if not fresh:
        if conflict is None:
            log.debug(
                "duplicate reading dropped device=%s ts_ns=%d",
                record.device,
                record.ts_ns,
            )
        return None, conflict
    if len(fresh) < len(record.metrics):
        return record.model_copy(update={"metrics": fresh}), conflict
    return record, conflict


def _hold(
    buffer: dict[str, Any],
    entries: list[Entry],
    entry: Entry,
    record: ReadingRecord,
    policy: ReorderPolicy,
) -> tuple[list[Entry], int]:
    """Insert ``entry``, move the watermark, and take out what it passed or
    the bounds push out (``buffer`` updated); those, and how many of them
    the bounds pushed."""
    # After readings of the same time already held: arrival order among equals.
    entries.insert(bisect.bisect_right([e["ts"] for e in entries], entry["ts"]), entry)
    clock = buffer["clock"]
    # The gateway's clock bounds how far one reading moves the watermark.
    cap = (
        record.received_ns
        + (clock["offset"] or 0)
        + clock["shift"]
        + CLOCK_TOLERANCE_NS
    )
    previous = buffer.get("max_ts")
    latest = min(int(entry["ts"]), cap)
    latest = latest if previous is None else max(int(previous), latest)
    ready = bisect.bisect_right([e["ts"] for e in entries], latest - policy.lateness_ns)
    kept = sum(int(e["bytes"]) for e in entries[ready:])
    cut = ready
    while cut < len(entries) and (
        len(entries) - cut > policy.max_readings or kept > policy.max_bytes
    ):
        kept -= int(entries[cut]["bytes"])
        cut += 1
    overflow = cut - ready
    out, entries = entries[:cut], entries[cut:]
    full = bool(buffer.get("full"))
    if overflow and not full:
        log.warning(
            "reorder buffer full enterprise=%s device=%s held=%d bytes=%d "
            "max_readings=%d max_bytes=%d: oldest readings released before "
            "the watermark; a later reading older than them will be too late",
            record.enterprise,
            record.device,
            len(entries),
            kept,
            policy.max_readings,
            policy.max_bytes,
        )
    buffer.update(
        readings=entries,
        bytes=kept,
        max_ts=latest,
        full=(full or overflow > 0) and bool(entries),
    )
    return out, overflow


def due(state: DeviceState | None, now_ns: int) -> int:
    """How many held readings :func:`drain` at gateway time ``now_ns`` would
    release: those the device's clock has passed by then, as the gateway's
    clock projects it."""
    buffer = (state or {}).get(REORDER_KEY) or {}
    times = [e["ts"] for e in buffer.get("readings") or []]
    return bisect.bisect_right(times, _projected(buffer, now_ns))


def drain(
    state: DeviceState, now_ns: int | None = None
) -> tuple[DeviceState, list[Timed]]:
    """Release what the device's buffer holds, oldest first: the device went
    quiet, so no reading is coming that could go before them.

    Args:
        state: the device's state (not modified).
        now_ns: the gateway time of the quiet spell: only the readings the
            device's clock has passed by then go (:func:`due`); a reading
            from the future, and the suspects of a step, stay. None: all.
    """
    buffer = dict(state.get(REORDER_KEY) or {})
    entries = list(buffer.get("readings") or [])
    suspects = list(buffer.get("suspects") or [])
    if now_ns is None:
        out, entries, suspects = sorted(suspects, key=_ts) + entries, [], []
    else:
        cut = due(state, now_ns)
        out, entries = entries[:cut], entries[cut:]
    if not out:
        return state, []
    buffer.update(
        readings=entries,
        suspects=suspects,
        bytes=sum(int(e["bytes"]) for e in entries),
        full=bool(buffer.get("full")) and bool(entries),
    )
    return {**state, REORDER_KEY: buffer}, _timed(buffer, out)


def _admitted(
    state: DeviceState,
    buffer: dict[str, Any],
    out: list[Entry],
    conflict: Conflict | None,
) -> Admission:
    return Admission(
        state={**state, REORDER_KEY: buffer},
        release=_timed(buffer, out),
        conflict=conflict,
    )


def _follow(
    clock: dict[str, Any] | None,
    record: ReadingRecord,
    policy: ReorderPolicy,
    applied: tuple[int | None, int | None],
) -> tuple[dict[str, Any], int]:
    """The device's clock state after ``record``, and the step of its offset
    this reading confirmed (0: none).

    A measured offset more than the step (:func:`_step_ns`) below the one
    trusted is a step back only when the reading would be too late by its
    event time now (``applied``: the watermark and the last event time
    applied); a delay that grew leaves device time in order and needs none.
    More than the step above it pays back the shift, if there is one. Any
    other measurement only raises the offset trusted: delays only ever make
    a reading's offset smaller.
    """
    new, measured = measure(clock, record.ts_ns, record.received_ns, CLOCK_READINGS)
    trusted: int | None = new.get("offset")
    shift_ns = int(new.get("shift") or 0)
    step = 0
    if measured is not None:
        offset = round(measured * NS_PER_S)
        limit = _step_ns(policy)
        if trusted is not None and (
            (offset < trusted - limit and _too_late(record.ts_ns + shift_ns, *applied))
            or (offset > trusted + limit and shift_ns > 0)
        ):
            step = offset - trusted
            # Back: event time carries on where it was. Forward: the shift is
            # paid back (event time carries on too, until it is gone).
            shift_ns = max(0, shift_ns - step)
        if trusted is None or step or offset > trusted:
            trusted = offset
    new.update(offset=trusted, shift=shift_ns)
    return new, step


def _step_ns(policy: ReorderPolicy) -> int:
    """How far the offset must move to be a step of the clock: more than the
    lateness, the delay variation the buffer absorbs anyway."""
    return max(policy.lateness_ns, CLOCK_TOLERANCE_NS)


def _too_late(event: int, mark: int | None, last: int | None) -> bool:
    """A reading at ``event`` would be applied at once and found too late."""
    return last is not None and event <= last and (mark is None or event <= mark)


def _rebase(
    entries: list[Entry], suspects: list[Entry], clock: dict[str, Any], step: int
) -> list[Entry]:
    """Held readings nearer the new offset than the old one are of the stepped
    clock: their event time is taken again with the new shift. The suspects
    join the others."""
    new = int(clock["offset"])
    old = new - step
    rebased = []
    for entry in [*entries, *suspects]:
        data = entry["record"]
        offset = int(data["ts_ns"]) - int(data["received_ns"])
        if abs(offset - new) < abs(offset - old):
            rebased.append({**entry, "ts": int(data["ts_ns"]) + int(clock["shift"])})
        else:
            rebased.append(entry)
    return sorted(rebased, key=_ts)


def _log_step(record: ReadingRecord, step: int, clock: dict[str, Any]) -> None:
    log.warning(
        "device clock stepped enterprise=%s device=%s step_s=%.0f offset_s=%.0f "
        "shift_s=%.0f: event time re-based at ts=%s",
        record.enterprise,
        record.device,
        step / NS_PER_S,
        clock["offset"] / NS_PER_S,
        clock["shift"] / NS_PER_S,
        format_ts(record.ts_ns),
    )


def _projected(buffer: dict[str, Any], now_ns: int) -> int:
    """The event time the device's clock has reached at gateway time
    ``now_ns``, by its measured offset (none measured: the gateway's)."""
    clock = buffer.get("clock") or {}
    offset = clock.get("offset") or 0
    return int(now_ns + offset + int(clock.get("shift") or 0) + CLOCK_TOLERANCE_NS)


def _entry(record: ReadingRecord, event: int) -> Entry:
    # The device's ids are the buffer's: an entry is the rest of the reading.
    data = record.model_dump(
        mode="json", exclude={"v", "enterprise", "device"}, exclude_defaults=True
    )
    size = len(
        record.model_dump_json(
            exclude={"v", "enterprise", "device"}, exclude_defaults=True
        )
    )
    return {"ts": event, "bytes": size, "record": data}


def _timed(buffer: dict[str, Any], entries: list[Entry]) -> list[Timed]:
    ids = buffer.get("device")
    base = {"enterprise": ids[0], "device": ids[1]} if ids else {}
    return [
        Timed(ReadingRecord.model_validate({**base, **e["record"]}), int(e["ts"]))
        for e in entries
    ]


def _metrics_at(entries: list[Entry], ts_ns: int) -> dict[str, float]:
    """The metric values held for device time ``ts_ns``."""
    values: dict[str, float] = {}
    for entry in entries:
        data = entry["record"]
        if int(data["ts_ns"]) == ts_ns:
            for m in data["metrics"]:
                values.setdefault(m["metric"], float(m["value"]))
    return values


def format_ts(ts_ns: int) -> str:
    """A device time for a log line or a reason: UTC, to the millisecond.

    >>> format_ts(1_800_000_000_250_000_000), format_ts(0)
    ('2027-01-15T08:00:00.250Z', '1970-01-01T00:00:00Z')
    """
    moment = datetime.fromtimestamp(ts_ns // NS_PER_S, UTC).replace(
        microsecond=ts_ns % NS_PER_S // 1000
    )
    spec = "seconds" if moment.microsecond == 0 else "milliseconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def _ts(entry: Entry) -> int:
    return int(entry["ts"])
