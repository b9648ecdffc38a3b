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
from typing import Any, Protocol

from influxdb_client.client.write.point import Point
from pydantic import BaseModel

from riskwatch.contracts import (
    METRICS,
    NS_PER_S,
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
from stream_jobs.reorder import ReorderPolicy, admit, drain
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

DeviceState = dict[str, Any]

# Where a device's processing needs a detector score: the series' state, the
# metric, the value and its time; answered with the new state and the score.
ScoreStep = tuple[SeriesState, Metric, float, int]
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


def flush(state: DeviceState, enterprise: Enterprise | None, rules: Rules) -> Outcome:
    """Apply every reading the device's buffer still holds: it went quiet."""
    current, records = drain(state)
    return apply_readings(records, current, enterprise, rules)


def apply_readings(
    records: Sequence[ReadingRecord],
    state: DeviceState,
    enterprise: Enterprise | None,
    rules: Rules,
) -> Outcome:
    """:func:`process_reading` on each record in turn, as one outcome."""
    return _scored_one_by_one(_apply(records, state, enterprise, rules))


def process_reading(
    record: ReadingRecord,
    state: DeviceState | None,
    enterprise: Enterprise | None,
    rules: Rules,
) -> Outcome:
    """Score every metric of ``record`` and evaluate the rules on it, now.

    The caller applies a device's readings in timestamp order (the reorder
    buffer does); a metric not newer than its last applied reading is
    dropped: as a duplicate when it has the same time, else as too late.
    """
    return _scored_one_by_one(_reading(record, state, enterprise, rules))


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
                _reading(record, state, enterprise, rules)
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
    outcome = yield from _apply(admission.release, admission.state, enterprise, rules)
    outcome.duplicates += admission.duplicate
    outcome.overflow += admission.overflow
    return outcome


def _apply(
    records: Sequence[ReadingRecord],
    state: DeviceState,
    enterprise: Enterprise | None,
    rules: Rules,
) -> Steps:
    outcome = Outcome(state=state)
    for record in records:
        outcome.add((yield from _reading(record, outcome.state, enterprise, rules)))
    return outcome


def _reading(
    record: ReadingRecord,
    state: DeviceState | None,
    enterprise: Enterprise | None,
    rules: Rules,
) -> Steps:
    current: DeviceState = state if state is not None else new_device_state()
    # Shallow copies of the parts we change, so the caller's dict is untouched
    # until it stores the outcome.
    current = {
        **current,
        "series": dict(current["series"]),
        "counters": dict(current["counters"]),
    }
    outcome = Outcome(state=current)
    tags = reading_tags(record.enterprise, record.device, enterprise)
    clock_offset = _clock(current, record)
    late = False
    for measurement in record.metrics:
        metric = measurement.metric
        series = current["series"].get(metric.value) or new_state()
        counter = METRICS[metric].counter
        if series["last_ts"] is not None and record.ts_ns <= series["last_ts"]:
            if record.ts_ns == series["last_ts"]:
                outcome.duplicates += 1
            else:
                late = True
                log.debug(
                    "reading too late, not evaluated enterprise=%s device=%s "
                    "metric=%s ts_ns=%d last_ns=%d",
                    record.enterprise,
                    record.device,
                    metric.value,
                    record.ts_ns,
                    series["last_ts"],
                )
            continue
        value: float | None = measurement.value
        fields: dict[str, float] = {}
        if counter:
            value = _counter_rate(
                current, metric, measurement.value, record.ts_ns, outcome
            )
            if value is None:
                # First reading of a register: no rate yet, but the series
                # has seen this timestamp.
                current["series"][metric.value] = {**series, "last_ts": record.ts_ns}
                continue
            fields["rate_per_h"] = value
        if value is None:
            continue
        series, scored = yield series, metric, value, record.ts_ns
        current["series"][metric.value] = series
        fields["score"] = scored.score
        outcome.points.append(derived_point(metric.value, tags, record.ts_ns, fields))
        observation = Observation(
            enterprise=record.enterprise,
            device=record.device,
            metric=metric,
            ts_ns=record.ts_ns,
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
    if not late:
        _stale(current, record, enterprise, rules, outcome)
    last = current["last_ts"]
    current["last_ts"] = record.ts_ns if last is None else max(last, record.ts_ns)
    # When it reached the gateway (wall clock): silence is judged on arrival.
    seen = current.get("last_seen_ns")
    current["last_seen_ns"] = (
        record.received_ns if seen is None else max(seen, record.received_ns)
    )
    current["silent"] = False
    current["expired"] = False
    return outcome


def _clock(state: DeviceState, record: ReadingRecord) -> float | None:
    """Feed the device's clock window; its offset now, if measured."""
    clock = state.get(CLOCK_KEY) or {}
    last = state["last_ts"]
    if last is not None and record.ts_ns <= last:
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
        if last is None or record.ts_ns - last < STALE_STEP_NS:
            continue
        if name in marks and record.ts_ns - marks[name] < STALE_STEP_NS:
            continue
        marks[name] = record.ts_ns
        metric = Metric(name)
        observation = Observation(
            enterprise=record.enterprise,
            device=record.device,
            metric=metric,
            kind="stale",
            ts_ns=record.ts_ns,
            value=None,
            unit=METRICS[metric].unit,
            score=0.0,
            stale_s=(record.ts_ns - last) / NS_PER_S,
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
