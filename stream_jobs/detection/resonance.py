"""Resonance: adaptive-resonance categories of downsampled window shapes,
with a vigilance that adapts to the series (the idea of ARTime, NAB's best
published detector, reimplemented with causal normalisation and bounded
memory).

A streaming, causal detector. Every :attr:`~ResonanceParams.step` readings
(7 with the defaults) the block of readings since the last step becomes one
*point*: the block's extreme reading farthest from a fast running mean (its
mean when the extreme is within 10 % of it), normalised by the range learnt
in the learning period, quantised to :attr:`~ResonanceParams.levels` levels
and pulled onto the running median level when it lies within
:attr:`~ResonanceParams.chomp` of it (small wobbles around the usual level
are not shapes). The *feature* of a point is its last
:attr:`~ResonanceParams.window` points (their levels) and the Haar wavelet
coefficients of the same window scaled to [0, 1], so a feature holds both
where the series is and what shape it draws.

Features are learnt as categories of a distributed dual-vigilance fuzzy ART
(fuzzy-AND match with complement coding, the current level weighted as an
"energy" term): a feature matching a category at least the upper vigilance
refines it, one between the lower and upper vigilance starts a sibling
category, and one below the lower vigilance starts a new cluster, which is
the anomaly. Both vigilances adapt: the upper one follows the mean match,
the lower one rises towards the weakest recent match while matches are good
and falls when they are poor, never below the mean match of the anomalies
reported so far. A report is masked for a short time after a report or a
vigilance change unless the match is much worse than at the last report, so
an anomaly is reported once at its onset, which is what NAB rewards. The
score of a report is its distance below the vigilances, in (0, 1]; every
other reading scores 0.

Differences from ARTime (see docs/nab.md): ARTime normalises by the whole
file's minimum and maximum and sizes its learning period from the file's
length, which a stream does not know; here the range is the learning
period's, widened by :attr:`~ResonanceParams.margin` of its span on each
side (readings beyond are clipped), and the learning period is fixed. Its
category memory grows without bound; here it holds at most
:attr:`~ResonanceParams.categories`, the least used (then oldest) replaced.
Weights are kept as uint8 (1/255 steps) so the state is small and exact.

The score is 0 through the learning period: the whole points within the
first :attr:`~ResonanceParams.learning` readings (86 points of 7, 602
readings with the defaults: 50 h 10 min of 5-minute readings). At its end
the learning points are replayed once (O(learning^2 / step^2) work, once
per series); afterwards each point costs O(categories * window) and the
readings between points O(1). The state is a record of at most
:func:`state_bytes` bytes (2,356 with the defaults), restored exactly by
:meth:`Resonance.from_bytes`.
Deterministic: weights are integers, other arithmetic float64 numpy in a
fixed order.

Readings beyond :data:`FAR` (1e30) in magnitude count as that far.

Known limits: a series flat through the whole learning period has no range,
so later changes are measured in its own units, clipped to one unit; a
change smaller than the chomp band (7.5 % of the widened range) is not seen;
an anomaly inside the learning period is learnt as normal.

Example:
    >>> import math
    >>> detector = Resonance()
    >>> scores = [detector.score(10 + math.sin(i / 8)) for i in range(3000)]
    >>> max(scores)
    0.0
    >>> max(detector.score(30.0) for _ in range(7)) > 0
    True
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from riskwatch.errors import ConfigError

__all__ = [
    "FAR",
    "Resonance",
    "ResonanceParams",
    "ResonanceParamsError",
    "bounded",
    "learning_state_bytes",
    "state_bytes",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Readings beyond this magnitude count as this far (a corrupted 1.7e308
# still scores as far), so that sums, spans and float32 learning points stay
# finite.
FAR = 1e30

# Weights and features in 1/255 steps.
_FULL = 255
# The upper vigilance never exceeds this (ARTime's cap): a series whose
# features all match perfectly still starts categories for small changes.
_UPPER_CAP = 0.97
# Within a vigilance update: the share of the gap by which the lower
# vigilance rises towards the weakest recent match, the mismatches that count
# when it falls (above 0.05), their cap (0.37) and the smallest fall (0.01).
_RISE = 0.19
_MISMATCH_FLOOR = 0.05
_MISMATCH_CAP = 0.37
_MIN_FALL = 0.01
# A block's extreme counts as a point only beyond this share of its mean.
_SPIKE_SHARE = 0.1

# Header: readings (int64); points, last report point, last vigilance update
# point, points since the last new cluster, categories held, median level,
# points below and above it, masked after a new cluster, reports (int32
# each); category clock (uint32); running mean, match at the last report,
# lower and upper vigilance, mean match, sum and last of the report matches,
# low and high end of the range (float64 each).
_HEADER = struct.Struct("<q10iI9d")


class ResonanceParamsError(ConfigError):
    """A resonance parameter is out of range."""


@dataclass(frozen=True)
class ResonanceParams:
    """The detector's parameters, one set for every series.

    Attributes:
        learning: readings the learning period spans at most (default 602,
            about NAB's probationary period of a 4,032-reading file); it
            ends with the last whole point within them (86 points of 7, 602
            readings, by default).
        horizon: readings that set the step and the trend window (default
            750, NAB's longest probationary period): the vigilances adapt
            every half trend window, from the matches of the last one.
        window: points per feature window, a power of two (default 8).
        windows_per_learning: horizon points per window: the step
            is ``horizon // (window * windows_per_learning)`` readings
            (default 13: 7 readings, 35 min at 5-minute readings, so a
            window spans 4 h 40 min).
        levels: quantisation levels of the normalised range (default 80).
        chomp: a point within this share of the range of the running
            median level is put on it (default 0.075).
        vigilance: the vigilance the learning period's points are first
            clustered with, to choose the starting vigilance (default 0.8).
        margin: the learning period's range is widened by this share of its
            span on each side (default 0.5).
        categories: categories held at most (default 40).

    Raises:
        ResonanceParamsError: a value out of range, naming the field.
    """

    learning: int = 602
    horizon: int = 750
    window: int = 8
    windows_per_learning: int = 13
    levels: int = 80
    chomp: float = 0.075
    vigilance: float = 0.8
    margin: float = 0.5
    categories: int = 40

    def __post_init__(self) -> None:
        if self.window < 2 or self.window & (self.window - 1) or self.window > 64:
            raise ResonanceParamsError(
                f"resonance.window: {self.window!r} must be a power of two in 2..64"
            )
        for name, low, high in (
            ("windows_per_learning", 1, 10_000),
            ("levels", 1, 255),
            ("categories", 2, 1024),
        ):
            value = getattr(self, name)
            if not low <= value <= high:
                raise ResonanceParamsError(
                    f"resonance.{name}: {value!r} is out of range; allowed "
                    f"{low}..{high}"
                )
        if self.horizon < 2:
            raise ResonanceParamsError(
                f"resonance.horizon: {self.horizon!r} must be at least 2 readings"
            )
        if self.learning // self.step < 2 * self.window:
            raise ResonanceParamsError(
                f"resonance.learning: {self.learning!r} readings make "
                f"{self.learning // self.step} points; at least "
                f"{2 * self.window} (two windows) are needed"
            )
        for name in ("chomp", "vigilance", "margin"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ResonanceParamsError(
                    f"resonance.{name}: {value!r} must be a number in [0, 1]"
                )

    @property
    def step(self) -> int:
        """Readings per point."""
        return max(1, (self.horizon - self.horizon % 2) // self.points_per_step)

    @property
    def points_per_step(self) -> int:
        return self.window * self.windows_per_learning

    @property
    def learning_points(self) -> int:
        """Points of the learning period."""
        return self.learning // self.step

    @property
    def trend_points(self) -> int:
        """Points of the trend window (107 by default)."""
        return (self.horizon - self.horizon % 2) // self.step

    @property
    def mask(self) -> int:
        """Points a report masks the next ones for (1.5 windows)."""
        return self.window * 3 // 2


def state_bytes(params: ResonanceParams) -> int:
    """The largest state record for ``params`` (after the learning period;
    while learning it holds the learning points instead of categories)."""
    return max(_running_bytes(params), learning_state_bytes(params))


def _common_bytes(params: ResonanceParams) -> int:
    return _HEADER.size + 8 * params.step  # the current block, float64


def learning_state_bytes(params: ResonanceParams) -> int:
    """The state record's length while learning."""
    return _common_bytes(params) + 4 * params.learning_points  # float32


def _running_bytes(params: ResonanceParams) -> int:
    features = 2 * params.window
    return (
        _common_bytes(params)
        + params.window  # the window's levels, uint8
        + 4 * (params.levels + 1)  # level counts, uint32
        + 2 * (params.trend_points // 2 + 1)  # recent matches, float16
        + 2 * (params.trend_points + 1)  # recent mismatches, float16
        # per category: weights (uint8, complement coded), uses (uint16),
        # last use (uint32)
        + params.categories * (2 * features + 2 + 4)
    )


def bounded(value: float) -> float:
    """``value`` clipped to [-FAR, FAR].

    Raises:
        ValueError: ``value`` is not finite.
    """
    if not math.isfinite(value):
        raise ValueError(f"value: {value!r} is not a finite number")
    return min(max(value, -FAR), FAR)


def _haar(window: FloatArray) -> FloatArray:
    """Orthonormal Haar coefficients of a power-of-two-long window: the
    overall average, then the details from coarsest to finest (each the
    second half of a pair minus the first, over sqrt 2)."""
    details = []
    approx = window
    while approx.size > 1:
        first, second = approx[0::2], approx[1::2]
        details.append((second - first) / math.sqrt(2.0))
        approx = (first + second) / math.sqrt(2.0)
    return np.concatenate([approx, *details[::-1]])


def _unit(values: FloatArray) -> FloatArray:
    """``values`` shifted and scaled onto [0, 1] (unchanged when constant)."""
    shifted: FloatArray = values - values.min()
    top = float(shifted.max())
    return shifted / top if top != 0 else shifted


class _Art:
    """Fuzzy ART categories in uint8 (complement coded)."""

    def __init__(self, features: int, capacity: int | None) -> None:
        self.features = features
        self.capacity = capacity
        self.weights = np.zeros((0, 2 * features), dtype=np.uint8)
        self.uses = np.zeros(0, dtype=np.uint16)
        self.last_use = np.zeros(0, dtype=np.uint32)
        self.clock = 0
        self.lower = 0.0
        self.upper = 0.0

    def train(
        self, feature: IntArray, *, learn: bool = True
    ) -> tuple[bool, float, float]:
        """Match ``feature`` (uint8 levels of 0..255), learn it unless
        ``learn`` is false; returns (a new cluster, best match, its energy
        match)."""
        coded = np.concatenate([feature, _FULL - feature]).astype(np.int64)
        self.clock += 1
        if self.weights.shape[0] == 0:
            # The first category matches everything halfway; the first
            # feature itself is not learnt (as in fuzzy ART's set-up).
            self.weights = np.full((1, coded.size), _FULL, dtype=np.uint8)
            self.uses = np.zeros(1, dtype=np.uint16)
            self.last_use = np.array([self.clock], dtype=np.uint32)
            return False, 0.0, 0.0
        weights = self.weights.astype(np.int64)
        common = np.minimum(coded, weights)
        sizes = weights.sum(axis=1)
        shared = common.sum(axis=1)
        similarity = np.where(sizes > 0, shared / np.maximum(sizes, 1), 0.0)
        # The current level and its complement: the "energy" of the feature.
        last = self.features - 1
        energy_size = weights[:, last] + weights[:, -1]
        energy = np.where(
            energy_size > 0,
            (common[:, last] + common[:, -1]) / np.maximum(energy_size, 1),
            0.0,
        )
        match = similarity**3 * energy**2
        order = np.argsort(-match, kind="stable")
        best = int(order[0])
        found, found_energy = float(match[best]), float(energy[best])
        if not learn:
            return False, found, found_energy
        new_cluster = True
        for j in order:
            if match[j] >= self.upper:
                self.weights[j] = common[j]
                self.uses[j] = min(int(self.uses[j]) + 1, 0xFFFF)
                self.last_use[j] = self.clock
                new_cluster = False
            elif match[j] >= self.lower and new_cluster:
                self._add(coded)
                new_cluster = False
                break
            else:
                break
        if new_cluster:
            self._add(coded)
        return new_cluster, found, found_energy

    def _add(self, coded: IntArray) -> None:
        if self.capacity is not None and self.weights.shape[0] >= self.capacity:
            # The least used category goes, the oldest of them first.
            j = int(np.lexsort((self.last_use, self.uses))[0])
            self.weights[j] = coded
            self.uses[j] = 0
            self.last_use[j] = self.clock
            return
        self.weights = np.vstack([self.weights, coded.astype(np.uint8)])
        self.uses = np.append(self.uses, np.uint16(0))
        self.last_use = np.append(self.last_use, np.uint32(self.clock))


class _Reader:
    """Consecutive numpy arrays out of one bytes record."""

    def __init__(self, data: bytes, at: int) -> None:
        self._data = data
        self._at = at

    def take(self, dtype: str, count: int) -> npt.NDArray[np.generic]:
        array = np.frombuffer(self._data, dtype=dtype, count=count, offset=self._at)
        self._at += array.nbytes
        return array


class Resonance:
    """One series' resonance detector: :meth:`score` a reading (from earlier
    readings only), then learn it."""

    def __init__(self, params: ResonanceParams | None = None) -> None:
        self.params = params or ResonanceParams()
        p = self.params
        self._readings = 0
        self._block = np.zeros(p.step, dtype=np.float64)
        # float32: the learning points are the largest part of the state
        # while learning, beside a detector past its learning period.
        self._learnt = np.zeros(p.learning_points, dtype=np.float32)
        self._points = 0
        self._mean = 0.0
        self._low = 0.0
        self._high = 0.0
        self._levels = np.zeros(p.window, dtype=np.uint8)
        self._counts = np.zeros(p.levels + 1, dtype=np.uint32)
        self._median = self._below = self._above = 0
        self._matches = np.ones(p.trend_points // 2 + 1, dtype=np.float16)
        self._mismatches = np.zeros(p.trend_points + 1, dtype=np.float16)
        self._art = _Art(2 * p.window, p.categories)
        self._last_report = 0
        self._report_match = 0.0
        self._last_update = 0
        self._masked = False
        self._fresh = 0
        self._mean_match = 0.0
        self._reports = 0
        self._report_sum = 0.0
        self._report_last = 0.0

    @property
    def learning(self) -> bool:
        """Still in the learning period (scores are 0)."""
        return self._points < self.params.learning_points

    def score(self, value: float) -> float:
        """The anomaly score of ``value`` in [0, 1]; learns it afterwards.

        Raises:
            ValueError: ``value`` is not finite.
        """
        p = self.params
        self._block[self._readings % p.step] = bounded(value)
        self._readings += 1
        if self._readings % p.step:
            return 0.0
        point = self._point()
        if self.learning:
            self._learnt[self._points] = point
            self._points += 1
            if not self.learning:
                self._end_learning()
            return 0.0
        self._points += 1
        return self._detect(self._feature(point), self._points)

    def _point(self) -> float:
        block = self._block
        mean = float(block.mean())
        if self._readings == self.params.step:
            self._mean = mean
        self._mean = (self._mean + mean) / 2.0
        high, low = float(block.max()), float(block.min())
        point = low if abs(high - self._mean) < abs(low - self._mean) else high
        return mean if abs(point - mean) < _SPIKE_SHARE * mean else point

    def _end_learning(self) -> None:
        p = self.params
        learnt = self._learnt.astype(np.float64)
        low, high = float(learnt.min()), float(learnt.max())
        span = high - low
        self._low, self._high = low - p.margin * span, high + p.margin * span
        features = np.array(
            [self._feature(float(point), k) for k, point in enumerate(learnt, 1)]
        )
        vigilance = self._starting_vigilance(features[p.window - 1 :])
        self._art.lower = self._art.upper = vigilance
        for k, feature in enumerate(features, start=1):
            self._detect(feature, k)

    def _feature(self, point: float, index: int | None = None) -> IntArray:
        """The uint8 feature of the next point (``index``: its number,
        1-based; by default the points so far)."""
        p = self.params
        k = self._points if index is None else index
        scaled = point - self._low
        if self._high != self._low:
            scaled /= self._high - self._low
        level = round(min(max(scaled, 0.0), 1.0) * p.levels)
        self._track_median(level, k)
        median = self._median
        if abs(level - median) < p.chomp * p.levels:
            level = median
        self._levels = np.append(self._levels[1:], np.uint8(level))
        if k < p.window:
            return np.zeros(2 * p.window, dtype=np.int64)
        window = self._levels.astype(np.float64) / p.levels
        shape = _unit(_haar(_unit(window)))
        feature = np.concatenate([shape, window])
        coded: IntArray = np.rint(feature * _FULL).astype(np.int64)
        return coded

    def _track_median(self, level: int, k: int) -> None:
        """A running median of the levels from their counts (moved by at most
        one occupied level per point, so close to but not exactly the
        median)."""
        self._counts[level] += 1
        if k == 1:
            self._median = level
        if self._median > level:
            self._below += 1
        elif self._median < level:
            self._above += 1
        half = k // 2
        if half < self._above:
            self._below += int(self._counts[self._median])
            self._median += 1
            while self._counts[self._median] == 0:
                self._median += 1
            self._above -= int(self._counts[self._median])
        elif half < self._below:
            self._above += int(self._counts[self._median])
            self._median -= 1
            while self._counts[self._median] == 0:
                self._median -= 1
            self._below -= int(self._counts[self._median])

    def _starting_vigilance(self, features: IntArray) -> float:
        """The mean match of the learning features' second half, clustered at
        :attr:`~ResonanceParams.vigilance` with the least typical first."""
        p = self.params
        x = features.astype(np.float64) / _FULL
        norms = np.sqrt((x * x).sum(axis=1))
        outer = np.outer(norms, norms)
        similar = np.where(outer > 0, (x @ x.T) / np.where(outer > 0, outer, 1.0), 0.0)
        # With a zero vector the similarity is 1 minus the other's norm.
        zero = norms == 0
        similar[zero, :] = 1.0 - norms[None, :]
        similar[:, zero] = 1.0 - norms[:, None]
        np.fill_diagonal(similar, 1.0)
        order = np.argsort(similar.sum(axis=0), kind="stable")
        art = _Art(2 * p.window, None)
        art.lower = art.upper = p.vigilance
        matches = [art.train(features[j])[1] for j in order]
        return float(np.mean(matches[p.learning_points // 2 - 1 :]))

    def _detect(self, feature: IntArray, k: int) -> float:
        p, art = self.params, self._art
        since = k - self._last_report
        update_after_report = since == p.mask
        update_for_trend = k - self._last_update >= p.trend_points // 2
        after_report = since <= p.mask
        if k > p.learning_points + p.mask and self._masked and self._fresh >= p.mask:
            self._masked = False
        new_cluster, match, energy = art.train(feature, learn=k >= p.window)
        self._fresh = 0 if new_cluster else self._fresh + 1
        self._mean_match += (match - self._mean_match) / k
        self._matches = np.append(self._matches[1:], np.float16(match))
        self._mismatches = np.append(
            self._mismatches[1:], np.float16(art.upper - match)
        )
        if since < p.mask and self._reports and match < self._report_last:
            self._report_sum += match - self._report_last
            self._report_last = match
        masking = self._masked or after_report
        worse = match < self._report_match * (0.9 if after_report else 0.7)
        score = 0.0
        if k > p.learning_points and new_cluster and (not masking or worse):
            score = self._confidence(match, energy)
            self._reports += 1
            self._report_sum += match
            self._report_last = match
            self._report_match = match
            self._last_report = k
        self._masked = new_cluster or self._masked
        if k > p.learning_points and (update_after_report or update_for_trend):
            self._adapt(k)
        return score

    def _adapt(self, k: int) -> None:
        p, art = self.params, self._art
        weakest = float(self._matches.min())
        upper = min(_UPPER_CAP, self._mean_match)
        lower = art.lower
        if lower <= weakest:
            lower += (weakest - lower) * _RISE
        else:
            fall = 0.0
            if k > 2 * p.learning_points:
                misses = self._mismatches.astype(np.float64)
                misses = misses[misses > _MISMATCH_FLOOR]
                if misses.size:
                    fall = float(np.minimum(_MISMATCH_CAP, misses).mean())
            lower -= max(_MIN_FALL, fall) / 2.0
            if self._reports:
                lower = max(self._report_sum / self._reports, lower)
        art.lower, art.upper = min(upper, lower), upper
        self._last_update = k
        self._masked = True

    def to_bytes(self) -> bytes:
        """The state as a record of at most :func:`state_bytes` bytes: while
        learning, the learning points; afterwards the categories (padded to
        :attr:`~ResonanceParams.categories`)."""
        art = self._art
        header = _HEADER.pack(
            self._readings,
            self._points,
            self._last_report,
            self._last_update,
            self._fresh,
            art.weights.shape[0],
            self._median,
            self._below,
            self._above,
            int(self._masked),
            self._reports,
            art.clock,
            self._mean,
            self._report_match,
            art.lower,
            art.upper,
            self._mean_match,
            self._report_sum,
            self._report_last,
            self._low,
            self._high,
        )
        parts = [header, self._block.tobytes()]
        if self.learning:
            parts.append(self._learnt.astype("<f4").tobytes())
            return b"".join(parts)
        spare = self.params.categories - art.weights.shape[0]
        parts += [
            self._levels.tobytes(),
            self._counts.astype("<u4").tobytes(),
            self._matches.astype("<f2").tobytes(),
            self._mismatches.astype("<f2").tobytes(),
            art.weights.tobytes(),
            bytes(spare * art.weights.shape[1]),
            art.uses.astype("<u2").tobytes(),
            bytes(2 * spare),
            art.last_use.astype("<u4").tobytes(),
            bytes(4 * spare),
        ]
        return b"".join(parts)

    @classmethod
    def from_bytes(
        cls, data: bytes, params: ResonanceParams | None = None
    ) -> Resonance:
        """A detector restored from :meth:`to_bytes`, exactly.

        Raises:
            ValueError: ``data`` is not a state record for ``params``.
        """
        detector = cls(params)
        p, art = detector.params, detector._art
        if len(data) < _HEADER.size:
            raise ValueError(f"resonance state: {len(data)} bytes is too short")
        fields = _HEADER.unpack_from(data)
        (
            detector._readings,
            detector._points,
            detector._last_report,
            detector._last_update,
            detector._fresh,
            held,
            detector._median,
            detector._below,
            detector._above,
            masked,
            detector._reports,
            art.clock,
        ) = fields[:12]
        (
            detector._mean,
            detector._report_match,
            art.lower,
            art.upper,
            detector._mean_match,
            detector._report_sum,
            detector._report_last,
            detector._low,
            detector._high,
        ) = fields[12:]
        detector._masked = bool(masked)
        expected = learning_state_bytes(p) if detector.learning else _running_bytes(p)
        if len(data) != expected or not 0 <= held <= p.categories:
            raise ValueError(
                f"resonance state: {len(data)} bytes holding {held} categories, "
                f"expected {expected} bytes and at most {p.categories} for {p}"
            )
        reader = _Reader(data, _HEADER.size)
        detector._block = reader.take("<f8", p.step).astype(np.float64)
        if detector.learning:
            detector._learnt = reader.take("<f4", p.learning_points).astype(np.float32)
            return detector
        features = 4 * p.window
        detector._levels = reader.take("u1", p.window).astype(np.uint8)
        detector._counts = reader.take("<u4", p.levels + 1).astype(np.uint32)
        detector._matches = reader.take("<f2", p.trend_points // 2 + 1).astype(
            np.float16
        )
        detector._mismatches = reader.take("<f2", p.trend_points + 1).astype(np.float16)
        weights = reader.take("u1", p.categories * features).reshape(-1, features)
        art.weights = weights[:held].astype(np.uint8)
        art.uses = reader.take("<u2", p.categories)[:held].astype(np.uint16)
        art.last_use = reader.take("<u4", p.categories)[:held].astype(np.uint32)
        return detector

    def _confidence(self, match: float, energy: float) -> float:
        art = self._art
        match = min(0.999, match)
        miss = 1.0 - match
        above_upper = (miss - (1.0 - art.upper)) / miss
        above_lower = (miss - (1.0 - art.lower)) / miss
        score = above_upper * 0.35 + above_lower * 0.65 + (1.0 - energy) * 1.5
        return round(min(max(score, 0.0), 1.0), 6)
