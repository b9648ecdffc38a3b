"""What the scoring agent does with one reading, without Kafka or Faust.

For each metric of a reading: drop it if it is not newer than the last one of
its series (a redelivery, a retained message or a late arrival must not be
counted twice), turn counters into consumption rates, score the value, and
hand the resulting observation to the rules. All state lives in one
JSON-compatible dict per device, which the worker keeps in a Faust table.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from influxdb_client.client.write.point import Point
from pydantic import BaseModel

from riskwatch.contracts import METRICS, Metric, Observation, ReadingRecord
from riskwatch.registry import Enterprise
from stream_jobs.counters import counter_increase, rate_per_hour
from stream_jobs.detectors import new_state, score_value
from stream_jobs.storage import derived_point, reading_tags

log = logging.getLogger(__name__)

DeviceState = dict[str, Any]


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
    counter_events: list[str] = field(default_factory=list)


def new_device_state() -> DeviceState:
    return {
        "series": {},
        "counters": {},
        "rules": {},
        "last_ts": None,
        "silent": False,
        "expired": False,
    }


def process_reading(
    record: ReadingRecord,
    state: DeviceState | None,
    enterprise: Enterprise | None,
    rules: Rules,
) -> Outcome:
    """Score every metric of ``record`` and evaluate the rules on it."""
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
    for measurement in record.metrics:
        metric = measurement.metric
        series = current["series"].get(metric.value) or new_state()
        counter = METRICS[metric].counter
        if series["last_ts"] is not None and record.ts_ns <= series["last_ts"]:
            outcome.duplicates += 1
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
        series, scored = score_value(series, metric, value, record.ts_ns)
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
        )
        outcome.observations.append(observation)
        _evaluate(current, observation, enterprise, rules, outcome)
    last = current["last_ts"]
    current["last_ts"] = record.ts_ns if last is None else max(last, record.ts_ns)
    # When it reached the gateway (wall clock): silence is judged on arrival.
    current["last_seen_ns"] = record.received_ns
    current["silent"] = False
    current["expired"] = False
    return outcome


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
