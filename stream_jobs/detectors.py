"""Per-series statistics and the first detectors, as pure functions of state.

State is a small JSON-compatible dict per (device, metric), kept by the Faust
worker in a changelog-backed table. Scoring a reading uses only that reading
and earlier ones (causal), and the state stays bounded: a rolling window of
``WINDOW`` values plus a few scalars.

Detectors here:

* ``robust_z``: distance of the value from the rolling median in units of the
  rolling MAD (scaled to a standard deviation): a sudden spike or drop;
* ``stuck``: the same value over ``STUCK_MIN_READINGS`` readings spanning at
  least ``STUCK_MIN_S`` seconds: a frozen sensor;
* ``silent`` is decided by the worker's timer from ``last_ts`` (see app.py).

Until ``LEARNING_READINGS`` readings have been seen the series is *learning*:
scores are 0 and nothing is reported, because a median of a handful of values
is no baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from riskwatch.contracts import Finding, Metric

WINDOW = 96
LEARNING_READINGS = 30
# 1.4826 * MAD estimates the standard deviation of normal data.
MAD_TO_SIGMA = 1.4826
# z below Z_QUIET scores 0; at Z_FULL it scores 1 (linear between).
Z_QUIET = 4.0
Z_FULL = 12.0
STUCK_MIN_READINGS = 12
STUCK_MIN_S = 1800.0
# Metrics that legitimately sit at exactly zero for hours (no load, clean air,
# no consumption: counters are scored as rates), where a flat zero says
# nothing about the sensor.
_ZERO_IS_NORMAL = {
    Metric.POWER_KW,
    Metric.COMBUSTIBLE_GAS_LEL,
    Metric.TOXIC_GAS_PPM,
    Metric.ENERGY_KWH,
    Metric.WATER_M3,
    Metric.GAS_M3,
}

SeriesState = dict[str, Any]


def new_state() -> SeriesState:
    return {
        "n": 0,
        "last_ts": None,
        "window": [],
        "run": 0,
        "run_start": None,
        "last_value": None,
    }


@dataclass(frozen=True)
class Scored:
    score: float
    learning: bool
    findings: list[Finding]


def score_value(
    state: SeriesState, metric: Metric, value: float, ts_ns: int
) -> tuple[SeriesState, Scored]:
    """Score ``value`` against the series so far, then learn it.

    Returns:
        The new state (a new dict; the input is not changed) and the score.
    """
    window = np.asarray(state["window"], dtype=float)
    learning = state["n"] < LEARNING_READINGS
    findings: list[Finding] = []

    if not learning and window.size:
        median = float(np.median(window))
        mad = float(np.median(np.abs(window - median)))
        # A flat window has MAD 0; keep a floor so a tiny wiggle after a calm
        # spell is not an infinite z.
        sigma = max(MAD_TO_SIGMA * mad, 1e-3 * abs(median), 1e-6)
        z = abs(value - median) / sigma
        z_score = float(np.clip((z - Z_QUIET) / (Z_FULL - Z_QUIET), 0.0, 1.0))
        if z_score > 0:
            findings.append(
                Finding(
                    detector="robust_z",
                    score=z_score,
                    observed=value,
                    expected=median,
                    low=median - Z_QUIET * sigma,
                    high=median + Z_QUIET * sigma,
                    detail=f"{'above' if value > median else 'below'} the rolling "
                    f"median by {z:.1f} robust standard deviations",
                )
            )

    last = state["last_value"]
    same = last is not None and abs(value - last) <= 1e-9 * max(1.0, abs(value))
    run = state["run"] + 1 if same else 1
    run_start = state["run_start"] if same else ts_ns
    if (
        not learning
        and run >= STUCK_MIN_READINGS
        and (ts_ns - run_start) / 1e9 >= STUCK_MIN_S
        and not (value == 0.0 and metric in _ZERO_IS_NORMAL)
    ):
        findings.append(
            Finding(
                detector="stuck",
                score=1.0,
                observed=value,
                detail=f"the same value for {run} readings over "
                f"{(ts_ns - run_start) / 60e9:.0f} min",
            )
        )

    values = [*state["window"], value][-WINDOW:]
    new = {
        "n": state["n"] + 1,
        "last_ts": ts_ns,
        "window": values,
        "run": run,
        "run_start": run_start,
        "last_value": value,
    }
    score = max((f.score for f in findings), default=0.0)
    return new, Scored(score=score, learning=learning, findings=findings)
