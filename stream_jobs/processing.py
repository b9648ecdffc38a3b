"""What the scoring agent does with one reading, without Kafka or Faust.

A reading as it arrives goes to :func:`process_arrival`: the device's reorder
buffer (:mod:`stream_jobs.reorder`) holds it until the device's watermark
passes it, and releases readings in timestamp order to
:func:`process_reading`. For each metric of a released reading: drop it if it
is not newer than the last one of its series (an exact repeat is a
duplicate; an older one came too late to be placed, beyond the lateness),
turn counters into consumption rates, score the value, and hand the
resulting observation to the rules. The reading also feeds the device's
clock measurement (:mod:`stream_jobs.clock`), and a metric the device used to
send but left out for a while gets a ``stale`` observation. All state lives
in one dict of plain values per device (the detector states as bytes), which
the worker keeps in a Faust table (:mod:`stream_jobs.state_codec`).

The worker takes readings in batches (:func:`process_batch`). Each device's
readings are still handled one after another by the same code, written as a
generator that yields where it needs a detector score; the batch runs all its
devices side by side and answers their pending scores with one call of the
detectors (numpy across the devices, :func:`score_batch`). The functions for
one reading (:func:`process_arrival`, :func:`process_reading`, ...) run that
code with each score on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from influxdb_client.client.write.point import Point
from pydantic import BaseModel

from riskwatch.contracts import (
    METRICS,
    NS_PER_S,
    Measurement,
    Metric,
    Observation,
    ReadingRecord,
)
from riskwatch.registry import Enterprise
from stream_jobs.clock import CLOCK_KEY, measure
from stream_jobs.counters import counter_increase, rate_per_hour
from stream_jobs.detectors import (
    Scored,
    SeriesState,
    new_state,
    score_batch,
    score_value,
)
from stream_jobs.reorder import (
    REORDER_KEY,
    Conflict,
    ReorderPolicy,
    Timed,
    admit,
    drain,
    format_ts,
)
from stream_jobs.storage import derived_point, reading_tags

log = logging.getLogger(__name__)

CLOCK_WINDOW = 5
"""Consecutive readings whose offsets must agree before a clock offset is
measured (``worker.clock_readings``)."""

STALE_KEY = "stale"
"""Device-state key: per metric left out, the time of its last ``stale``
observation."""

STALE_STEP_NS = 60 * NS_PER_S
"""A metric left out gets a ``stale`` observation once it is this old, and
then at most once per this much device time: a ``stale: 15m`` rule fires
within a minute of the 15 minutes, and a device that sends its metrics in
separate messages costs the rules one observation a minute per metric, not
one per message."""

APPLIED_KEY = "applied"
"""Device-state key: per metric, the value of the last reading applied (at
its series' ``last_ts``), which tells a repeat from a conflict."""

UNEVALUATED_KEY = "unevaluated"
"""Device-state key: per metric, the spell of its readings not evaluated
(``{"since_ns", "logged_ns", "count", "reason"}``, gateway times), so that a
device whose readings keep failing gives a line when it starts, one a
``REPORT_EVERY_NS`` with the count, and one with the count when it ends."""

REPORT_EVERY_NS = 600 * NS_PER_S
"""At most one ``still not evaluated`` line per metric of a device this often
(gateway time): a device whose clock stuck gives six lines an hour, not one
per reading."""

DeviceState = dict[str, Any]

# Where a device's processing needs a detector score: the series' state, the
# metric, the value and its time; answered with the new state and the score.
# A series' state, the metric, the value, its time (ns) and whether the site
# is off shift then (score_batch's off_shift).
ScoreStep = tuple[SeriesState, Metric, float, int, bool]
Steps = Generator[ScoreStep, tuple[SeriesState, Scored], "Outcome"]


class Rules(Protocol):
    def evaluate(
        self,
        observation: Observation,
        enterprise: Enterprise | None,
        state: dict[str, Any],
    ) -> tuple[dict[str, Any], Sequence[BaseModel]]: ...

    def expire(
        self, state: dict[str, Any] | None, enterprise: str, device: str
    ) -> tuple[dict[str, Any], list[str]]: ...


@dataclass
class Outcome:
    state: DeviceState
    observations: list[Observation] = field(default_factory=list)
    warnings: list[BaseModel] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    duplicates: int = 0
    # Readings with a metric older than the last one applied: too late to
    # place, stored in InfluxDB by the storage consumer but not evaluated.
    late: int = 0
    # Readings the reorder buffer released before the watermark (it was full).
    overflow: int = 0
    # Readings with another value at a time already taken: for the dead letter.
    conflicts: list[Conflict] = field(default_factory=list)
    counter_events: list[str] = field(default_factory=list)

    def add(self, other: Outcome) -> None:
        """Take over ``other``'s state and add what it found to this one."""
        self.state = other.state
        self.observations.extend(other.observations)
        self.warnings.extend(other.warnings)
        self.points.extend(other.points)
        self.duplicates += other.duplicates
        self.late += other.late
        self.overflow += other.overflow
        self.conflicts.extend(other.conflicts)
        self.counter_events.extend(other.counter_events)


def new_device_state() -> DeviceState:
    return {
        "series": {},
        "counters": {},
        "rules": {},
        "last_ts": None,
        "silent": False,
        "expired": False,
    }


def process_arrival(
    record: ReadingRecord,
    state: DeviceState | None,
    enterprise: Enterprise | None,
    rules: Rules,
    policy: ReorderPolicy,
) -> Outcome:
    """A reading as it arrives: marks the device heard from, holds the reading
    in the reorder buffer and applies what the watermark releases, oldest
    first (see :mod:`stream_jobs.reorder`)."""
    return _scored_one_by_one(_arrival(record, state, enterprise, rules, policy))


def flush(
    state: DeviceState,
    enterprise: Enterprise | None,
    rules: Rules,
    now_ns: int | None = None,
) -> Outcome:
    """Apply the readings the device's buffer still holds: it went quiet.
    With ``now_ns`` (gateway time), only those the device's clock has passed
    (:func:`stream_jobs.reorder.drain`)."""
    current, timed = drain(state, now_ns)
    return _scored_one_by_one(_apply(timed, current, enterprise, rules))


def apply_readings(
    records: Sequence[ReadingRecord],
    state: DeviceState,
    enterprise: Enterprise | None,
    rules: Rules,
) -> Outcome:
    """:func:`process_reading` on each record in turn, as one outcome."""
    timed = [Timed(record, record.ts_ns) for record in records]
    return _scored_one_by_one(_apply(timed, state, enterprise, rules))


def process_reading(
    record: ReadingRecord,
    state: DeviceState | None,
    enterprise: Enterprise | None,
    rules: Rules,
) -> Outcome:
    """Score every metric of ``record`` and evaluate the rules on it, now.

    The caller applies a device's readings in timestamp order (the reorder
    buffer does); a metric not newer than its last applied reading is not
    evaluated: dropped as a duplicate when it has the same time and value,
    refused as a conflict (:attr:`Outcome.conflicts`) when it has the same
    time and another value, else too late (:func:`_unevaluated` logs both).
    """
    timed = Timed(record, record.ts_ns)
    return _scored_one_by_one(_reading(timed, state, enterprise, rules))


def process_batch(
    records: Sequence[ReadingRecord],
    state_of: Callable[[bytes], DeviceState | None],
    enterprise_of: Callable[[str], Enterprise | None],
    rules: Rules,
    policy: ReorderPolicy | None = None,
) -> list[Outcome]:
    """What :func:`process_arrival` (with ``policy``; without, what
    :func:`process_reading`) gives for each of ``records`` in turn, the
    detectors scoring the devices' readings together.

    Args:
        state_of: a device's stored state by its key (``record.key``,
            ``<enterprise>/<device>``), None for a new device; read once per
            device.
        enterprise_of: the registry's enterprise by id.

    Returns:
        One outcome per record, in order; its state is the device's after
        that record (the last one of a device is the one to store).
    """
    outcomes: list[Outcome | None] = [None] * len(records)
    devices: dict[bytes, list[int]] = {}
    for i, record in enumerate(records):
        devices.setdefault(record.key, []).append(i)

    def device(key: bytes, indices: list[int]) -> Generator[ScoreStep, Any, None]:
        state = state_of(key)
        for i in indices:
            record = records[i]
            enterprise = enterprise_of(record.enterprise)
            outcome = yield from (
                _reading(Timed(record, record.ts_ns), state, enterprise, rules)
                if policy is None
                else _arrival(record, state, enterprise, rules, policy)
            )
            outcomes[i] = outcome
            state = outcome.state

    # Every device's pending score, answered for all of them at once: the
    # series of different devices are different series, one wave.
    pending: dict[bytes, tuple[Generator[ScoreStep, Any, None], ScoreStep]] = {}
    for key, indices in devices.items():
        steps = device(key, indices)
        step = next(steps, None)
        if step is not None:
            pending[key] = steps, step
    while pending:
        keys = list(pending)
        wave = [pending[key][1] for key in keys]
        new, scored = score_batch(
            [step[0] for step in wave],
            [step[1] for step in wave],
            [step[2] for step in wave],
            [step[3] for step in wave],
            [step[4] for step in wave],
        )
        for key, answer in zip(keys, zip(new, scored, strict=True), strict=True):
            steps = pending[key][0]
            try:
                pending[key] = steps, steps.send(answer)
            except StopIteration:
                del pending[key]
    return [outcome for outcome in outcomes if outcome is not None]


def _scored_one_by_one(steps: Steps) -> Outcome:
    """Run one device's steps, each score on its own (a batch of one)."""
    try:
        step = next(steps)
        while True:
            step = steps.send(score_value(*step))
    except StopIteration as done:
        outcome: Outcome = done.value
        return outcome


def _arrival(
    record: ReadingRecord,
    state: DeviceState | None,
    enterprise: Enterprise | None,
    rules: Rules,
    policy: ReorderPolicy,
) -> Steps:
    current = state if state is not None else new_device_state()
    seen = current.get("last_seen_ns")
    current = {
        **current,
        # When it reached the gateway (wall clock): silence is judged on arrival.
        "last_seen_ns": (
            record.received_ns if seen is None else max(seen, record.received_ns)
        ),
        "silent": False,
        "expired": False,
    }
    admission = admit(current, record, policy)
    held = admission.state
    if admission.conflict is not None:
        held = {**held}
        _refused(held, admission.conflict)
    outcome = yield from _apply(admission.release, held, enterprise, rules)
    outcome.duplicates += admission.duplicate
    outcome.overflow += admission.overflow
    if admission.conflict is not None:
        outcome.conflicts.insert(0, admission.conflict)
    return outcome


def _apply(
    records: Sequence[Timed],
    state: DeviceState,
    enterprise: Enterprise | None,
    rules: Rules,
) -> Steps:
    outcome = Outcome(state=state)
    for timed in records:
        outcome.add((yield from _reading(timed, outcome.state, enterprise, rules)))
    return outcome


def _reading(
    timed: Timed,
    state: DeviceState | None,
    enterprise: Enterprise | None,
    rules: Rules,
) -> Steps:
    # ``ts`` is the event time: the device's time plus the shift its clock
    # steps gave it (stream_jobs/reorder.py); the reading keeps its own for
    # InfluxDB and for the clock measurement.
    record, ts = timed.record, timed.ts_ns
    current: DeviceState = state if state is not None else new_device_state()
    # Shallow copies of the parts we change, so the caller's dict is untouched
    # until it stores the outcome.
    current = {
        **current,
        "series": dict(current["series"]),
        "counters": dict(current["counters"]),
        APPLIED_KEY: dict(current.get(APPLIED_KEY) or {}),
    }
    outcome = Outcome(state=current)
    tags = reading_tags(record.enterprise, record.device, enterprise)
    clock_offset = _clock(current, record, ts)
    # The registered shifts say which daily profile judges the readings.
    off_shift = enterprise is not None and enterprise.off_shift_at(
        datetime.fromtimestamp(ts / 1e9, UTC)
    )
    late = False
    conflicts: list[Measurement] = []
    for measurement in record.metrics:
        metric = measurement.metric
        series = current["series"].get(metric.value) or new_state()
        counter = METRICS[metric].counter
        if series["last_ts"] is not None and ts <= series["last_ts"]:
            found = _not_newer(current, timed, measurement, series["last_ts"])
            late |= found == "late"
            outcome.duplicates += found == "repeat"
            if found == "conflict":
                conflicts.append(measurement)
            continue
        current[APPLIED_KEY][metric.value] = measurement.value
        _evaluated(current, record, metric.value)
        value: float | None = measurement.value
        fields: dict[str, float] = {}
        if counter:
            value = _counter_rate(current, metric, measurement.value, ts, outcome)
            if value is None:
                # First reading of a register: no rate yet, but the series
                # has seen this timestamp.
                current["series"][metric.value] = {**series, "last_ts": ts}
                continue
            fields["rate_per_h"] = value
        if value is None:
            continue
        series, scored = yield series, metric, value, ts, off_shift
        current["series"][metric.value] = series
        fields["score"] = scored.score
        # Stored at the reading's own time, beside its value in InfluxDB.
        outcome.points.append(derived_point(metric.value, tags, record.ts_ns, fields))
        observation = Observation(
            enterprise=record.enterprise,
            device=record.device,
            metric=metric,
            ts_ns=ts,
            value=value,
            unit=f"{METRICS[metric].unit}/h" if counter else METRICS[metric].unit,
            rate=counter,
            score=scored.score,
            learning=scored.learning,
            findings=scored.findings,
            clock_offset_s=(
                clock_offset
                if metric.value == current[CLOCK_KEY].get("metric")
                else None
            ),
        )
        outcome.observations.append(observation)
        _evaluate(current, observation, enterprise, rules, outcome)
    outcome.late += late
    if conflicts:
        outcome.conflicts.append(_conflict(current, record, conflicts))
    if not late:
        _stale(current, record, ts, enterprise, rules, outcome)
    last = current["last_ts"]
    current["last_ts"] = ts if last is None else max(last, ts)
    # When it reached the gateway (wall clock): silence is judged on arrival.
    seen = current.get("last_seen_ns")
    current["last_seen_ns"] = (
        record.received_ns if seen is None else max(seen, record.received_ns)
    )
    current["silent"] = False
    current["expired"] = False
    return outcome


def _not_newer(
    state: DeviceState, timed: Timed, measurement: Measurement, last_ts: int
) -> Literal["late", "repeat", "conflict"]:
    """What a metric not newer than its series' last applied reading is: too
    late (reported here), a repeat of the value applied at that time, or a
    conflict with it."""
    metric = measurement.metric.value
    if timed.ts_ns < last_ts:
        _unevaluated(state, timed.record, metric, _late_reason(state, last_ts))
        return "late"
    kept = state[APPLIED_KEY].get(metric)
    # None: a redelivery onto a state from before values were kept.
    return "repeat" if kept is None or kept == measurement.value else "conflict"


def _late_reason(state: DeviceState, last_ts: int) -> str:
    """Why a reading older than its metric's last applied one is too late."""
    reason = (
        "too late: ts is before the last evaluated reading of the metric "
        f"({format_ts(last_ts)})"
    )
    if (state.get(REORDER_KEY) or {}).get("full"):
        reason += ", which a full reorder buffer released early"
    return reason


def _conflict(
    state: DeviceState, record: ReadingRecord, refused: list[Measurement]
) -> Conflict:
    """The conflict of ``refused`` with the values applied at their time,
    reported."""
    applied = state[APPLIED_KEY]
    conflict = Conflict(
        record,
        tuple((m.metric.value, applied[m.metric.value], m.value) for m in refused),
    )
    _refused(state, conflict)
    return conflict


def _refused(state: DeviceState, conflict: Conflict) -> None:
    """Report each metric of a conflicting reading as not evaluated."""
    for metric, _, _ in conflict.metrics:
        _unevaluated(state, conflict.record, metric, f"conflict: {conflict.reason}")


def _unevaluated(
    state: DeviceState, record: ReadingRecord, metric: str, reason: str
) -> None:
    """A reading of ``metric`` not evaluated: a WARNING when the device's
    spell of them starts, then one per ``REPORT_EVERY_NS`` with the count
    (a stuck clock or a long backlog must not flood the log)."""
    spells = dict(state.get(UNEVALUATED_KEY) or {})
    spell = spells.get(metric)
    now = record.received_ns
    if spell is None:
        log.warning(
            "reading not evaluated enterprise=%s device=%s metric=%s ts=%s reason=%s",
            record.enterprise,
            record.device,
            metric,
            format_ts(record.ts_ns),
            reason,
        )
        spell = {"since_ns": now, "logged_ns": now, "count": 1, "reason": reason}
    else:
        spell = {**spell, "count": int(spell["count"]) + 1, "reason": reason}
        if now - int(spell["logged_ns"]) >= REPORT_EVERY_NS:
            _spell_line("readings still not evaluated", record, metric, spell)
            spell["logged_ns"] = now
    spells[metric] = spell
    state[UNEVALUATED_KEY] = spells


def _evaluated(state: DeviceState, record: ReadingRecord, metric: str) -> None:
    """A reading of ``metric`` applied: the end of a spell of them not
    evaluated, if there was one, with its count."""
    spells = state.get(UNEVALUATED_KEY)
    if not spells or metric not in spells:
        return
    _spell_line("readings evaluated again", record, metric, spells[metric])
    state[UNEVALUATED_KEY] = {k: v for k, v in spells.items() if k != metric}


def _spell_line(
    what: str, record: ReadingRecord, metric: str, spell: dict[str, Any]
) -> None:
    log.warning(
        "%s enterprise=%s device=%s metric=%s not_evaluated=%d since=%s ts=%s "
        "reason=%s",
        what,
        record.enterprise,
        record.device,
        metric,
        spell["count"],
        format_ts(int(spell["since_ns"])),
        format_ts(record.ts_ns),
        spell["reason"],
    )


def _clock(state: DeviceState, record: ReadingRecord, ts: int) -> float | None:
    """Feed the device's clock window; its offset now, if measured. ``ts`` is
    the reading's event time (its order); the measurement is of the device's
    own time against the gateway's, whatever shift event time carries."""
    clock = state.get(CLOCK_KEY) or {}
    last = state["last_ts"]
    if last is not None and ts <= last:
        # Not in timestamp order (too late, or a repeat): it says nothing
        # about how the device's clock advances.
        state[CLOCK_KEY] = clock
        return None
    clock, offset = measure(clock, record.ts_ns, record.received_ns, CLOCK_WINDOW)
    if not clock.get("metric"):
        # One metric carries the measurement, so the device gets one clock
        # warning; the first in name order, which a device keeps sending.
        clock["metric"] = min(m.metric.value for m in record.metrics)
    state[CLOCK_KEY] = clock
    return offset


def _stale(
    state: DeviceState,
    record: ReadingRecord,
    ts: int,
    enterprise: Enterprise | None,
    rules: Rules,
    outcome: Outcome,
) -> None:
    """A ``stale`` observation for each metric the device used to send and
    has left out for at least ``STALE_STEP_NS`` (at most one per step)."""
    sent = {m.metric.value for m in record.metrics}
    marks = {k: v for k, v in (state.get(STALE_KEY) or {}).items() if k not in sent}
    for name in sorted(set(state["series"]) - sent):
        last = state["series"][name].get("last_ts")
        if last is None or ts - last < STALE_STEP_NS:
            continue
        if name in marks and ts - marks[name] < STALE_STEP_NS:
            continue
        marks[name] = ts
        metric = Metric(name)
        observation = Observation(
            enterprise=record.enterprise,
            device=record.device,
            metric=metric,
            kind="stale",
            ts_ns=ts,
            value=None,
            unit=METRICS[metric].unit,
            score=0.0,
            stale_s=(ts - last) / NS_PER_S,
        )
        outcome.observations.append(observation)
        _evaluate(state, observation, enterprise, rules, outcome)
    state[STALE_KEY] = marks


def expire(
    enterprise_id: str, device: str, state: DeviceState, rules: Rules
) -> tuple[DeviceState, list[str]]:
    """A device gone for good: the rules forget its warnings, whose ids are
    returned for the caller to expire; ``expired`` holds until it reads again."""
    rule_state, ids = rules.expire(state["rules"], enterprise_id, device)
    return {**state, "rules": rule_state, "expired": True}, ids


def silence(
    enterprise_id: str,
    device: str,
    state: DeviceState,
    now_ns: int,
    enterprise: Enterprise | None,
    rules: Rules,
) -> Outcome:
    """A device not heard from since ``state['last_ts']``: one observation per
    metric it used to send, evaluated by the rules once per silent spell."""
    current = {**state, "silent": True}
    outcome = Outcome(state=current)
    silent_s = (now_ns - state["last_ts"]) / 1e9
    metrics = sorted(set(state["series"]) | set(state["counters"]))
    for name in metrics:
        metric = Metric(name)
        observation = Observation(
            enterprise=enterprise_id,
            device=device,
            metric=metric,
            kind="silence",
            ts_ns=now_ns,
            value=None,
            unit=METRICS[metric].unit,
            score=1.0,
            silent_s=silent_s,
        )
        outcome.observations.append(observation)
        _evaluate(current, observation, enterprise, rules, outcome)
    return outcome


def _counter_rate(
    state: DeviceState, metric: Metric, register: float, ts_ns: int, outcome: Outcome
) -> float | None:
    previous = state["counters"].get(metric.value)
    state["counters"][metric.value] = {"value": register, "ts": ts_ns}
    if previous is None:
        return None
    increase, event = counter_increase(previous["value"], register)
    if event in ("reset", "rollover"):
        outcome.counter_events.append(event)
        log.info(
            "counter %s metric=%s from=%s to=%s",
            event,
            metric.value,
            previous["value"],
            register,
        )
    return rate_per_hour(increase, ts_ns - previous["ts"])


def _evaluate(
    state: DeviceState,
    observation: Observation,
    enterprise: Enterprise | None,
    rules: Rules,
    outcome: Outcome,
) -> None:
    rule_state, warnings = rules.evaluate(observation, enterprise, state["rules"])
    state["rules"] = rule_state
    outcome.warnings.extend(warnings)
