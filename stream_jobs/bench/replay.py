"""Offline replay: score a CSV series with the worker's own code path.

Each row becomes a :class:`~riskwatch.contracts.ReadingRecord` of one device
and goes through :func:`stream_jobs.processing.process_reading`, the function
the Faust scoring agent calls for every reading: the same duplicate check,
counter-to-rate conversion, detectors (``stream_jobs.detectors``) and rules.
Only Kafka, the Faust table and InfluxDB are left out. The device's
enterprise is unknown to the registry (``None``), so rules that select on
enterprise attributes (hazardous chemicals, shutdown orders) do not apply.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from alert_rules import WarningRecord
from riskwatch.contracts import Measurement, Metric, ReadingRecord
from stream_jobs.bench.series import Series
from stream_jobs.processing import DeviceState, Rules, process_reading

__all__ = [
    "ReplayResult",
    "ReplayRow",
    "format_warning",
    "replay_series",
    "rows_as_text",
    "write_rows",
]

ENTERPRISE = "offline"


@dataclass(frozen=True)
class ReplayRow:
    """One reading after scoring.

    ``score`` is None when the worker scored nothing for the reading: the
    first reading of a counter (no rate yet).
    """

    timestamp: str
    value: str
    score: float | None
    learning: bool
    detectors: tuple[str, ...]


@dataclass
class ReplayResult:
    rows: list[ReplayRow] = field(default_factory=list)
    warnings: list[WarningRecord] = field(default_factory=list)


def replay_series(
    series: Series, metric: Metric, rules: Rules, *, device: str = "replay"
) -> ReplayResult:
    """Score ``series`` as readings of ``metric`` from one device.

    Args:
        series: the readings, in time order.
        metric: what the values measure; a counter metric (e.g. energy_kwh)
            is turned into a rate as the worker does.
        rules: e.g. ``RuleEngine(load_rules(None), authority=...)``.
        device: the device id written on warnings.
    """
    result = ReplayResult()
    state: DeviceState | None = None
    for ts, ts_ns, text, value in zip(
        series.times, series.ts_ns, series.texts, series.values, strict=True
    ):
        record = ReadingRecord(
            enterprise=ENTERPRISE,
            device=device,
            ts_ns=ts_ns,
            metrics=[Measurement(metric=metric, value=value)],
            received_ns=ts_ns,
        )
        outcome = process_reading(record, state, None, rules)
        state = outcome.state
        observation = outcome.observations[0] if outcome.observations else None
        result.rows.append(
            ReplayRow(
                timestamp=ts,
                value=text,
                score=None if observation is None else observation.score,
                learning=observation is not None and observation.learning,
                detectors=()
                if observation is None
                else tuple(f.detector for f in observation.findings if f.score > 0),
            )
        )
        result.warnings.extend(
            w for w in outcome.warnings if isinstance(w, WarningRecord)
        )
    return result


def write_rows(rows: Sequence[ReplayRow], handle: TextIO) -> None:
    """Write ``timestamp,value,score,learning,detectors`` CSV rows; detectors
    that fired are joined by ``;``."""
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(("timestamp", "value", "score", "learning", "detectors"))
    for row in rows:
        writer.writerow(
            (
                row.timestamp,
                row.value,
                "" if row.score is None else f"{row.score:.6f}",
                int(row.learning),
                ";".join(row.detectors),
            )
        )


def format_warning(record: WarningRecord) -> str:
    """One line per warning record: when, status, level, rule and title."""
    return (
        f"{record.detection_time.isoformat()} {record.status.value} "
        f"level={record.level.value} rule={record.rule_id} id={record.id} "
        f"{record.title}"
    )


def rows_as_text(rows: Sequence[ReplayRow]) -> str:
    """:func:`write_rows` into a string."""
    buffer = io.StringIO()
    write_rows(rows, buffer)
    return buffer.getvalue()
