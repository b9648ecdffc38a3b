"""The streaming detectors the benchmark can run, under NAB-safe names.

Each is a small object with one method, ``score(value, ts_ns) -> float`` in
[0, 1], that scores a reading from earlier readings only and then learns it
(score, then learn). Labels never reach a detector.

Names contain no underscore: NAB's scorer takes everything before the first
``_`` of a result file name as the detector's name.

* ``riskwatch``: the stream jobs' own detector (``stream_jobs.detectors``),
  called exactly as the Faust worker calls it, with the series as an instant
  ``temperature_c`` metric.
* ``riverHST``: River's Half-Space Trees after River's MinMax scaler, as
  River's documentation recommends (its default parameters, seed 42).
* ``riverZscore``: River's running standard scaler; ``|z|`` is mapped to
  ``|z| / (1 + |z|)``, strictly increasing so that the corpus threshold can
  land on any ``|z|``.
* ``novelty``: :mod:`stream_jobs.detection.novelty`, window novelty as a
  record against the series' own recent history (its default parameters).
* ``riskwatchNovelty``: the larger of ``riskwatch`` and ``novelty`` per
  reading: the stream jobs' detector, with novelty catching the patterns it
  has no detector for.
* ``daylong``: window novelty with :data:`~stream_jobs.detection.novelty.DAYLONG`,
  a third scale whose windows span 21 h of 5-minute readings.
* ``riskwatchDaylong``: the larger of ``riskwatch`` and ``daylong``.
* ``resonance``: :mod:`stream_jobs.detection.resonance`, adaptive-resonance
  categories of downsampled window shapes (the ARTime idea with causal
  normalisation and bounded memory), its default parameters.
* ``resonanceDaylong``: :mod:`stream_jobs.detection.ensemble`, 0.5 times
  ``resonance`` (a quick resonance detector while the main one learns) plus
  ``daylong``'s records calibrated against the series' own recent records,
  capped at 1 (chosen on half A of the NAB subset, docs/nab.md).
* ``null``: NAB's null detector, a constant 0.5; it scores 0 by definition.

River is a development dependency (the ``dev`` extra); it is imported only
when one of its detectors is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from riskwatch.contracts import Metric
from riskwatch.errors import RiskwatchError
from stream_jobs import detectors
from stream_jobs.detection.ensemble import Ensemble
from stream_jobs.detection.novelty import DAYLONG, NoveltyParams, WindowNovelty
from stream_jobs.detection.resonance import Resonance, ResonanceParams

__all__ = ["CANDIDATES", "DEFAULT_CANDIDATES", "Candidate", "build"]


class Candidate(Protocol):
    def score(self, value: float, ts_ns: int) -> float:
        """Score ``value`` (observed at ``ts_ns``), then learn it."""
        ...


class RiskwatchDetector:
    """``stream_jobs.detectors`` through its public functions only."""

    def __init__(self, metric: Metric = Metric.TEMPERATURE_C) -> None:
        self._metric = metric
        self._state = detectors.new_state()

    def score(self, value: float, ts_ns: int) -> float:
        self._state, scored = detectors.score_value(
            self._state, self._metric, value, ts_ns
        )
        return scored.score


class NoveltyDetector:
    """``stream_jobs.detection.novelty``, by default with its default
    parameters."""

    def __init__(self, params: NoveltyParams | None = None) -> None:
        self._novelty = WindowNovelty(params)

    def score(self, value: float, ts_ns: int) -> float:
        return self._novelty.score(value)


class LargerOf:
    """Per reading, the larger of two detectors' scores (each detector
    learns every reading)."""

    def __init__(self, first: Candidate, second: Candidate) -> None:
        self._first = first
        self._second = second

    def score(self, value: float, ts_ns: int) -> float:
        return max(self._first.score(value, ts_ns), self._second.score(value, ts_ns))


def riskwatch_with_novelty(params: NoveltyParams | None = None) -> LargerOf:
    """The larger of ``riskwatch`` and novelty with ``params`` (by default
    its default ones)."""
    return LargerOf(RiskwatchDetector(), NoveltyDetector(params))


class ResonanceDetector:
    """``stream_jobs.detection.resonance``, by default with its default
    parameters."""

    def __init__(self, params: ResonanceParams | None = None) -> None:
        self._resonance = Resonance(params)

    def score(self, value: float, ts_ns: int) -> float:
        return self._resonance.score(value)


class EnsembleDetector:
    """``stream_jobs.detection.ensemble``: resonance (a quick one while the
    main one learns) beside daylong's calibrated records."""

    def __init__(self) -> None:
        self._ensemble = Ensemble()

    def score(self, value: float, ts_ns: int) -> float:
        return self._ensemble.score(value)


class RiverHalfSpaceTrees:
    """River's ``anomaly.HalfSpaceTrees`` on min-max scaled values."""

    def __init__(self) -> None:
        from river import anomaly, compose, preprocessing  # noqa: PLC0415

        self._model = compose.Pipeline(
            preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(seed=42)
        )

    def score(self, value: float, ts_ns: int) -> float:
        x = {"value": value}
        result = float(self._model.score_one(x))
        self._model.learn_one(x)
        return min(max(result, 0.0), 1.0)


class RiverZScore:
    """River's ``preprocessing.StandardScaler``; ``|z| / (1 + |z|)``."""

    def __init__(self) -> None:
        from river import preprocessing  # noqa: PLC0415

        self._scaler = preprocessing.StandardScaler()

    def score(self, value: float, ts_ns: int) -> float:
        x = {"value": value}
        # River's StandardScaler methods carry no annotations.
        scaled = self._scaler.transform_one(x)  # type: ignore[no-untyped-call]
        z = abs(float(scaled["value"]))
        self._scaler.learn_one(x)  # type: ignore[no-untyped-call]
        return z / (1.0 + z)


class NullDetector:
    """NAB's null detector: the same score for every reading."""

    def score(self, value: float, ts_ns: int) -> float:
        return 0.5


CANDIDATES: dict[str, Callable[[], Candidate]] = {
    "riskwatch": RiskwatchDetector,
    "novelty": NoveltyDetector,
    "riskwatchNovelty": riskwatch_with_novelty,
    "daylong": lambda: NoveltyDetector(DAYLONG),
    "riskwatchDaylong": lambda: riskwatch_with_novelty(DAYLONG),
    "resonance": ResonanceDetector,
    "resonanceDaylong": EnsembleDetector,
    "riverHST": RiverHalfSpaceTrees,
    "riverZscore": RiverZScore,
    "null": NullDetector,
}
DEFAULT_CANDIDATES = (
    "riskwatch",
    "novelty",
    "riskwatchNovelty",
    "daylong",
    "riskwatchDaylong",
    "resonance",
    "resonanceDaylong",
    "riverHST",
    "riverZscore",
)


class MissingLibrary(RiskwatchError):
    """A library detector's package is not installed."""


def build(name: str) -> Candidate:
    """A fresh detector (no state) by name.

    Raises:
        KeyError: no such name (the CLI offers only valid names).
        MissingLibrary: its library is not installed.
    """
    try:
        return CANDIDATES[name]()
    except ModuleNotFoundError as exc:
        raise MissingLibrary(
            f"detector {name!r} needs the {exc.name!r} package; install the "
            "development extra: pip install -e '.[dev]'"
        ) from exc
