"""Streaming anomaly detectors for one series, as pure functions of state.

State is a small JSON-compatible dict per (device, metric), kept by the Faust
worker in a changelog-backed table: it round-trips through ``json.dumps`` /
``json.loads`` exactly, stays under 4 KB serialised (``_WINDOW_VALUES`` is
the largest part) and every reading costs a bounded amount of work (the
rolling median sorts ``WINDOW`` values; everything else is O(1)). Scoring a
reading uses only that reading and earlier ones (causal), never a label, and
the same input gives the same output (no clocks, no randomness).

Detectors (all in :mod:`stream_jobs.detection.engine`, one pass per reading;
each has its own warm-up and contributes nothing before it ends):

========================  ==========================================  ===========
finding ``detector``      what it sees                                warm-up
========================  ==========================================  ===========
``robust_z``              distance from the rolling median of the     30 readings
                          last ``WINDOW`` readings, in MAD units:
                          a spike or drop (score 0 at z 4, 1 at 12)
``stuck``                 the same value for 12 readings and 30 min;  30 readings
                          scored by how unlikely such a run is for a
                          series that repeats itself as often as
                          this one does
``ewma``                  distance from an EWMA mean (about 20        60 readings
                          readings), in EWMA standard deviations
``rate_of_change``        a step between readings far larger than     60 readings
                          the usual step (of the residual from the
                          daily profile once it is learned)
``seasonal``              distance from the daily profile (48 knots,  2 days and
                          piecewise linear, per-knot spread) plus a   60 readings
                          day-of-week offset after two weeks          (14 days)
``level_shift``           two-sided CUSUM of the standardised         60 readings
                          residual (k 0.5, h 20): a sustained shift
                          or drift; after an alarm it measures from
                          the new level
``deviation``             distance from the daily profile as for      2 days and
                          ``seasonal``, scored from z 1.5 (0.5 at     60 readings
                          z 2.5, 1 at 3.5) for rules that ask for a
                          moderate deviation that lasts (a drift, a
                          consumption shift); not in the combined
                          score
``gap``                   a silence 4 or more usual intervals long    60 readings
``stuck`` (counters)      a register frozen (rate exactly 0) for 12   30 readings
                          readings and 30 min where this half hour    (3 of the
                          of the day seldom reads zero (a share of    half hour;
                          zero rates learned per daily bin), or at    2 days for
                          an hour that usually counts 3 or more       the busy
                          times the meter's smallest rate             hour test)
``counter``               a negative consumption rate: a counter      none
                          that went backwards (counters arrive here
                          as rates, see processing.py)
========================  ==========================================  ===========

Until ``LEARNING_READINGS`` readings have been seen the whole series is
*learning*: the score is 0 and nothing is reported (but a counter running
backwards, which is impossible rather than unusual), because a median of a
handful of values is no baseline. The longer warm-ups above then apply per
detector, and the combined score needs 10 more readings of evidence to know
what is usual for the series: it can first move at reading 41. With a daily
cycle, the profile takes about 3 days (5-minute readings) to a week (15-minute
readings) to settle; until then the level detectors see the cycle as change.
Timestamps are read as UTC for the profiles.

Combination: each detector turns its statistic into *evidence*, the statistic
in units of its own alarm level. Where the daily profile explains most of the
variance, the level evidence is the smaller of the rolling-median and profile
views (a value the profile expects is no surprise, however far from the last
hours' median). A reading scores only when its evidence reaches 1 (some
detector at its alarm level). The reading's evidence, log(1 + e), is then
compared with the series' own running 99.5th percentile of it, so one
threshold suits series of any noise; the excess maps to [0, 1]. That is
scaled by corroboration: one detector alone earns a third, three independent
views agreeing earn it all (on the NAB subset, single-detector reports were
mostly false).
Anomaly benchmarks and operators alike want a short, early spike when
something new happens, not a plateau for as long as a state lasts, so a score
is reported only when it exceeds the last reported peak, which is forgotten
after ``REFRACTORY_READINGS`` readings.
A non-zero score always comes with a finding that explains it.

Missing values: a non-finite value (NaN, inf) is not learned; it scores 0
with a ``missing`` finding. Points that are flagged are learned only after
being clipped to the edge of the band (winsorised; the profile to its own
band), so one outlier does not widen the band that should catch the next,
while a lasting level shift is still absorbed.

State: about 3 KB of JSON at most (the rolling window and the three 48-knot
profiles, stored to 7 significant digits, and for counters a fourth, the
share of zero rates); measured at 3,037 bytes after the longest NAB series
and 3,210 bytes for a water meter after 20,000 noisy readings.
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
