"""Window novelty: is the shape of the latest readings farther from the recent
past than anything seen lately?

A streaming, causal detector in bounded memory, written for the NAB-style
case where an anomaly is a pattern the series has not shown before (a
flattened cycle, a burst of spikes, a new level) rather than one reading far
from a band. At each time scale ``s`` of :attr:`NoveltyParams.scales` the
series is averaged over ``s`` readings into points, and for every new point:

1. the *window* is the last :attr:`~NoveltyParams.window` points;
2. its *distance* ``d`` is the Euclidean distance (in the series' own units)
   to the nearest of the last :attr:`~NoveltyParams.references` windows, a
   one-nearest-neighbour non-conformity, as in KNN-based conformal detectors;
3. its *record* is how far ``d`` exceeds the largest distance of the last
   ``blocks * block`` windows (kept as one maximum per block of ``block``
   windows): ``d / m - 1``, 0 while ``d`` is no record, reported clipped to
   1 (from twice the record on). A change after recent distances that were
   all exactly 0 (a flat line) is a record of :data:`RECORD_CAP`.

A scale's first :attr:`~NoveltyParams.settle` distances are scored 0 and
kept out of its record history (none by default): while its references fill,
every phase of a cycle is seen for the first time.

The score of a reading is the largest record over the scales, *suppressed*
(0) unless it beats the decayed maximum of the records before it (half-life
:attr:`~NoveltyParams.suppress_half_life` readings; records compared up to
:data:`RECORD_CAP`): an anomaly is reported at its onset and not again while
it lasts, which is what NAB rewards and what an officer wants.

Units cancel in the ratio, so one set of parameters serves series of any
magnitude. The score is 0 for the first :attr:`~NoveltyParams.learning`
readings (300: 25 h of 5-minute readings), and until the first block of
distances is complete at a scale. Work per reading is O(references *
window) per scale (no loop over history), and the state is a fixed record of
:func:`state_bytes` bytes (1,488 with the defaults), stored by
:meth:`WindowNovelty.to_bytes` and restored exactly by
:meth:`WindowNovelty.from_bytes`. Scoring is deterministic: reference windows
and distances are kept as float32, the arithmetic is float64 numpy in a
fixed order.

:data:`DAYLONG` adds a third scale whose windows span 21 h 20 min of
5-minute readings, so that a day whose peak does not come is a far window.

Known limits: a slow drift is never a record (each window is close to the
previous ones); an anomaly that recurs within ``blocks * block`` windows is
no longer novel; non-finite readings are the caller's to reject (the
benchmark and the worker's input validation refuse them).

Example:
    >>> novelty = WindowNovelty()
    >>> scores = [novelty.score(10.0 + (i % 7) * 0.1) for i in range(3000)]
    >>> max(scores)
    0.0
    >>> round(novelty.score(25.0), 3)
    1.0
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from riskwatch.errors import ConfigError

__all__ = [
    "DAYLONG",
    "RECORD_CAP",
    "NoveltyParams",
    "NoveltyParamsError",
    "WindowNovelty",
    "state_bytes",
]

FloatArray = npt.NDArray[np.float64]

# Per scale: readings averaged into the pending point (int64), points made
# (int64), the pending sum and the current block's largest distance
# (float64 each).
_SCALE_HEADER = struct.Struct("<qqdd")
# Whole series: readings seen (int64) and the suppression peak (float64).
_HEADER = struct.Struct("<qd")


# Records are compared with each other up to this ratio, and reported
# clipped to 1: the onset of an anomaly that doubles the record scores 1, and
# the scale that sees it a few readings later, with a smaller record, is
# suppressed instead of scoring 1 again. A record after a perfectly flat
# history counts as this cap.
RECORD_CAP = 4.0


class NoveltyParamsError(ConfigError):
    """A window-novelty parameter is out of range."""


@dataclass(frozen=True)
class NoveltyParams:
    """The detector's parameters, one set for every series.

    Attributes:
        window: points per compared window (default 8).
        scales: readings averaged into one point, per time scale (default
            1 and 4: 40 min and 2 h 40 min windows at 5-minute readings).
        references: recent windows each new window is compared with
            (default 16).
        blocks: block maxima of distances kept as the series' record
            history (default 32).
        block: windows per block (default 64): the record spans ``blocks *
            block`` = 2,048 windows, a week of 5-minute readings at scale 1.
        learning: readings scored 0 while the detector learns (default 300).
        settle: a scale's first distances, kept out of its record history
            and scored 0 (default 0: none). The first distances are held
            against few references, so on a cyclic series each first sight
            of a phase is a large distance; kept, it raises the bar for the
            next ``blocks * block`` windows, which at a long scale is the
            whole series. :data:`DAYLONG` settles for as many distances as
            it has references, until its references are full.
        suppress_half_life: readings over which a reported score decays
            before a lower one may be reported (default 200).

    Raises:
        NoveltyParamsError: a value out of range, naming the field.
    """

    window: int = 8
    scales: tuple[int, ...] = (1, 4)
    references: int = 16
    blocks: int = 32
    block: int = 64
    learning: int = 300
    settle: int = 0
    suppress_half_life: float = 200.0

    def __post_init__(self) -> None:
        for name in ("window", "references", "blocks", "block"):
            value = getattr(self, name)
            if not 1 <= value <= 1024:
                raise NoveltyParamsError(
                    f"novelty.{name}: {value!r} is out of range; allowed 1..1024"
                )
        for name in ("learning", "settle"):
            value = getattr(self, name)
            if value < 0:
                raise NoveltyParamsError(f"novelty.{name}: {value!r} must be >= 0")
        if not self.scales or any(not 1 <= s <= 1024 for s in self.scales):
            raise NoveltyParamsError(
                f"novelty.scales: {self.scales!r} must be one or more "
                "readings per point in 1..1024"
            )
        if not (math.isfinite(self.suppress_half_life) and self.suppress_half_life > 0):
            raise NoveltyParamsError(
                "novelty.suppress_half_life: "
                f"{self.suppress_half_life!r} must be a positive number of readings"
            )


# Windows at three scales, the longest of 8 points of 32 readings (21 h 20 min
# of 5-minute readings), so that a day whose shape is missing or moved (a
# peak that does not come, a level the cycle never reached) is a far window.
# Twelve references: at scale 32 the last 12 windows reach 19 points (2.1
# days) back. Records are held against 16 blocks of 32 windows: 512 readings
# (1.8 days) at scale 1, 7.1 days at scale 4, 57 days at scale 32, and each
# scale's first 12 distances, measured while its references fill, are kept
# out (see ``settle``). 1,648 bytes of state. Chosen on half of the NAB
# subset (the even-numbered files in name order) and reported on the other
# half: docs/nab.md.
DAYLONG = NoveltyParams(
    scales=(1, 4, 32), references=12, blocks=16, block=32, settle=12
)


def state_bytes(params: NoveltyParams) -> int:
    """The length of one series' state record, fixed by ``params``."""
    per_scale = (
        _SCALE_HEADER.size
        + 4 * params.references * params.window  # reference windows, float32
        + 4 * params.blocks  # block maxima, float32
        + 8 * params.window  # the latest points, float64 ring
    )
    return _HEADER.size + len(params.scales) * per_scale


class _Scale:
    """One time scale's windows, references and record history."""

    def __init__(self, readings: int, params: NoveltyParams) -> None:
        self.readings = readings
        self.params = params
        self.pending = 0  # readings summed into the next point
        self.points = 0  # points made so far
        self.total = 0.0  # their sum
        self.block_max = 0.0  # the largest distance of the current block
        self.refs = np.zeros((params.references, params.window), dtype=np.float32)
        self.maxima = np.zeros(params.blocks, dtype=np.float32)
        self.ring = np.zeros(params.window, dtype=np.float64)

    def record(self, value: float) -> float | None:
        """Add a reading; the record (0..RECORD_CAP) of the window a new
        point closes, 0.0 while there is no history to hold it against, None
        between points."""
        self.total += value
        self.pending += 1
        if self.pending < self.readings:
            return None
        point = self.total / self.pending
        self.total, self.pending = 0.0, 0
        p = self.params
        self.ring[self.points % p.window] = point
        self.points += 1
        windows = self.points - p.window + 1  # windows closed so far
        if windows < 1:
            return 0.0
        oldest = self.points % p.window
        ordered = np.concatenate((self.ring[oldest:], self.ring[:oldest]))
        # Compared as stored, so that a window matches its own stored copy.
        window = ordered.astype(np.float32).astype(np.float64)
        result = 0.0
        stored = min(windows - 1, p.references)
        if stored:
            gaps = self.refs[:stored].astype(np.float64) - window
            # Rounded as the block maxima are stored, so that a distance equal
            # to an earlier one is no record of a few 1e-9.
            distance = float(
                np.float32(math.sqrt(float(np.min(np.sum(gaps * gaps, axis=1)))))
            )
            # Distances in the history before this one: all measured (windows
            # - 2) but the settling ones; a settling distance is not recorded.
            measured = windows - 2 - p.settle
            if measured < 0:
                self.refs[(windows - 1) % p.references] = window
                return 0.0
            done = min(measured // p.block, p.blocks)
            if done:
                history = max(float(np.max(self.maxima[:done])), self.block_max)
                if history > 0.0:
                    result = min(max(distance / history - 1.0, 0.0), RECORD_CAP)
                elif distance > 0.0:
                    result = RECORD_CAP
            self.block_max = max(self.block_max, distance)
            if (measured + 1) % p.block == 0:
                slot = (measured // p.block) % p.blocks
                self.maxima[slot] = self.block_max
                self.block_max = 0.0
        self.refs[(windows - 1) % p.references] = window
        return result

    def to_bytes(self) -> bytes:
        return b"".join(
            (
                _SCALE_HEADER.pack(
                    self.pending, self.points, self.total, self.block_max
                ),
                self.refs.astype("<f4").tobytes(),
                self.maxima.astype("<f4").tobytes(),
                self.ring.astype("<f8").tobytes(),
            )
        )

    def load(self, data: memoryview) -> int:
        """Read this scale's state from the start of ``data``; bytes read."""
        p = self.params
        self.pending, self.points, self.total, self.block_max = (
            _SCALE_HEADER.unpack_from(data)
        )
        at = _SCALE_HEADER.size
        n_refs = p.references * p.window
        self.refs = (
            np.frombuffer(data, "<f4", n_refs, at)
            .astype(np.float32)
            .reshape(p.references, p.window)
        )
        at += 4 * n_refs
        self.maxima = np.frombuffer(data, "<f4", p.blocks, at).astype(np.float32)
        at += 4 * p.blocks
        self.ring = np.frombuffer(data, "<f8", p.window, at).astype(np.float64)
        return at + 8 * p.window


class WindowNovelty:
    """One series' window-novelty detector: :meth:`score` a reading (from
    earlier readings only), then learn it."""

    def __init__(self, params: NoveltyParams | None = None) -> None:
        self.params = params or NoveltyParams()
        self._scales = [_Scale(s, self.params) for s in self.params.scales]
        self._readings = 0
        self._peak = 0.0
        self._decay = 0.5 ** (1.0 / self.params.suppress_half_life)

    def score(self, value: float) -> float:
        """The anomaly score of ``value`` in [0, 1]; learns it afterwards.

        Raises:
            ValueError: ``value`` is not finite.
        """
        if not math.isfinite(value):
            raise ValueError(f"value: {value!r} is not a finite number")
        self._readings += 1
        best = 0.0
        for scale in self._scales:
            found = scale.record(value)
            if found is not None:
                best = max(best, found)
        if self._readings <= self.params.learning:
            best = 0.0
        reported = min(best, 1.0) if best > self._peak else 0.0
        self._peak = max(best, self._peak * self._decay)
        return reported

    def to_bytes(self) -> bytes:
        """The state as a fixed record of :func:`state_bytes` bytes."""
        return _HEADER.pack(self._readings, self._peak) + b"".join(
            scale.to_bytes() for scale in self._scales
        )

    @classmethod
    def from_bytes(
        cls, data: bytes, params: NoveltyParams | None = None
    ) -> WindowNovelty:
        """A detector restored from :meth:`to_bytes`, exactly.

        Raises:
            ValueError: ``data`` is not a state record for ``params``.
        """
        detector = cls(params)
        expected = state_bytes(detector.params)
        if len(data) != expected:
            raise ValueError(
                f"novelty state: {len(data)} bytes, expected {expected} for "
                f"{detector.params}"
            )
        view = memoryview(data)
        detector._readings, detector._peak = _HEADER.unpack_from(view)
        at = _HEADER.size
        for scale in detector._scales:
            at += scale.load(view[at:])
        return detector
