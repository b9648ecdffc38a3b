"""Streaming anomaly detectors for one series, as pure functions of state.

State is a small JSON-compatible dict per (device, metric), kept by the Faust
worker in a changelog-backed table: it round-trips through ``json.dumps`` /
``json.loads`` exactly, stays under 4 KB serialised (``_WINDOW_VALUES`` is
the largest part) and every reading costs a bounded amount of work (the
rolling median sorts ``WINDOW`` values; everything else is O(1)). Scoring a
reading uses only that reading and earlier ones (causal), never a label, and
the same input gives the same output (no clocks, no randomness).

Detectors (each a small object in :mod:`stream_jobs.detection`, with its own
warm-up; a detector still warming up contributes nothing):

========================  ==========================================  =========
finding ``detector``      what it sees                                warm-up
========================  ==========================================  =========
``robust_z``              distance from the rolling median, in        30 readings
                          rolling-MAD units: a spike or drop
``stuck``                 the same value for 12 readings and 30 min   30 readings
``ewma``                  distance from an EWMA mean, in EWMA         60 readings
                          standard deviations
``rate_of_change``        a step between consecutive readings far     60 readings
                          larger than the usual step
``seasonal``              distance from the hour-of-day (and, after   2 days (and
                          two weeks, day-of-week) profile             14 days)
``level_shift``           two-sided CUSUM of the standardised         60 readings
                          residual: a sustained shift or slow drift
``gap``                   a reading after a silence much longer than  60 readings
                          the series' usual interval
``counter``               a negative consumption rate (a counter      none
                          that went backwards)
========================  ==========================================  =========

Until ``LEARNING_READINGS`` readings have been seen the whole series is
*learning*: the score is 0 and nothing is reported, because a median of a
handful of values is no baseline. The longer warm-ups above then apply per
detector. Timestamps are read as UTC for the seasonal profiles.

Combination: each detector turns its statistic into a score in [0, 1]
(``Finding.score``). The combined score of a reading is not their plain
maximum: for the anomaly benchmark and for an operator alike, a useful score
is a short, early spike when something new happens, not a plateau for as long
as a state persists. So the strongest *evidence* of the reading is first
compared with the series' own history of evidence (how unusual is this much
surprise here?) and then reported only when it exceeds what was recently
reported (a refractory peak that decays over ``REFRACTORY_READINGS``).

Missing values: a non-finite value (NaN, inf) is not learned; it scores 0
with a ``missing`` finding. Points that are flagged are learned only after
being clipped to the edge of the band (winsorised), so one outlier does not
widen the band that should catch the next, while a lasting level shift is
still absorbed within a few dozen readings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from riskwatch.contracts import Finding, Metric
from stream_jobs.detection import engine
from stream_jobs.detection.engine import (
    LEARNING_READINGS,
    STUCK_MIN_READINGS,
    STUCK_MIN_S,
    WINDOW,
)

__all__ = [
    "LEARNING_READINGS",
    "STUCK_MIN_READINGS",
    "STUCK_MIN_S",
    "WINDOW",
    "Scored",
    "SeriesState",
    "new_state",
    "score_value",
]

SeriesState = dict[str, Any]


@dataclass(frozen=True)
class Scored:
    """The combined score of one reading in [0, 1], and its explanation."""

    score: float
    learning: bool
    findings: list[Finding]


def new_state() -> SeriesState:
    """The state of a series that has seen nothing yet."""
    return engine.new_state()


def score_value(
    state: SeriesState, metric: Metric, value: float, ts_ns: int
) -> tuple[SeriesState, Scored]:
    """Score ``value`` (at ``ts_ns``, ns since the epoch) then learn it.

    Returns:
        The new state (a new dict; the input is not changed) and the score.
    """
    new, score, learning, findings = engine.step(state, metric, value, ts_ns)
    return new, Scored(score=score, learning=learning, findings=findings)
