"""Resonance and window novelty in one detector, with the novelty records
calibrated against the series' own reports.

Per reading the score is the sum, capped at 1, of

* :data:`RESONANCE_WEIGHT` times the resonance score
  (:mod:`stream_jobs.detection.resonance`): while its 602-reading learning
  period runs, a *quick* resonance detector (:data:`QUICK`: one reading per
  point, 186 readings of learning, 16 categories) scores instead and is
  dropped when the main one has learnt, so a series is covered from its
  187th reading on rather than its 603rd;
* the :data:`~stream_jobs.detection.novelty.DAYLONG` window-novelty record,
  divided by ``1 + weight * n`` where ``n`` counts the series' last
  :attr:`Calibration.size` records that were at least :attr:`Calibration.share`
  of this one (:class:`Calibration`): a series that keeps setting records
  (a noisy machine, two months of chance records) reports each with less
  weight, so that one corpus threshold serves quiet and busy series alike.

A sum rather than the larger of the two: an onset both detectors see scores
above one only one of them sees. Resonance reports are rarer than novelty
records and score higher, hence their weight below 1. The weight, the quick
detector and the calibration were chosen on half of the NAB subset
(docs/nab.md).

The state is at most :func:`state_bytes` bytes (4,074), within the 4 KB per
series of issue 4, and round-trips exactly through :meth:`Ensemble.to_bytes`
and :meth:`Ensemble.from_bytes`.

The quick detector's baseline is short: a cycle longer than its 186
readings looks new to it until the main detector takes over (on NAB's
files that time is inside the unscored probationary period).

Example:
    >>> import math
    >>> ensemble = Ensemble()
    >>> daily = [10 + math.sin(2 * math.pi * i / 288) for i in range(3000)]
    >>> scores = [ensemble.score(value) for value in daily]
    >>> max(scores[602:])  # nothing once the main detector has learnt
    0.0
    >>> ensemble.score(30.0)
    1.0
"""

from __future__ import annotations

import struct

import numpy as np

from stream_jobs.detection import novelty, resonance
from stream_jobs.detection.resonance import Resonance, ResonanceParams, bounded

__all__ = [
    "QUICK",
    "RESONANCE_WEIGHT",
    "Calibration",
    "Ensemble",
    "state_bytes",
]

# The resonance score's weight against the novelty record.
RESONANCE_WEIGHT = 0.5

# The quick resonance detector that covers the main one's learning period.
QUICK = ResonanceParams(learning=186, horizon=186, categories=16)

# Lengths of the main and the quick resonance records (uint16 each; 0: the
# quick detector is gone).
_LENGTHS = struct.Struct("<HH")


class Calibration:
    """A record divided by ``1 + weight * n``, ``n`` the last ``size``
    records at least ``share`` of it (kept as float32)."""

    size = 16
    weight = 2.0
    share = 0.5
    _HEADER = struct.Struct("<BB")  # records held, next slot

    def __init__(self) -> None:
        self._records = np.zeros(self.size, dtype=np.float32)
        self._held = 0
        self._next = 0

    def score(self, record: float) -> float:
        """``record`` calibrated; a positive record is remembered."""
        if record <= 0.0:
            return 0.0
        held = self._records[: self._held].astype(np.float64)
        similar = int(np.count_nonzero(held >= self.share * record))
        self._records[self._next] = record
        self._next = (self._next + 1) % self.size
        self._held = min(self._held + 1, self.size)
        return record / (1.0 + self.weight * similar)

    @classmethod
    def state_bytes(cls) -> int:
        return cls._HEADER.size + 4 * cls.size

    def to_bytes(self) -> bytes:
        return (
            self._HEADER.pack(self._held, self._next)
            + self._records.astype("<f4").tobytes()
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Calibration:
        """Raises: ValueError: not a calibration record."""
        if len(data) != cls.state_bytes():
            raise ValueError(
                f"calibration state: {len(data)} bytes, expected {cls.state_bytes()}"
            )
        calibration = cls()
        calibration._held, calibration._next = cls._HEADER.unpack_from(data)
        if not (calibration._held <= cls.size and calibration._next < cls.size):
            raise ValueError("calibration state: slot counts out of range")
        calibration._records = np.frombuffer(
            data, dtype="<f4", count=cls.size, offset=cls._HEADER.size
        ).astype(np.float32)
        return calibration


def state_bytes() -> int:
    """The largest state record: the main resonance detector past its
    learning period (the quick one is gone by then), the calibration and
    the novelty record."""
    main = resonance.state_bytes(ResonanceParams())
    while_learning = resonance.learning_state_bytes(ResonanceParams()) + (
        resonance.state_bytes(QUICK)
    )
    return (
        _LENGTHS.size
        + max(main, while_learning)
        + Calibration.state_bytes()
        + novelty.state_bytes(novelty.DAYLONG)
    )


class Ensemble:
    """One series' combined detector: :meth:`score` a reading (from earlier
    readings only), then learn it."""

    def __init__(self) -> None:
        self._main = Resonance()
        self._quick: Resonance | None = Resonance(QUICK)
        self._calibration = Calibration()
        self._novelty = novelty.WindowNovelty(novelty.DAYLONG)

    def score(self, value: float) -> float:
        """The anomaly score of ``value`` in [0, 1]; learns it afterwards.

        Raises:
            ValueError: ``value`` is not finite.
        """
        # Novelty keeps float32 windows, which a reading of 1.7e308 overflows.
        value = bounded(value)
        shape = self._main.score(value)
        if self._quick is not None:
            shape = self._quick.score(value)
            if not self._main.learning:
                self._quick = None
        record = self._calibration.score(self._novelty.score(value))
        return min(1.0, RESONANCE_WEIGHT * shape + record)

    def to_bytes(self) -> bytes:
        main = self._main.to_bytes()
        quick = b"" if self._quick is None else self._quick.to_bytes()
        return b"".join(
            [
                _LENGTHS.pack(len(main), len(quick)),
                main,
                quick,
                self._calibration.to_bytes(),
                self._novelty.to_bytes(),
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Ensemble:
        """An ensemble restored from :meth:`to_bytes`, exactly.

        Raises:
            ValueError: ``data`` is not an ensemble state record.
        """
        if len(data) < _LENGTHS.size:
            raise ValueError(f"ensemble state: {len(data)} bytes is too short")
        main_size, quick_size = _LENGTHS.unpack_from(data)
        at = _LENGTHS.size
        ensemble = cls()
        ensemble._main = Resonance.from_bytes(data[at : at + main_size])
        at += main_size
        ensemble._quick = (
            Resonance.from_bytes(data[at : at + quick_size], QUICK)
            if quick_size
            else None
        )
        at += quick_size
        size = Calibration.state_bytes()
        ensemble._calibration = Calibration.from_bytes(data[at : at + size])
        at += size
        ensemble._novelty = novelty.WindowNovelty.from_bytes(data[at:], novelty.DAYLONG)
        return ensemble
