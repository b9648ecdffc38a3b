"""Scoring throughput and state size of the stream detector for a big fleet.

Measures, in one process (one core), many devices scored round-robin in time
order as the worker meets them, along two paths:

* ``reading``: :func:`stream_jobs.detectors.score_value`, one reading at a
  time (the offline replay, the rules path's tests);
* ``batch``: :func:`stream_jobs.detectors.score_batch`, ``batch`` readings
  of different devices at once with numpy (the worker's batches);

each with the state kept in memory between readings (``memory``: the
detectors alone) and again through the device-state table's codec
(``table``: each reading loads its device's state with
:func:`stream_jobs.state_codec.loads` and stores it back with ``dumps``, as a
table read from its changelog would; the worker's in-memory table pays only
the ``dumps``). The table holds the whole device state, of which the
detector state measured here is the bulk.

Devices are not started from nothing: the detectors' learning period is
cheap and would flatter the figure. A few template series are warmed up
(``warmup`` readings each, not timed; by default a week, as the fleets of
``riskwatch bench scenarios`` learn, past the daily profile's two days of
learning) and every device starts from a copy of one of them, then continues
that template's series (daily cycle plus noise, 5-minute readings). Rules,
counters and Kafka are left out. Explaining a reading is most of what a
finding costs, so each result says how many findings the readings had: a
fleet still learning its daily profile (``warmup`` 600, two days) has about
twice a learned one's.

Each path runs ``repeat`` times over the same readings and the fastest run
is reported: the machine is shared, and the slower runs measure the others'
work. What the process has loaded is frozen out of the cyclic garbage
collector first, as the worker does at start. This is a benchmark, not a
test: it prints what it measured.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from riskwatch.contracts import Metric
from stream_jobs import state_codec
from stream_jobs.detectors import SeriesState, new_state, score_batch, score_value

__all__ = ["ThroughputResult", "format_throughput", "measure_throughput"]

_STEP_S = 300
_T0_S = 1_793_577_600  # 2026-11-02 00:00 UTC, a Monday
_NS = 1_000_000_000
_TEMPLATES = 16
_METRIC = Metric.TEMPERATURE_C

Progress = Callable[[str], None]


PATHS = ("reading", "batch")
TABLES = ("memory", "table")


@dataclass(frozen=True)
class ThroughputResult:
    """One path's measurement, with or without the table round trip."""

    path: str
    table: str
    devices: int
    readings: int
    elapsed_s: float
    state_bytes_mean: float
    state_bytes_max: int
    findings: int  # the detectors' findings over the readings timed

    @property
    def per_second(self) -> float:
        return self.readings / self.elapsed_s if self.elapsed_s > 0 else math.nan


def _series(template: int, length: int) -> npt.NDArray[np.float64]:
    """A daily cycle plus noise, different per template, deterministic."""
    rng = np.random.default_rng(template)
    steps = np.arange(length)
    level = 15.0 + 5.0 * template
    cycle = (2.0 + template % 4) * np.sin(2 * np.pi * steps * _STEP_S / 86400.0)
    values: npt.NDArray[np.float64] = level + cycle + rng.normal(0, 0.3, length)
    return values


def measure_throughput(
    devices: int,
    readings_per_device: int,
    *,
    warmup: int = 2016,
    batch: int = 1_000,
    repeat: int = 3,
    progress: Progress | None = None,
) -> list[ThroughputResult]:
    """Time ``devices * readings_per_device`` readings along each path, with
    and without the table round trip (see the module docstring).

    Args:
        devices: devices in the fleet.
        readings_per_device: timed readings per device.
        warmup: untimed readings each template series learns first.
        batch: readings per call of the batch path.
        repeat: runs of each path; the fastest is reported.

    Raises:
        ValueError: a count below 1 (``warmup`` below 0).
    """
    for name, count, low in (
        ("devices", devices, 1),
        ("readings_per_device", readings_per_device, 1),
        ("warmup", warmup, 0),
        ("batch", batch, 1),
        ("repeat", repeat, 1),
    ):
        if count < low:
            raise ValueError(f"{name} must be >= {low}, got {count}")
    series = [_series(t, warmup + readings_per_device) for t in range(_TEMPLATES)]
    templates: list[bytes] = []
    for values in series:
        state = new_state()
        for i, value in enumerate(values[:warmup].tolist()):
            state, _ = score_value(state, _METRIC, value, (_T0_S + i * _STEP_S) * _NS)
        templates.append(state_codec.dumps(state))
    if progress is not None:
        progress(f"warmed up templates={_TEMPLATES} readings={warmup} each")
    columns = [s[warmup:].tolist() for s in series]
    # As the worker does once started (stream_jobs/cli.py): what the process
    # has loaded is out of the cyclic collector's way while it is timed.
    gc.collect()
    gc.freeze()
    try:
        return _measure(
            _Fleet(
                devices, readings_per_device, templates, columns, warmup, batch, repeat
            ),
            progress,
        )
    finally:
        gc.unfreeze()


def _measure(fleet: _Fleet, progress: Progress | None) -> list[ThroughputResult]:
    results = []
    for path in PATHS:
        for table in TABLES:
            result = fleet.run(path, table)
            results.append(result)
            if progress is not None:
                progress(
                    f"path={path} table={table} readings={result.readings} "
                    f"elapsed_s={result.elapsed_s:.1f}"
                )
    return results


@dataclass(frozen=True)
class _Fleet:
    devices: int
    readings_per_device: int
    templates: list[bytes]
    columns: list[list[float]]
    warmup: int
    batch: int
    repeat: int

    def run(self, path: str, table: str) -> ThroughputResult:
        """The fastest of ``repeat`` runs over the same readings, each from
        the templates again (the slower ones lost time to other work on the
        machine, as with ``timeit``)."""
        round_trip = table == "table"
        best = math.inf
        for _ in range(self.repeat):
            stored = [self.templates[d % _TEMPLATES] for d in range(self.devices)]
            states = [state_codec.loads(text) for text in stored]
            findings = 0
            started = time.perf_counter()
            for step in range(self.readings_per_device):
                ts_ns = (_T0_S + (self.warmup + step) * _STEP_S) * _NS
                values = [
                    self.columns[d % _TEMPLATES][step] for d in range(self.devices)
                ]
                findings += self._step(path, states, stored, values, ts_ns, round_trip)
            best = min(best, time.perf_counter() - started)
        sizes = [
            len(text)
            for text in (
                stored if round_trip else [state_codec.dumps(s) for s in states]
            )
        ]
        return ThroughputResult(
            path=path,
            table=table,
            devices=self.devices,
            readings=self.devices * self.readings_per_device,
            elapsed_s=best,
            state_bytes_mean=statistics.fmean(sizes),
            state_bytes_max=max(sizes),
            findings=findings,
        )

    def _step(
        self,
        path: str,
        states: list[SeriesState],
        stored: list[bytes],
        values: list[float],
        ts_ns: int,
        round_trip: bool,
    ) -> int:
        """One reading of every device, one at a time or in batches; the
        findings they had."""
        size = 1 if path == "reading" else self.batch
        findings = 0
        for first in range(0, len(values), size):
            last = min(first + size, len(values))
            given = (
                [state_codec.loads(text) for text in stored[first:last]]
                if round_trip
                else states[first:last]
            )
            if size == 1:
                one, result = score_value(given[0], _METRIC, values[first], ts_ns)
                new, scored = [one], [result]
            else:
                new, scored = score_batch(
                    given,
                    [_METRIC] * len(given),
                    values[first:last],
                    [ts_ns] * len(given),
                )
            if round_trip:
                stored[first:last] = [state_codec.dumps(s) for s in new]
            else:
                states[first:last] = new
            findings += sum(len(result.findings) for result in scored)
        return findings


def format_throughput(results: list[ThroughputResult], target: float) -> str:
    """The printed table, with the target for comparison (met by the batch
    path with the table round trip)."""
    lines = [
        f"{'path':<8} {'table':<6} {'devices':>8} {'readings':>9} {'elapsed_s':>9} "
        f"{'readings/s':>10} {'state_B_mean':>12} {'state_B_max':>11} "
        f"{'findings/reading':>16}",
    ]
    for r in results:
        lines.append(
            f"{r.path:<8} {r.table:<6} {r.devices:>8} {r.readings:>9} "
            f"{r.elapsed_s:>9.2f} {r.per_second:>10.0f} {r.state_bytes_mean:>12.0f} "
            f"{r.state_bytes_max:>11} {r.findings / r.readings:>16.3f}"
        )
    judged = [r for r in results if (r.path, r.table) == ("batch", "table")]
    best = judged[0].per_second if judged else math.nan
    lines.append(
        f"target (issue 4): >= {target:.0f} readings/s on one core; "
        f"met: {'yes' if best >= target else 'NO'} "
        "(batch path with the table round trip)"
    )
    return "\n".join(lines)
