"""Event time per device: a bounded reorder buffer held until the watermark.

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
scored and evaluated in its place. A device that goes quiet does not keep its
last readings forever: the worker's silence scan releases them once nothing
has arrived from it for ``lateness`` of wall time (:func:`drain`).

The buffer is bounded in readings and in bytes (its JSON size). When a
reading would overflow it, the oldest readings are released before the
watermark reaches them (:attr:`Admission.overflow`); order is then kept only
among the readings still held, never lost.

Nothing here scores or evaluates: :func:`stream_jobs.processing.process_arrival`
applies what :func:`admit` releases. ``lateness`` 0 releases each reading as
it arrives and keeps no buffer: the behaviour before event time was handled.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field
from typing import Any

from riskwatch.contracts import NS_PER_S, ReadingRecord

log = logging.getLogger(__name__)

REORDER_KEY = "reorder"
"""The device-state key of the buffer: ``{"readings": [{"ts", "bytes",
"record"}, ...] (oldest first), "bytes": <sum>, "max_ts": <latest device time
seen>, "full": <an overflow was logged and the buffer has not drained
since>}``."""

DeviceState = dict[str, Any]


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
    max_readings: int = 256
    max_bytes: int = 65_536

    @classmethod
    def of(
        cls, lateness_s: float, max_readings: int = 256, max_bytes: int = 65_536
    ) -> ReorderPolicy:
        """The policy from settings in seconds.

        >>> ReorderPolicy.of(2.5).lateness_ns
        2500000000
        """
        return cls(round(lateness_s * NS_PER_S), max_readings, max_bytes)


@dataclass
class Admission:
    """What :func:`admit` decided about one arriving reading.

    Attributes:
        state: the device's state with the buffer updated.
        release: readings to apply now, in timestamp order (the new one
            among them when the watermark has already passed it).
        duplicate: the reading is already held (the same time and values):
            dropped.
        overflow: how many of ``release`` left the buffer early because it
            was full.
    """

    state: DeviceState
    release: list[ReadingRecord] = field(default_factory=list)
    duplicate: bool = False
    overflow: int = 0


def held(state: DeviceState | None) -> int:
    """How many readings the device's buffer holds.

    >>> held({"reorder": {"readings": [{"ts": 1}]}}), held(None)
    (1, 0)
    """
    buffer = (state or {}).get(REORDER_KEY) or {}
    return len(buffer.get("readings") or [])


def watermark(state: DeviceState | None, policy: ReorderPolicy) -> int | None:
    """The device time up to which the device's readings are released."""
    buffer = (state or {}).get(REORDER_KEY) or {}
    latest = buffer.get("max_ts")
    return None if latest is None else int(latest) - policy.lateness_ns


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
    if policy.lateness_ns <= 0:
        return Admission(state=state, release=[record])
    buffer = dict(state.get(REORDER_KEY) or {})
    entries: list[dict[str, Any]] = list(buffer.get("readings") or [])
    data = record.model_dump(mode="json")
    if any(_same_reading(entry["record"], data) for entry in entries):
        log.debug(
            "duplicate reading dropped device=%s ts_ns=%d", record.device, record.ts_ns
        )
        return Admission(state=state, duplicate=True)
    size = len(record.model_dump_json())
    times = [entry["ts"] for entry in entries]
    # After readings of the same time already held: arrival order among equals.
    entries.insert(
        bisect.bisect_right(times, record.ts_ns),
        {"ts": record.ts_ns, "bytes": size, "record": data},
    )
    total = int(buffer.get("bytes") or 0) + size
    latest = max(int(buffer.get("max_ts") or record.ts_ns), record.ts_ns)
    mark = latest - policy.lateness_ns
    ready = bisect.bisect_right([entry["ts"] for entry in entries], mark)
    kept = total - sum(entry["bytes"] for entry in entries[:ready])
    cut = ready
    while cut < len(entries) and (
        len(entries) - cut > policy.max_readings or kept > policy.max_bytes
    ):
        kept -= entries[cut]["bytes"]
        cut += 1
    overflow = cut - ready
    out, entries = entries[:cut], entries[cut:]
    total = kept
    full = bool(buffer.get("full"))
    if overflow and not full:
        log.warning(
            "reorder buffer full enterprise=%s device=%s held=%d bytes=%d "
            "max_readings=%d max_bytes=%d: oldest readings released before "
            "the watermark",
            record.enterprise,
            record.device,
            len(entries),
            total,
            policy.max_readings,
            policy.max_bytes,
        )
    full = (full or overflow > 0) and bool(entries)
    buffer.update(readings=entries, bytes=total, max_ts=latest, full=full)
    return Admission(
        state={**state, REORDER_KEY: buffer},
        release=[ReadingRecord.model_validate(entry["record"]) for entry in out],
        overflow=overflow,
    )


def drain(state: DeviceState) -> tuple[DeviceState, list[ReadingRecord]]:
    """Release everything the device's buffer holds, oldest first: the device
    went quiet, so no reading is coming that could go before them."""
    buffer = dict(state.get(REORDER_KEY) or {})
    entries = list(buffer.get("readings") or [])
    if not entries:
        return state, []
    buffer.update(readings=[], bytes=0, full=False)
    records = [ReadingRecord.model_validate(entry["record"]) for entry in entries]
    return {**state, REORDER_KEY: buffer}, records


def _same_reading(held_record: dict[str, Any], data: dict[str, Any]) -> bool:
    """The same reading delivered again: same time and values, whenever it
    reached the gateway."""
    return bool(
        held_record["ts_ns"] == data["ts_ns"]
        and held_record["metrics"] == data["metrics"]
    )
