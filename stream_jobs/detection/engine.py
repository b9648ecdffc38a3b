"""One step of every detector on one reading of each of B series; see
:mod:`stream_jobs.detectors`.

The detectors are written once (:func:`_detect`) in a handful of primitives
that two executors provide: numpy arrays with one element per series, for a
wave of many series (the worker's batches), and Python floats, for a wave of
a few (a single reading costs about 40 us instead of numpy's 500 us of call
overhead). The arithmetic is the same, operation for operation and in the
same order, so a series' scores and state do not depend on the batch that
carried its readings (tested): Python's ``max``/``min`` pick rules are kept
where a NaN could meet them (``fmax``/``fmin``), the logarithms come from
:mod:`math` in both, and rounding to 7 significant digits is exact in both.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple, TypeAlias

import numpy as np
import numpy.typing as npt

from riskwatch.contracts import METRICS, Detector, Finding, Metric, trusted_finding
from stream_jobs.detection.state import (
    DAY_BINS,
    DOW0,
    FLOAT_BYTES,
    FLOATS,
    HAD0,
    HDS0,
    HOD0,
    NO_TS,
    PROFILE_KNOTS,
    PZ0,
    SCALARS,
    SLOT,
    W0,
    WINDOW,
    gather,
    scatter,
)

# Series ------------------------------------------------------------------------
LEARNING_READINGS = 30
# Detectors that need more than a median to be meaningful start later.
WARMUP_READINGS = 60

# robust_z ----------------------------------------------------------------------
# 1.4826 * MAD estimates the standard deviation of normal data.
MAD_TO_SIGMA = 1.4826
# z below Z_QUIET scores 0; at Z_FULL it scores 1 (linear between). The shipped
# spike-or-drop rule relies on this scale (score 0.5 = z 8).
Z_QUIET = 4.0
Z_FULL = 12.0

# implausible -------------------------------------------------------------------
# A reading farther from the rolling median than FAR_RATIO times the largest
# magnitude in the window (at least FAR_FLOOR, in the metric's unit) is no
# measurement this series makes: a corrupted value, a unit error. It is
# scored, and kept in the rolling window (so a lasting change of scale is
# learned within half a window), but no other statistic learns it: a single
# 1.7e308 would make the EWMA, level and residual variances infinite for
# good (defect D7), and a later real spike would score nothing.
FAR_RATIO = 1e3
FAR_FLOOR = 1.0
# The statistics a far reading leaves as they were: all but the reading count
# (the window's ring position) and the combination's own bookkeeping.
_COMBINATION = frozenset({"n", "gq", "gn", "pk", "pa"})
_MODEL = tuple(name for name in SCALARS if name not in _COMBINATION)

# stuck -------------------------------------------------------------------------
STUCK_MIN_READINGS = 12
STUCK_MIN_S = 1800.0
# Metrics that legitimately sit at exactly zero for hours (no load, clean air,
# no consumption: counters are scored as rates), where a flat zero says
# nothing about the sensor.
ZERO_IS_NORMAL = frozenset(
    {
        Metric.POWER_KW,
        Metric.COMBUSTIBLE_GAS_LEL,
        Metric.TOXIC_GAS_PPM,
        Metric.ENERGY_KWH,
        Metric.WATER_M3,
        Metric.GAS_M3,
    }
)
COUNTERS = frozenset({Metric.ENERGY_KWH, Metric.WATER_M3, Metric.GAS_M3})
# The smallest spread the detectors measure per metric: the resolution its
# sensors declare (riskwatch.contracts), 0 where none is declared. Without
# it a gas detector reading a few tenths of a ppm learns a spread of a tenth,
# and its everyday wiggles of half a ppm score as spikes (all 3 false
# warnings of seed 0's anomaly-free fleet in `riskwatch bench scenarios`).
# Only where declared: a floor for every metric cost NAB points.
_FLOOR = {m: METRICS[m].resolution or 0.0 for m in Metric}
# A frozen register is reported where this hour usually counts at least this
# many times the smallest rate the meter has shown.
FROZEN_BUSY = 3.0
# Readings of a daily bin before its share of zero rates is trusted.
ZERO_SHARE_MIN = 3

# ewma / rate / level shift -------------------------------------------------------
EWMA_ALPHA = 0.05  # about 20 readings of memory
RATE_ALPHA = 0.05
# mean |step| * sqrt(pi/2) estimates the standard deviation of normal steps.
ABS_TO_SIGMA = 1.2533
CUSUM_K = 0.5  # allowance, in standard deviations (detects shifts >= 1 sd)
CUSUM_H = 20.0  # decision interval, in standard deviations
CUSUM_CLIP = 4.0  # one reading moves the sum by at most this much

# seasonal ----------------------------------------------------------------------
DAY_S = 86_400
LEVEL_TAU_S = DAY_S  # the level under the profile: about a day of memory
BIN_SD_FLOOR = 0.5
SEASONAL_EXPLAINS = 0.5  # residual variance below this share of the total
PROFILE_ALPHA = 0.1  # per reading of the bin: about a day of that hour's readings
SEASON_VAR_ALPHA = 0.01
DAILY_AFTER_S = 2 * DAY_S
WEEKLY_AFTER_S = 14 * DAY_S
WEEK_ALPHA = 0.01
# Days of readings a knot of the off-shift profile must hold before it
# judges: two that agree. A rest day seen once may have been anything (a
# first Sunday of production under a shutdown order taught the profile to
# expect production every Sunday: `riskwatch bench scenarios`). A knot of one
# day that the next day disagrees with by more than Z_QUIET of its spreads
# starts again from the new day, as if unseen: which day was usual is not
# known. A knot's days are its readings times the share of its half hour
# each reading covers (one a day at hourly readings).
KNOT_S = DAY_S / DAY_BINS
OFF_PROFILE_DAYS = 2.0
# Residuals the spreads learn are clipped to this many spreads (see learn).
SPREAD_CLIP = 4.0

# deviation -----------------------------------------------------------------------
# A reading's distance from the daily profile, scored from a lower z than the
# seasonal finding's so that rules can ask for a moderate deviation that
# lasts (`for`): a consumption level shift or a slow drift is a few spreads
# off for an hour, not a spike. Score 0.5 = z 2.5. Not part of the combined
# score (it would count twice with ``seasonal``).
DEVIATION_QUIET = 1.5
DEVIATION_FULL = 3.5
NOT_COMBINED = frozenset({Detector.DEVIATION})

# gap ---------------------------------------------------------------------------
GAP_FACTOR = 4.0  # a silence this many usual intervals long is a gap
INTERVAL_ALPHA = 0.05

# combination ---------------------------------------------------------------------
EVIDENCE_MIN = 10  # evidence samples before the combined score may move
# Evidence is each detector's statistic in units of its own alarm level (1 =
# where its finding starts to score); the reading's evidence is the largest.
EVIDENCE_QUANTILE = 0.995  # the series' "usual worst" evidence
QUANTILE_RATE = 0.02  # step of the quantile estimate, in log-evidence units
EVIDENCE_CAP = 50.0  # a floored spread can give any z; beyond this, all alike
# The reading's evidence must reach one detector's own alarm level (1) before
# the combined score may move: the running quantile alone makes a calm
# series' small wiggles look unusual (NAB subset: 46.78 -> 47.42 standard;
# bench scenarios unchanged).
EVIDENCE_GATE = 1.0
G_QUIET = 0.0  # log-evidence this far above the usual worst scores 0 ...
G_FULL = 0.25  # ... and this far (28 % more evidence), 1
REFRACTORY_READINGS = 200  # quiet after a reported peak, unless it escalates
CORROBORATION = 3.0  # detectors that must agree for a full score
SAME_ALPHA = 0.01  # memory of how often the value repeats (~100 readings)

_TINY = 1e-9
_NS = 1e9
_LOG_GAP = (math.log(GAP_FACTOR), math.log(100.0))
# Below this many readings a wave runs on Python floats: numpy's cost per
# call (about a microsecond) outweighs its speed for a handful of rows.
NUMPY_FROM = 12

Floats = npt.NDArray[np.float64]
# What the detectors compute with: a Python float, int or bool (one series)
# or a numpy array of them, one element per series (a wave).
Quantity: TypeAlias = Any


class Scored(NamedTuple):
    """The combined score of one reading in [0, 1], and its explanation.

    (A named tuple: a wave makes one per reading, at a third of a frozen
    dataclass's cost.)"""

    score: float
    learning: bool
    findings: list[Finding]


# Python's max/min pick rules (the first argument unless the second is
# larger/smaller, so a NaN second argument never wins), kept wherever a NaN
# could meet them, in both executors.
def _max_f(a: Quantity, b: Quantity) -> Quantity:
    return b if b > a else a


def _min_f(a: Quantity, b: Quantity) -> Quantity:
    return b if b < a else a


def _max_a(a: Quantity, b: Quantity) -> Quantity:
    return np.where(b > a, b, a)


def _min_a(a: Quantity, b: Quantity) -> Quantity:
    return np.where(b < a, b, a)


def _q_float(value: float) -> float:
    return float(f"{value:.7g}")


_POW10 = np.array([10.0**i for i in range(23)])


def _q_array(x: Floats) -> Floats:
    """``float(f"{v:.7g}")`` for each element of ``x``, bit for bit.

    The digits are ``rint(x * 10**k)`` (k = 6 - exponent): that product is
    within 1e-9 of the exact one, so its rounding is the exact one unless it
    lies within 1e-6 of a half; the result, digits / 10**k (both exact), is
    then the double nearest the decimal, as ``float()`` reads it. An element
    near a half, out of range, or whose exponent estimate was off goes
    through the string (``test_rounding_matches_the_string_rounding``).
    """
    ax = np.abs(x)
    live = np.isfinite(x) & (ax > 0.0)
    with np.errstate(all="ignore"):  # the branch np.where drops may overflow
        k = 6 - np.floor(np.log10(np.where(live, ax, 1.0))).astype(np.int64)
        p = _POW10[np.minimum(np.abs(k), 22)]
        up = k >= 0
        y = np.where(up, x * p, x / p)
        digits = np.rint(y)
        size = np.abs(digits)
        exact = (
            live
            & (np.abs(k) <= 22)
            & (np.abs(y - np.floor(y) - 0.5) > 1e-6)
            & (size >= 1e6)
            & (size <= 1e7)
        )
        out: Floats = np.where(exact, np.where(up, digits / p, digits * p), x)
    for i in np.flatnonzero(live & ~exact).tolist():
        out[i] = _q_float(float(x[i]))
    return out


def _same(x: Quantity, j: int) -> Quantity:
    return x


class _Executor:
    """The primitives the detectors are written in: on Python floats (one
    series) or on numpy arrays (one element per series of a wave)."""

    def __init__(self, size: int) -> None:
        self.size = size


class _Floats(_Executor):
    """One series: every quantity a Python float (or bool, int)."""

    zeros = 0.0
    maximum = staticmethod(max)
    minimum = staticmethod(min)
    fmax = staticmethod(_max_f)
    fmin = staticmethod(_min_f)
    abs = staticmethod(abs)
    sqrt = staticmethod(math.sqrt)
    floor = staticmethod(math.floor)

    @staticmethod
    def where(cond: Quantity, a: Quantity, b: Quantity) -> Quantity:
        return a if cond else b

    @staticmethod
    def isnan(x: float) -> bool:
        return x != x  # noqa: PLR0124 - the NaN test without a call

    @staticmethod
    def not_(x: bool) -> bool:
        return not x

    @staticmethod
    def any(x: bool) -> bool:
        return bool(x)

    @staticmethod
    def int_(x: Quantity) -> int:
        return int(x)

    @staticmethod
    def math(fn: Callable[[float], float], x: float) -> float:
        return fn(x)

    @staticmethod
    def take(values: list[float], k: int) -> float:
        return values[k]

    @staticmethod
    def put(values: list[float], k: int, value: float) -> None:
        values[k] = value

    @staticmethod
    def rows(mask: bool) -> list[int]:
        return [0] if mask else []

    @staticmethod
    def picker(rows: list[int]) -> Callable[[Quantity, int], Quantity]:
        return _same

    @staticmethod
    def column(x: Quantity, rows: list[int]) -> list[Any]:
        return [x]

    @staticmethod
    def q(values: list[float]) -> list[float]:
        return [_q_float(v) for v in values]

    @staticmethod
    def median_mad(
        window: list[float], count: int, live: bool
    ) -> tuple[float, float, float]:
        if not live:
            return 0.0, 0.0, 0.0
        ordered = sorted(window[:count])
        reach = max(-ordered[0], ordered[-1])
        mid = count // 2
        if count % 2:
            median = ordered[mid]
            dev = sorted(abs(v - median) for v in ordered)
            return median, dev[mid], reach
        median = 0.5 * (ordered[mid - 1] + ordered[mid])
        dev = sorted(abs(v - median) for v in ordered)
        return median, 0.5 * (dev[mid - 1] + dev[mid]), reach


class _Arrays(_Executor):
    """A wave of series: every quantity an array with one element each."""

    maximum = staticmethod(np.maximum)
    minimum = staticmethod(np.minimum)
    fmax = staticmethod(_max_a)
    fmin = staticmethod(_min_a)
    abs = staticmethod(np.abs)
    sqrt = staticmethod(np.sqrt)
    floor = staticmethod(np.floor)
    where = staticmethod(np.where)
    isnan = staticmethod(np.isnan)

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.index = np.arange(size)
        self.zeros = np.zeros(size)

    @staticmethod
    def not_(x: Quantity) -> Quantity:
        return ~x

    @staticmethod
    def any(x: Quantity) -> bool:
        return bool(x.any())

    @staticmethod
    def int_(x: Quantity) -> Quantity:
        return x.astype(np.int64)

    @staticmethod
    def math(fn: Callable[[float], float], x: Floats) -> Floats:
        # numpy's own logarithms differ from the C library's (which math
        # uses) in the last bit on some machines.
        return np.fromiter(map(fn, x.tolist()), dtype=np.float64, count=x.size)

    def take(self, values: Quantity, k: Quantity) -> Quantity:
        return values[self.index, k]

    def put(self, values: Quantity, k: Quantity, value: Quantity) -> None:
        values[self.index, k] = value

    @staticmethod
    def rows(mask: Quantity) -> list[int]:
        rows: list[int] = np.flatnonzero(mask).tolist()
        return rows

    def picker(self, rows: list[int]) -> Callable[[Quantity, int], Quantity]:
        """``pick(x, j)``: ``x`` at ``rows[j]`` as a Python number, each
        array's column at ``rows`` taken once (most findings of a wave come
        from a few detectors, and ``x[i].item()`` per finding and quantity
        was most of their cost)."""
        taken: dict[int, list[Any]] = {}

        def pick(x: Quantity, j: int) -> Quantity:
            # (The quantities live while the finding's detail is written, so
            # their ids stay theirs.)
            column = taken.get(id(x))
            if column is None:
                column = taken[id(x)] = self.column(x, rows)
            return column[j]

        return pick

    @staticmethod
    def column(x: Quantity, rows: list[int]) -> list[Any]:
        """``x`` at ``rows`` as Python numbers (a constant repeated)."""
        if x is None or isinstance(x, float):
            return [x] * len(rows)
        values: list[Any] = x[rows].tolist()
        return values

    def q(self, values: list[Any]) -> list[Any]:
        rounded = _q_array(np.concatenate(values))
        return np.split(rounded, len(values))

    def median_mad(
        self, window: Quantity, count: Quantity, live: Quantity
    ) -> tuple[Any, Any, Any]:
        median = np.zeros(self.size)
        mad = np.zeros(self.size)
        reach = np.zeros(self.size)
        at = np.flatnonzero(live)
        if not at.size:
            return median, mad, reach
        part = window[at]
        counts = count[at]
        full = part.shape[1]
        if (counts < full).any():
            part = np.where(np.arange(full) < counts[:, None], part, np.inf)
        ordered = np.sort(part, axis=1)
        index = np.arange(len(at))
        mid = counts // 2
        odd = (counts % 2) == 1
        lower = np.maximum(mid - 1, 0)

        def middle(values: Floats) -> Floats:
            upper = values[index, mid]
            out: Floats = np.where(odd, upper, 0.5 * (values[index, lower] + upper))
            return out

        median[at] = middle(ordered)
        dev = np.sort(np.abs(ordered - median[at][:, None]), axis=1)
        mad[at] = middle(dev)
        reach[at] = np.maximum(-ordered[:, 0], ordered[index, counts - 1])
        return median, mad, reach


# :class:`_Floats` or :class:`_Arrays`: the same primitives by name, whose
# signatures differ only in their quantities (a float or an array), so the
# detectors call them untyped.
Executor: TypeAlias = Any


class _State:
    """A wave's statistics by name: floats and lists (one series) or arrays
    (rows of a gathered block); :func:`_detect` replaces them."""

    n: Quantity
    run: Quantity
    run_start: Quantity
    last_value: Quantity
    t0: Quantity
    dt: Quantity
    em: Quantity
    ev: Quantity
    dm: Quantity
    lv: Quantity
    ca: Quantity
    lvv: Quantity
    gq: Quantity
    sv: Quantity
    cp: Quantity
    cn: Quantity
    ps: Quantity
    gn: Quantity
    pk: Quantity
    pa: Quantity
    lr: Quantity
    rq: Quantity
    ls: Quantity
    window: Quantity
    hod: Quantity
    had: Quantity
    dow: Quantity
    pz: Quantity
    hds: Quantity
    hn: Quantity


class _Explain:
    """Findings for the rows where a detector reports, in detector order."""

    def __init__(self, xp: Executor, size: int) -> None:
        self.xp = xp
        # Only the rows that have findings: most readings have none.
        self.findings: dict[int, list[Finding]] = {}

    def add(
        self,
        mask: Quantity,
        detector: Detector,
        score: Quantity,
        detail: Callable[[Callable[[Any], Any]], str],
        observed: Quantity = None,
        expected: Quantity = None,
        low: Quantity = None,
        high: Quantity = None,
    ) -> None:
        xp = self.xp
        rows = xp.rows(mask)
        if not rows:
            return
        columns = [xp.column(x, rows) for x in (score, observed, expected, low, high)]
        name = detector.value  # a plain str in the finding, as validated
        at = xp.picker(rows)
        for j, (i, *numbers) in enumerate(zip(rows, *columns, strict=True)):

            def pick(x: Quantity, j: int = j) -> Quantity:
                return at(x, j)

            # Built without validation: every field is a number or text
            # this code made, each score a ramp in [0, 1] (the contract
            # tests check them on random series), and validating them, or
            # even model_construct, cost an eighth of a wave's time.
            self.findings.setdefault(i, []).append(
                trusted_finding(
                    name,
                    numbers[0],
                    numbers[1],
                    numbers[2],
                    numbers[3],
                    numbers[4],
                    detail(pick),
                )
            )


def _ramp(xp: Executor, x: Quantity, quiet: float, full: float) -> Quantity:
    t = (x - quiet) / (full - quiet)
    return xp.where(t > 0.0, xp.where(t < 1.0, t, 1.0), 0.0)


def _far(
    xp: Executor, distance: Quantity, spread: Quantity, warm: Quantity
) -> tuple[Quantity, Quantity]:
    """``distance`` in units of ``spread`` and its score (0 at 2 * Z_QUIET,
    1 at 2 * Z_FULL), where warmed up and the spread is not ~0 (else 0)."""
    live = warm & (spread > _TINY)
    z = xp.abs(distance) / xp.where(live, spread, 1.0)
    return z, xp.where(live, _ramp(xp, z, 2 * Z_QUIET, 2 * Z_FULL), 0.0)


def _run_score(xp: Executor, run: Quantity, share: Quantity) -> Quantity:
    """How unusual ``run`` readings in a row of something that happens to a
    share ``share`` of the readings are: 0 up to odds of 1 in 100, 1 from 1
    in a million (the share floored at 1 in 1000)."""
    clipped = xp.fmin(xp.fmax(share, 1e-3), 1.0)
    return _ramp(xp, -run * xp.math(math.log10, clipped), 2.0, 6.0)


def _detect(  # noqa: PLR0915 - the detectors in order, as documented
    xp: Executor,
    s: _State,
    last_ts: Quantity,
    counter: Quantity,
    zero_normal: Quantity,
    floor: Quantity,
    value: Quantity,
    ts_ns: Quantity,
    off: Quantity,
) -> tuple[Any, Any, dict[int, list[Finding]]]:
    """Score then learn one reading of each series of the wave, on ``xp``'s
    quantities; ``s`` is updated. Returns (combined, learning, findings by
    row, rows without findings left out)."""
    explain = _Explain(xp, xp.size)
    n = s.n
    learning = n < LEARNING_READINGS
    warm = n >= WARMUP_READINGS
    evidence = xp.zeros
    ts_s = ts_ns / _NS
    has_ts = last_ts != NO_TS
    dt_s = xp.where(has_ts, (ts_ns - xp.where(has_ts, last_ts, 0)) / _NS, math.nan)
    last = s.last_value
    has_last = xp.not_(xp.isnan(last))

    # robust_z ---------------------------------------------------------------
    count = xp.int_(xp.minimum(n, WINDOW))
    seen = count > 0
    median, mad, reach = xp.median_mad(s.window, count, seen)
    live = xp.not_(learning) & seen
    far = seen & (xp.abs(value - median) > FAR_RATIO * xp.fmax(reach, FAR_FLOOR))
    # What a far reading must not change, as it was (the profiles: below).
    kept = {name: getattr(s, name) for name in _MODEL} if xp.any(far) else None

    def unless_far(old: Quantity, new: Quantity) -> Quantity:
        return new if kept is None else xp.where(far, old, new)

    # A flat window has MAD 0; keep a floor so a tiny wiggle after a calm
    # spell is not an infinite z.
    sigma = xp.maximum(xp.maximum(MAD_TO_SIGMA * mad, 1e-3 * xp.abs(median)), 1e-6)
    sigma = xp.maximum(sigma, floor)
    z_robust = xp.where(live, xp.abs(value - median) / sigma, 0.0)
    band_low = xp.where(live, median - Z_QUIET * sigma, value)
    band_high = xp.where(live, median + Z_QUIET * sigma, value)
    level_evidence = z_robust / Z_QUIET
    score = xp.where(live, _ramp(xp, z_robust, Z_QUIET, Z_FULL), 0.0)
    robust_fired = score > 0
    explain.add(
        robust_fired,
        Detector.ROBUST_Z,
        score,
        lambda p: (
            f"{'above' if p(value) > p(median) else 'below'} the rolling "
            f"median by {p(z_robust):.1f} robust standard deviations"
        ),
        value,
        median,
        band_low,
        band_high,
    )

    # stuck ------------------------------------------------------------------
    same = has_last & (xp.abs(value - last) <= 1e-9 * xp.maximum(1.0, xp.abs(value)))
    run = xp.where(same, s.run + 1, 1.0)
    run_start = xp.where(same, s.run_start, ts_ns)
    long_run = (
        xp.not_(learning)
        & (run >= STUCK_MIN_READINGS)
        & ((ts_ns - run_start) / _NS >= STUCK_MIN_S)
    )
    # A counter's steady rate is a steady process; its frozen register is
    # found below, against the daily profile.
    stuck = long_run & xp.not_((value == 0.0) & zero_normal) & xp.not_(counter)
    stuck_score = xp.zeros
    if xp.any(stuck):
        # How unusual a run this long is here: a series that often repeats
        # its value (coarse resolution, idle counters) earns a weak score.
        stuck_score = xp.where(stuck, _run_score(xp, run, s.ps), 0.0)
        evidence = xp.where(stuck, xp.fmax(evidence, 3.0 * stuck_score), evidence)

    def held_for(p: Callable[[Any], Any]) -> str:
        return f"{int(p(run))} readings over {(p(ts_ns) - p(run_start)) / 60e9:.0f} min"

    explain.add(
        stuck,
        Detector.STUCK,
        stuck_score,
        lambda p: f"the same value for {held_for(p)}",
        value,
    )
    stuck_fired = stuck & (stuck_score > 0)
    # (n >= 1 wherever the share learns: a previous value exists.)
    share_rate = xp.maximum(1.0 / xp.maximum(n, 1.0), SAME_ALPHA)
    s.ps = xp.where(
        (run < STUCK_MIN_READINGS) & has_last, s.ps + share_rate * (same - s.ps), s.ps
    )
    zero_run = counter & (value == 0.0) & long_run

    # ewma -------------------------------------------------------------------
    em = s.em
    sd = xp.maximum(xp.sqrt(s.ev), floor)
    z_ewma, score = _far(xp, value - em, sd, warm)
    ewma_fired = score > 0
    explain.add(
        ewma_fired,
        Detector.EWMA,
        score,
        lambda p: f"{p(z_ewma):.1f} EWMA standard deviations from the EWMA mean",
        value,
        em,
        em - 2 * Z_QUIET * sd,
        em + 2 * Z_QUIET * sd,
    )

    # rate_of_change ---------------------------------------------------------
    # Once the daily profile is learned, a step is measured against the
    # profile's own step (a square wave's daily edge is no surprise).
    age = xp.where(xp.isnan(s.t0), 0.0, ts_s - s.t0)
    daily = age >= DAILY_AFTER_S
    # The daily profile is piecewise linear between DAY_BINS knots (at the
    # middle of each half hour): smooth cycles fit without a staircase error.
    pos = (ts_s % DAY_S) / (DAY_S / DAY_BINS) - 0.5
    k0f = xp.floor(pos)
    w1 = pos - k0f
    k0 = xp.int_(k0f) % DAY_BINS
    k1 = (k0 + 1) % DAY_BINS
    near = xp.where(w1 >= 0.5, k1, k0)
    hour = xp.int_(ts_s // 3600) % 24
    day = xp.int_(ts_s // DAY_S + 3) % 7  # 1970-01-01 was a Thursday: 0 = Monday
    weekly = age >= WEEKLY_AFTER_S
    # Two profiles: one learned from readings on shift, one from readings
    # off shift (``off``: no registered shift within an hour, said by the
    # caller), so a rest day is not judged by the profile of a workday. A
    # reading is judged by its own profile (a knot it has not seen taken
    # from the other, below), and off shift only once its nearest knot has
    # OFF_PROFILE_MIN readings (before that, as in the first two days: no
    # profile).
    own = xp.where(off, DAY_BINS, 0)
    other = DAY_BINS - own
    at_k1 = w1 >= 0.5  # the nearest knot is k1
    own0, own1, other0, other1 = k0 + own, k1 + own, k0 + other, k1 + other
    count_own0, count_own1 = xp.take(s.hn, own0), xp.take(s.hn, own1)
    count_other0, count_other1 = xp.take(s.hn, other0), xp.take(s.hn, other1)
    own_k0, own_k1 = xp.take(s.hod, own0), xp.take(s.hod, own1)
    # Off shift, a knot of one day the reading disagrees with is unseen from
    # here on (see OFF_PROFILE_DAYS): it neither judges nor teaches.
    per_reading = xp.where(xp.isnan(s.dt), KNOT_S, xp.fmin(s.dt, KNOT_S)) / KNOT_S
    half = 0.5 * per_reading
    sd_floor = BIN_SD_FLOOR * xp.sqrt(s.sv)
    stored_own = xp.where(at_k1, count_own1, count_own0)
    for_k0 = (own_k0, count_own0, xp.take(s.had, own0))
    for_k1 = (own_k1, count_own1, xp.take(s.had, own1))
    count_own0, count_own1 = (
        xp.where(
            off
            & (hn_k * per_reading >= 1.0 - half)
            & (hn_k * per_reading < OFF_PROFILE_DAYS - half)
            & (
                xp.abs(value - s.ls - knot)
                > Z_QUIET * xp.fmax(ABS_TO_SIGMA * spread, sd_floor)
            ),
            0,
            hn_k,
        )
        for knot, hn_k, spread in (for_k0, for_k1)
    )
    hn_own = xp.where(at_k1, count_own1, count_own0)
    hn_other = xp.where(at_k1, count_other1, count_other0)
    hn_far = xp.where(at_k1, count_own0, count_own1)
    seen_own0, seen_own1 = count_own0 > 0, count_own1 > 0
    # Learned from: this profile's own knots only, the one seen alone where
    # it has seen one (another profile's knot in the error taught a first
    # rest day a workday's values). Judged against: where this profile has
    # not seen a knot of the pair, the other's knot there (at the first
    # reading on shift, the last knot off shift and the first on shift: the
    # start-up's shape, not the first on-shift knot's value held flat, which
    # read as a step every morning).
    mine = xp.where(
        seen_own0 & seen_own1,
        (1.0 - w1) * own_k0 + w1 * own_k1,
        xp.where(seen_own0, own_k0, own_k1),
    )
    lent0 = xp.not_(seen_own0) & (count_other0 > 0)
    lent1 = xp.not_(seen_own1) & (count_other1 > 0)
    judged0 = xp.where(lent0, xp.take(s.hod, other0), own_k0)
    judged1 = xp.where(lent1, xp.take(s.hod, other1), own_k1)
    has0 = seen_own0 | lent0
    has1 = seen_own1 | lent1
    profile = xp.where(
        has0 & has1,
        (1.0 - w1) * judged0 + w1 * judged1,
        xp.where(has0, judged0, judged1),
    )
    learned_profile = xp.where(seen_own0 | seen_own1, mine, profile)
    used = daily & (xp.not_(off) | (hn_own * per_reading >= OFF_PROFILE_DAYS - half))
    dow_day = xp.take(s.dow, day)
    season_expected = s.ls + profile + xp.where(weekly, dow_day, 0.0)
    expected = xp.where(used, season_expected, s.lv)
    resid = value - expected
    step_s = xp.where(dt_s > 0, dt_s, 0.0)
    step_sd = xp.maximum(ABS_TO_SIGMA * s.dm, floor)
    # Only where the profile explains most of the variance: on a series
    # whose cycle is not daily (a tank filled every few hours) the
    # profile's residual swings with the cycle, and its steps hide a spike.
    stepped = used & (s.sv < SEASONAL_EXPLAINS * s.lvv)
    # A step this time of day is used to (a square wave's daily edge falls
    # between two knots, so the residual jumps there every day) is measured
    # against the usual residual step at the nearest knot.
    own_hds = xp.take(s.hds, near + own)
    step_sd = xp.where(stepped, xp.fmax(step_sd, ABS_TO_SIGMA * own_hds), step_sd)
    diff = xp.where(has_last, xp.where(stepped, resid - s.lr, value - last), 0.0)
    z_step, score = _far(xp, diff, step_sd, warm)
    live = warm & (step_sd > _TINY)
    evidence = xp.where(live, xp.fmax(evidence, z_step / (2 * Z_QUIET)), evidence)
    rate_fired = score > 0
    explain.add(
        rate_fired,
        Detector.RATE_OF_CHANGE,
        score,
        lambda p: f"a step of {p(z_step):.1f} usual steps since the last reading",
        diff,
        0.0,
        -2 * Z_QUIET * step_sd,
        2 * Z_QUIET * step_sd,
    )

    # seasonal ---------------------------------------------------------------
    # The spread differs by time of day (a busy hour is noisier than a quiet
    # one): a per-bin mean absolute residual, floored by a share of the
    # overall one so a bin that happened to be calm is not hair-trigger.
    # The spread of the nearest knot seen: this profile's, else the other's.
    own_had = xp.take(s.had, near + own)
    had_near = xp.where(
        hn_own > 0,
        own_had,
        xp.where(
            hn_far > 0,
            xp.take(s.had, xp.where(at_k1, own0, own1)),
            xp.take(s.had, near + other),
        ),
    )
    seas_sd = xp.fmax(ABS_TO_SIGMA * had_near, sd_floor)
    seas_sd = xp.maximum(seas_sd, floor)
    seasonal = used & warm & (seas_sd > _TINY)
    safe_sd = xp.where(seasonal, seas_sd, 1.0)
    z_seasonal = xp.where(seasonal, xp.abs(resid) / safe_sd, 0.0)
    # Where the daily profile explains most of the variance, it is the better
    # model: a value it expects is no surprise, however far it is from the
    # last hours' median.
    explains = seasonal & (s.sv < SEASONAL_EXPLAINS * s.lvv)
    ratio = z_seasonal / Z_QUIET
    level_evidence = xp.where(
        seasonal,
        xp.where(
            explains, xp.fmin(level_evidence, ratio), xp.fmax(level_evidence, ratio)
        ),
        level_evidence,
    )
    plain = xp.not_(seasonal) & warm & (s.lvv > _TINY)
    u = xp.where(
        seasonal,
        (resid - s.ca) / safe_sd,
        xp.where(
            plain,
            (value - s.lv - s.ca)
            / xp.maximum(xp.sqrt(xp.where(plain, s.lvv, 1.0)), floor),
            0.0,
        ),
    )
    # ``deviation`` is the same distance scored from a lower z, for rules
    # that ask for a moderate deviation that lasts.
    seasonal_fired = xp.zeros > 0
    for detector, quiet, full in (
        (Detector.SEASONAL, Z_QUIET, Z_FULL),
        (Detector.DEVIATION, DEVIATION_QUIET, DEVIATION_FULL),
    ):
        score = xp.where(seasonal, _ramp(xp, z_seasonal, quiet, full), 0.0)
        if detector is Detector.SEASONAL:
            seasonal_fired = score > 0
        explain.add(
            score > 0,
            detector,
            score,
            lambda p: (
                f"{p(z_seasonal):.1f} standard deviations "
                f"{'above' if p(resid) > 0 else 'below'} the usual value at "
                f"{int(p(hour)):02d}h{' on this weekday' if p(weekly) else ''}"
            ),
            value,
            expected,
            expected - quiet * seas_sd,
            expected + quiet * seas_sd,
        )

    # frozen register ----------------------------------------------------------
    # A meter register that stops moving reads as zero consumption. A run of
    # zeros is a frozen register where the meter's rate is seldom exactly
    # zero at this time of day (``pz``, the share of zero rates per daily
    # bin, counters only), or where this hour usually counts several times
    # the smallest rate the meter has shown (``rq``, its idle use). A site
    # idle at zero every night learns that in its first night and is not
    # reported; once a bin has been seen for a few weeks a frozen register
    # moves its share by a few percent a day, so it stays reported.
    zero_share = xp.take(s.pz, near)
    # (The share of zero rates is one profile: readings on and off shift.)
    hn_near = xp.minimum(hn_own + hn_other, 99)
    frozen_score = xp.zeros
    if xp.any(zero_run):
        # A bin seen too seldom says nothing yet about zeros at this hour.
        known = hn_near >= ZERO_SHARE_MIN
        frozen_score = xp.where(known, _run_score(xp, run, zero_share), 0.0)
        busy = _ramp(xp, season_expected / s.rq, FROZEN_BUSY, 4 * FROZEN_BUSY)
        busy_hour = xp.not_(xp.isnan(s.rq)) & used & warm
        frozen_score = xp.where(busy_hour, xp.fmax(frozen_score, busy), frozen_score)
        frozen_score = xp.where(zero_run, frozen_score, 0.0)
    frozen = zero_run & (frozen_score > 0)
    explain.add(
        frozen,
        Detector.STUCK,
        frozen_score,
        lambda p: (
            f"the register has not moved for {held_for(p)}; at "
            f"{int(p(hour)):02d}h its rate is zero in {100 * p(zero_share):.1f} % of "
            f"readings and usually {p(season_expected):.3g} per hour"
        ),
        value,
        season_expected,
    )
    evidence = xp.where(frozen, xp.fmax(evidence, 3.0 * frozen_score), evidence)
    stuck_fired = stuck_fired | frozen

    evidence = xp.fmax(evidence, level_evidence)

    # level_shift (two-sided CUSUM on the standardised residual) ---------------
    shifting = warm & (u != 0.0)  # (a NaN u counts, as Python's truth says)
    uc = xp.fmax(-CUSUM_CLIP, xp.fmin(CUSUM_CLIP, u))
    cp = xp.where(shifting, xp.fmax(0.0, s.cp + uc - CUSUM_K), s.cp)
    cn = xp.where(shifting, xp.fmax(0.0, s.cn - uc - CUSUM_K), s.cn)
    c = xp.fmax(cp, cn)
    evidence = xp.where(shifting, xp.fmax(evidence, c / CUSUM_H), evidence)
    score = xp.where(shifting, _ramp(xp, c, CUSUM_H / 2, CUSUM_H), 0.0)
    shift_fired = score > 0
    explain.add(
        shift_fired,
        Detector.LEVEL_SHIFT,
        score,
        lambda p: (
            f"a sustained shift {'up' if p(cp) > p(cn) else 'down'}: "
            f"CUSUM {p(c):.1f} (decision interval {CUSUM_H:g})"
        ),
        value,
        expected,
    )
    # A shift confirmed: the CUSUM measures from the new level on. It is an
    # offset of its own, fading as the level catches up, so the level under
    # the daily profile is not jolted.
    reanchor = shifting & (c >= CUSUM_H)
    s.cp = xp.where(reanchor, 0.0, cp)
    s.cn = xp.where(reanchor, 0.0, cn)

    # gap --------------------------------------------------------------------
    usual = xp.not_(xp.isnan(s.dt)) & (s.dt != 0.0)
    gap_ratio = dt_s / xp.where(usual, s.dt, 1.0)
    gap = warm & has_ts & usual & (gap_ratio >= GAP_FACTOR)
    gap_score = xp.zeros
    if xp.any(gap):
        logs = xp.math(math.log, xp.where(gap, gap_ratio, 1.0))
        gap_score = xp.where(gap, _ramp(xp, logs, *_LOG_GAP), 0.0)
    explain.add(
        gap,
        Detector.GAP,
        gap_score,
        lambda p: (
            f"{p(dt_s):.0f} s since the previous reading, "
            f"{p(gap_ratio):.1f} times the usual interval"
        ),
        dt_s,
        s.dt,
    )
    gap_fired = gap & (gap_score > 0)

    # counter ----------------------------------------------------------------
    backwards = counter & (value < 0)
    explain.add(
        backwards,
        Detector.COUNTER,
        1.0,
        lambda _: "a negative consumption rate: the meter went backwards",
        value,
        0.0,
        0.0,
    )

    # combination ------------------------------------------------------------
    g = xp.math(math.log1p, xp.fmin(evidence, EVIDENCE_CAP))
    judged = xp.not_(learning) & (evidence > 0)
    # Distinct detectors that fired and may explain a combined score: not
    # ``deviation`` (NOT_COMBINED), nor those the daily profile outranks.
    fired = (
        xp.where(explains, 0, xp.int_(robust_fired) + ewma_fired)
        + stuck_fired
        + rate_fired
        + seasonal_fired
        + shift_fired
        + gap_fired
        + backwards
    )
    # A combined score needs an explanation (some detector fired) and
    # evidence at one detector's alarm level.
    reports = (
        judged & (evidence >= EVIDENCE_GATE) & (s.gn >= EVIDENCE_MIN) & (fired > 0)
    )
    raw = _ramp(xp, g - s.gq, G_QUIET, G_FULL)
    # Corroboration: one detector alone (of those warmed up) earns a share of
    # the score; independent views agreeing earn all of it.
    raw = raw * xp.fmin(1.0, fired / xp.where(warm, CORROBORATION, 1.0))
    raw = xp.where(backwards, 1.0, raw)
    # Refractory: after reporting a peak, stay quiet for REFRACTORY_READINGS
    # readings unless the evidence escalates.
    peak = reports & (raw > s.pk)
    combined = xp.where(peak, raw, 0.0)
    pk = xp.where(peak, raw, s.pk)
    pa = xp.where(peak, 0.0, s.pa)
    # The usual evidence: a running estimate of the EVIDENCE_QUANTILE of
    # log(1 + evidence) by stochastic approximation (each reading moves it up
    # by QUANTILE_RATE * q or down by QUANTILE_RATE * (1 - q), so it settles
    # where a share 1 - q of the readings lies above it). It starts at the
    # largest of the first EVIDENCE_MIN values.
    hit = EVIDENCE_QUANTILE - xp.where(g <= s.gq, 1.0, 0.0)
    s.gq = xp.where(
        judged,
        xp.where(s.gn < EVIDENCE_MIN, xp.fmax(s.gq, g), s.gq + QUANTILE_RATE * hit),
        s.gq,
    )
    s.gn = xp.where(judged, xp.minimum(s.gn + 1, 10_000), s.gn)
    # The daily profile taking over changes what is usual: the first two
    # days' evidence (each start-up and stop a surprise without a profile)
    # held the estimate up for weeks, as it falls by QUANTILE_RATE * (1 - q)
    # a reading (a plant's 40 kW spike at noon went unreported for a week).
    # It starts again from the profile's first EVIDENCE_MIN judged readings.
    restart = daily & (age - step_s < DAILY_AFTER_S)
    s.gq = xp.where(restart, 0.0, s.gq)
    s.gn = xp.where(restart, 0, s.gn)
    s.pa = pa + 1
    s.pk = xp.where(s.pa >= REFRACTORY_READINGS, 0.0, pk)

    # learn ------------------------------------------------------------------
    flagged = (combined > 0) | (z_robust > Z_FULL) | (z_seasonal > Z_FULL)
    x = xp.where(flagged & warm, xp.fmin(xp.fmax(value, band_low), band_high), value)
    # The profile is clipped to its own band: the rolling median's band is
    # too narrow for a series that swings through its daily cycle.
    xs = xp.where(
        flagged & used & warm,
        xp.fmin(
            xp.fmax(value, expected - Z_QUIET * seas_sd), expected + Z_QUIET * seas_sd
        ),
        value,
    )
    # A stuck sensor or frozen register says nothing about the process:
    # learning its value would teach the profile to expect it tomorrow, and
    # the next normal day would read as a jump. Nor does it say anything
    # about the spread (below): its residuals of 0 would shrink the spread of
    # the hours it froze through, and the next day's ordinary readings there
    # would read as a jump all the same.
    x = xp.where(stuck_fired, em, x)
    xs = xp.where(stuck_fired, season_expected, xs)
    s.t0 = xp.where(xp.isnan(s.t0), ts_s, s.t0)
    dt = s.dt
    s.dt = xp.where(
        dt_s > 0,
        xp.where(
            xp.isnan(dt),
            dt_s,
            xp.where(dt_s < GAP_FACTOR * dt, dt + INTERVAL_ALPHA * (dt_s - dt), dt),
        ),
        dt,
    )
    first = n == 0
    later = xp.not_(first)
    a = xp.maximum(1.0 / (n + 1), EWMA_ALPHA)
    d = x - em
    s.em = xp.where(first, x, em + a * d)
    s.ev = xp.where(later, (1 - a) * (s.ev + a * d * d), s.ev)
    ar = xp.maximum(1.0 / xp.maximum(n, 1.0), RATE_ALPHA)
    step_abs = xp.abs(diff)
    clip = xp.where(warm, xp.fmin(step_abs, 4 * step_sd), step_abs)
    s.dm = xp.where(later & has_last, s.dm + ar * (clip - s.dm), s.dm)
    al = xp.fmax(1.0 / (n + 1), xp.fmin(1.0, step_s / LEVEL_TAU_S))
    d = x - s.lv
    s.lv = xp.where(first, x, s.lv + al * d)
    s.lvv = xp.where(later, (1 - al) * (s.lvv + al * d * d), s.lvv)
    s.ca = xp.where(later, s.ca - al * s.ca, s.ca)
    s.ca = xp.where(reanchor, value - expected, s.ca)
    s.em = xp.where(reanchor, value, s.em)
    # The level under the profiles learns what they do not explain, but only
    # on shift and from a reading its own profile judges: a profile still
    # forming (the first two days, a first rest day) or one seen once a week
    # would move the level by its own error, and every profile with it (a
    # first Sunday moved a plant's level by a quarter of its load in
    # `riskwatch bench scenarios`). Off shift, the knots follow by learning.
    ls = xp.where(first, x, s.ls)
    err = xs - ls - learned_profile
    s.ls = xp.where(xp.not_(off) & used & (hn_own > 0), ls + al * err, ls)
    # A knot seen for the first time starts from the reading itself and the
    # spread it was judged by; its neighbour, if seen, learns nothing from
    # it (it would learn the difference from another profile or from none:
    # a first rest day's knots took a workday's error for days).
    fresh = hn_own == 0
    xp.put(s.hn, near + own, unless_far(stored_own, xp.minimum(hn_own + 1, 99)))
    hn_own = xp.minimum(hn_own + 1, 99)
    hn_near = xp.minimum(hn_near + 1, 99)
    ap = xp.maximum(1.0 / hn_own, PROFILE_ALPHA)
    # The other knot of the pair learns only if seen, and no faster than its
    # own readings allow (a young knot must not drag one learned all week);
    # where it is unseen the near knot stood alone and learns the whole error.
    far_seen = hn_far > 0
    ap_far = xp.fmin(ap, xp.maximum(1.0 / xp.maximum(hn_far, 1), PROFILE_ALPHA))
    rate0 = xp.where(
        w1 < 0.5, ap * xp.where(far_seen, 1.0 - w1, 1.0), ap_far * (1.0 - w1)
    )
    rate1 = xp.where(w1 >= 0.5, ap * xp.where(far_seen, w1, 1.0), ap_far * w1)
    rate0 = xp.where(xp.not_(far_seen) & (w1 >= 0.5), 0.0, rate0)
    rate1 = xp.where(xp.not_(far_seen) & (w1 < 0.5), 0.0, rate1)
    # The residual statistics are learned from the first reading, so that
    # the profile's spread is known by the time the profile is used; from
    # the residual of the profile's own knots, like the knots themselves.
    r = xs - (season_expected - profile + learned_profile)
    av = xp.maximum(1.0 / (n + 1), SEASON_VAR_ALPHA)
    # Where the profile judges, the spreads (the knot's and the overall one)
    # learn each residual clipped to SPREAD_CLIP of them, so one shift of 30
    # spreads does not widen the band that should catch it for 15 minutes.
    # The overall spread does not learn off shift before the off-shift
    # profile judges: a rest day's first residuals are against a workday's
    # knots or one other day's, and widened every knot's floor.
    rc = xp.where(used, xp.fmin(xp.abs(r), SPREAD_CLIP * seas_sd), xp.abs(r))
    unjudged = stuck_fired | (off & xp.not_(used))
    s.sv = xp.where(unjudged, s.sv, (1 - av) * s.sv + av * rc * rc)
    dev = rc
    dev = xp.where(stuck_fired, had_near, dev)
    r_day = r + xp.where(weekly, dow_day, 0.0)
    az = xp.maximum(1.0 / hn_near, SAME_ALPHA)
    # The knot's usual step learns the residual's step, clipped as the
    # spreads are (the edge of a square wave, between two knots, is within
    # four of the knot's spreads; a spike on a calm knot is not).
    r_step = xp.fmin(xp.abs(resid - s.lr), SPREAD_CLIP * xp.fmax(seas_sd, step_sd))
    # Everything stored to 7 significant digits (to bound the state), in one
    # call: the two knots, the bin's spread, the weekday offset, the bin's
    # share of zero rates, the knot's usual step and the value (the window,
    # the smallest rate).
    new_k0, new_k1, new_had, new_dow, new_pz, new_hds, value_q = xp.q(
        [
            xp.where(fresh, xp.where(w1 < 0.5, xs - ls, own_k0), own_k0 + rate0 * err),
            xp.where(fresh, xp.where(w1 >= 0.5, xs - ls, own_k1), own_k1 + rate1 * err),
            xp.where(fresh, had_near, had_near + ap * (dev - had_near)),
            dow_day + WEEK_ALPHA * (r_day - dow_day),
            zero_share + az * ((value == 0.0) - zero_share),
            own_hds + ap * (r_step - own_hds),
            value,
        ]
    )
    xp.put(s.hod, k0 + own, unless_far(own_k0, new_k0))
    xp.put(s.hod, k1 + own, unless_far(own_k1, new_k1))
    xp.put(s.had, near + own, unless_far(own_had, new_had))
    stepped_here = xp.where(used & has_last, new_hds, own_hds)
    xp.put(s.hds, near + own, unless_far(own_hds, stepped_here))
    xp.put(s.dow, day, xp.where(daily & xp.not_(far), new_dow, dow_day))
    xp.put(s.pz, near, xp.where(counter & xp.not_(far), new_pz, zero_share))
    smallest = counter & (value > 0) & (xp.isnan(s.rq) | (value < s.rq))
    s.rq = xp.where(smallest, value_q, s.rq)
    xp.put(s.window, xp.int_(n % WINDOW), value_q)
    s.n = n + 1
    s.run = run
    s.run_start = run_start
    s.last_value = value
    # The residual from the daily profile, learned or not: the first step
    # measured against the profile must not compare it with a residual from
    # the plain level (a jump of the whole daily swing).
    s.lr = value - season_expected
    if kept is not None:
        for name, old in kept.items():
            setattr(s, name, xp.where(far, old, getattr(s, name)))
    return combined, learning, explain.findings


_RECORD = struct.Struct(
    f"<{SLOT['run_start']}dq{FLOATS - SLOT['run_start'] - 1}d{PROFILE_KNOTS}B"
)
_RUN_START = SLOT["run_start"]
_PROFILES = (
    ("window", W0, HOD0),
    ("hod", HOD0, HAD0),
    ("had", HAD0, DOW0),
    ("dow", DOW0, PZ0),
    ("pz", PZ0, HDS0),
    ("hds", HDS0, FLOATS),
)


def _one(
    record: bytes, last_ts: int, metric: Metric, value: float, ts_ns: int, off: bool
) -> tuple[bytes, Scored]:
    """One series on Python floats."""
    fields = _RECORD.unpack(record)
    s = _State()
    for name, item in zip(SCALARS, fields, strict=False):
        setattr(s, name, item)
    for name, start, end in _PROFILES:
        setattr(s, name, list(fields[start:end]))
    s.hn = list(fields[FLOATS:])
    xp = _Floats(1)
    combined, learning, findings = _detect(
        xp,
        s,
        last_ts,
        metric in COUNTERS,
        metric in ZERO_IS_NORMAL,
        _FLOOR[metric],
        value,
        ts_ns,
        off,
    )
    packed = _RECORD.pack(
        *(getattr(s, name) for name in SCALARS),
        *s.window,
        *s.hod,
        *s.had,
        *s.dow,
        *s.pz,
        *s.hds,
        *s.hn,
    )
    return packed, Scored(combined, learning, findings.get(0, []))


_new_scored: Callable[[tuple[float, bool, list[Finding]]], Scored] = partial(
    tuple.__new__, Scored
)

# Per metric: 1 if a counter (scored as a rate), 2 if zero is a normal value.
_KIND = {m: (m in COUNTERS) + 2 * (m in ZERO_IS_NORMAL) for m in Metric}


def _kinds(metrics: Sequence[Metric]) -> tuple[Any, Any, Any]:
    kinds = np.fromiter(map(_KIND.__getitem__, metrics), np.int8, len(metrics))
    floors = np.fromiter(map(_FLOOR.__getitem__, metrics), np.float64, len(metrics))
    return (kinds & 1) != 0, (kinds & 2) != 0, floors


def _wave(
    records: list[bytes],
    last_ts: list[int],
    metrics: Sequence[Metric],
    values: Floats,
    ts_ns: Sequence[int],
    off: Sequence[bool],
) -> tuple[list[bytes], list[Scored]]:
    """Many series on numpy arrays, one element per series."""
    block = gather(records)
    floats = block[:, :FLOAT_BYTES].view("<f8")
    scalars = np.ascontiguousarray(floats[:, :W0].T)
    s = _State()
    for name, column in zip(SCALARS, scalars, strict=True):
        setattr(s, name, column)
    s.run_start = scalars[_RUN_START].view("<i8")
    for name, start, end in _PROFILES:
        setattr(s, name, floats[:, start:end])  # views: puts land in the block
    s.hn = block[:, FLOAT_BYTES:]
    xp = _Arrays(len(records))
    with np.errstate(all="ignore"):  # Python floats give inf and NaN silently
        combined, learning, findings = _detect(
            xp,
            s,
            np.array(last_ts, dtype=np.int64),
            *_kinds(metrics),
            values,
            np.array(ts_ns, dtype=np.int64),
            np.array(off, dtype=np.bool_),
        )
    for name, i in SLOT.items():
        column = getattr(s, name)
        if name == "run_start":
            column = np.asarray(column, dtype=np.int64).view("<f8")
        floats[:, i] = column
    # (tuple.__new__ by map: a third of the cost of calling Scored per row.)
    scored = list(
        map(
            _new_scored,
            zip(
                combined.tolist(),
                learning.tolist(),
                [findings.get(i) or [] for i in range(len(records))],
                strict=True,
            ),
        )
    )
    return scatter(block), scored


def step(
    records: Sequence[bytes],
    last_ts: Sequence[int | None],
    metrics: Sequence[Metric],
    values: Sequence[float],
    ts_ns: Sequence[int],
    off_shift: Sequence[bool],
) -> tuple[list[bytes | None], list[Scored]]:
    """Score then learn one reading of each of B *different* series.

    Args:
        records: the series' records in the current layout
            (:mod:`stream_jobs.detection.state`).
        last_ts: each series' last learned timestamp (ns), None for none.
        metrics, values, ts_ns: the readings (ns since the epoch).
        off_shift: per reading, whether it was taken off shift (judged and
            learned by the off-shift daily profile).

    Returns:
        Per reading, the series' new record (None where the value is not
        finite: nothing is learned) and its :class:`Scored`. A wave of fewer
        than NUMPY_FROM series runs on Python floats, a larger one on numpy:
        the same detector code, the same results.
    """
    readings = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(readings)
    if finite.all() and len(records) >= NUMPY_FROM:
        seen = [NO_TS if t is None else int(t) for t in last_ts]
        new, results = _wave(list(records), seen, metrics, readings, ts_ns, off_shift)
        return list(new), results
    size = len(records)
    out: list[bytes | None] = [None] * size
    scored: list[Scored | None] = [None] * size
    live = np.flatnonzero(finite).tolist()
    for i in np.flatnonzero(~finite).tolist():
        n = _RECORD.unpack_from(records[i])[SLOT["n"]]
        missing = Finding(
            detector=Detector.MISSING.value, score=0.0, detail="not a number"
        )
        scored[i] = Scored(0.0, n < LEARNING_READINGS, [missing])
    seen = [NO_TS if (t := last_ts[i]) is None else int(t) for i in live]
    if len(live) < NUMPY_FROM:
        for i, last in zip(live, seen, strict=True):
            out[i], scored[i] = _one(
                records[i],
                last,
                metrics[i],
                float(readings[i]),
                int(ts_ns[i]),
                bool(off_shift[i]),
            )
    else:
        new, results = _wave(
            [records[i] for i in live],
            seen,
            [metrics[i] for i in live],
            readings[live],
            [ts_ns[i] for i in live],
            [off_shift[i] for i in live],
        )
        for i, record, result in zip(live, new, results, strict=True):
            out[i], scored[i] = record, result
    return out, [result for result in scored if result is not None]
