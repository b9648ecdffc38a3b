"""Scoring throughput and state size of the stream detector for a big fleet.

Measures the current per-reading path, :func:`stream_jobs.detectors.score_value`
called once per reading, in one process (one core), for many devices scored
round-robin in time order as the worker meets them. Two modes:

* ``dict``: state kept as Python dicts between readings (the lower bound of
  the worker's cost for the detectors alone);
* ``json``: each reading also loads the device's state from JSON and stores
  it back, the round trip the Faust table's JSON value codec does, with the
  codec Faust itself uses (``faust.utils.json``: orjson, a dependency of
  riskwatch for that reason; the table holds the whole device state, of
  which the detector state measured here is the bulk).

Devices are not started from nothing: the detectors' learning period is
cheap and would flatter the figure. A few template series are warmed up
(``warmup`` readings each, not timed) and every device starts from a copy of
one of them, then continues that template's series (daily cycle plus noise,
5-minute readings). Rules, counters and Kafka are left out.

This is a benchmark, not a test: it prints what it measured.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from faust.utils import json

from riskwatch.contracts import Metric
from stream_jobs.detectors import new_state, score_value

__all__ = ["ThroughputResult", "format_throughput", "measure_throughput"]

_STEP_S = 300
_T0_S = 1_793_577_600  # 2026-11-02 00:00 UTC, a Monday
_NS = 1_000_000_000
_TEMPLATES = 16
_METRIC = Metric.TEMPERATURE_C

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ThroughputResult:
    """One mode's measurement."""

    mode: str
    devices: int
    readings: int
    elapsed_s: float
    state_bytes_mean: float
    state_bytes_max: int

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
    warmup: int = 600,
    progress: Progress | None = None,
) -> list[ThroughputResult]:
    """Time ``devices * readings_per_device`` calls of ``score_value`` in each
    mode (see the module docstring).

    Args:
        devices: devices in the fleet.
        readings_per_device: timed readings per device.
        warmup: untimed readings each template series learns first.

    Raises:
        ValueError: a count below 1 (``warmup`` below 0).
    """
    for name, count, low in (
        ("devices", devices, 1),
        ("readings_per_device", readings_per_device, 1),
        ("warmup", warmup, 0),
    ):
        if count < low:
            raise ValueError(f"{name} must be >= {low}, got {count}")
    series = [_series(t, warmup + readings_per_device) for t in range(_TEMPLATES)]
    templates: list[bytes | str] = []
    for values in series:
        state = new_state()
        for i, value in enumerate(values[:warmup].tolist()):
            state, _ = score_value(state, _METRIC, value, (_T0_S + i * _STEP_S) * _NS)
        templates.append(json.dumps(state))
    if progress is not None:
        progress(f"warmed up templates={_TEMPLATES} readings={warmup} each")
    columns = [s[warmup:].tolist() for s in series]
    results = []
    for mode in ("dict", "json"):
        result = _run(mode, devices, readings_per_device, templates, columns, warmup)
        results.append(result)
        if progress is not None:
            progress(
                f"mode={mode} readings={result.readings} "
                f"elapsed_s={result.elapsed_s:.1f}"
            )
    return results


def _run(
    mode: str,
    devices: int,
    readings_per_device: int,
    templates: list[bytes | str],
    columns: list[list[float]],
    warmup: int,
) -> ThroughputResult:
    stored: list[bytes | str] = [templates[d % _TEMPLATES] for d in range(devices)]
    states = [_loads(text) for text in stored]
    round_trip = mode == "json"
    started = time.perf_counter()
    for step in range(readings_per_device):
        ts_ns = (_T0_S + (warmup + step) * _STEP_S) * _NS
        for device in range(devices):
            value = columns[device % _TEMPLATES][step]
            if round_trip:
                state, _ = score_value(_loads(stored[device]), _METRIC, value, ts_ns)
                stored[device] = json.dumps(state)
            else:
                states[device], _ = score_value(states[device], _METRIC, value, ts_ns)
    elapsed = time.perf_counter() - started
    sizes = (
        [_size(text) for text in stored]
        if round_trip
        else [_size(json.dumps(state)) for state in states]
    )
    return ThroughputResult(
        mode=mode,
        devices=devices,
        readings=devices * readings_per_device,
        elapsed_s=elapsed,
        state_bytes_mean=statistics.fmean(sizes),
        state_bytes_max=max(sizes),
    )


def format_throughput(results: list[ThroughputResult], target: float) -> str:
    """The printed table, with the target for comparison."""
    lines = [
        f"{'mode':<6} {'devices':>8} {'readings':>9} {'elapsed_s':>9} "
        f"{'readings/s':>10} {'state_B_mean':>12} {'state_B_max':>11}",
    ]
    for r in results:
        lines.append(
            f"{r.mode:<6} {r.devices:>8} {r.readings:>9} {r.elapsed_s:>9.2f} "
            f"{r.per_second:>10.0f} {r.state_bytes_mean:>12.0f} "
            f"{r.state_bytes_max:>11}"
        )
    best = max(r.per_second for r in results)
    lines.append(
        f"target (issue 4): >= {target:.0f} readings/s on one core; "
        f"met: {'yes' if best >= target else 'NO'} "
        "(per-reading score_value, not vectorised across devices)"
    )
    return "\n".join(lines)


def _size(text: bytes | str) -> int:
    """Bytes of a serialised state (Faust's codec gives bytes with orjson)."""
    return len(text) if isinstance(text, bytes) else len(text.encode())


def _loads(text: bytes | str) -> dict[str, object]:
    # faust.utils.json.loads is annotated for str, but hands bytes straight to
    # orjson, as the table's codec does with what it reads from Kafka.
    state: dict[str, object] = json.loads(text)  # type: ignore[arg-type]
    return state
