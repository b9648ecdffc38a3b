"""Run streaming detectors over a NAB-layout corpus, write NAB's result files
and score them.

A NAB-layout corpus is a folder of category folders of ``<name>.csv`` files
(columns ``timestamp,value``) plus ``combined_windows.json``, which maps
``<category>/<name>.csv`` to its anomaly windows ``[[start, end], ...]``.
The detectors see only timestamps and values; the windows are read here to
write the ``label`` column and to score.

Results go where NAB's own tools look for them::

    RESULTS/<detector>/<category>/<detector>_<name>.csv
        timestamp,value,anomaly_score,label

plus ``RESULTS/final_results.json`` (``{detector: {profile: score}}``) and
``RESULTS/thresholds.json`` (``{detector: {profile: {score, threshold}}}``),
in NAB's formats, merged with what is already there.

Scores are written with 9 decimals and scored as read back from the files,
so that NAB's scorer and this one see the same numbers.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stream_jobs.bench.candidates import build
from stream_jobs.bench.nab_score import (
    PROFILES,
    LabelledSeries,
    ProfileResult,
    score_corpus,
    window_rows,
)
from stream_jobs.bench.series import BenchInputError, read_series, timestamp_ns

__all__ = [
    "CorpusFile",
    "DetectorScore",
    "FileRun",
    "format_table",
    "load_corpus",
    "read_results",
    "result_path",
    "run_benchmark",
    "run_file",
    "score_results",
]

log = logging.getLogger(__name__)

LABELS_FILE = "combined_windows.json"
RESULT_COLUMNS = ("timestamp", "value", "anomaly_score", "label")


@dataclass(frozen=True)
class CorpusFile:
    """One data file of the corpus and its windows (epoch ns, inclusive)."""

    category: str
    name: str
    path: Path
    windows_ns: tuple[tuple[int, int], ...]

    @property
    def key(self) -> str:
        """The file as ``combined_windows.json`` names it."""
        return f"{self.category}/{self.name}"


@dataclass(frozen=True)
class FileRun:
    detector: str
    key: str
    rows: int
    seconds: float  # time spent in the detector alone


@dataclass(frozen=True)
class DetectorScore:
    """A detector's corpus scores, one result per profile name."""

    detector: str
    results: Mapping[str, ProfileResult]
    seconds: float  # detector time summed over the files
    rows: int


def load_corpus(data_dir: Path) -> tuple[CorpusFile, ...]:
    """The CSV files of every category folder of ``data_dir``, with windows.

    Raises:
        BenchInputError: no labels file, a data file without labels, a
            malformed window, or no data file at all.
    """
    labels = _read_labels(data_dir / LABELS_FILE)
    files = []
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        for path in sorted(folder.glob("*.csv")):
            key = f"{folder.name}/{path.name}"
            if key not in labels:
                raise BenchInputError(f"{path}: no entry {key!r} in {LABELS_FILE}")
            files.append(CorpusFile(folder.name, path.name, path, labels[key]))
    if not files:
        raise BenchInputError(f"{data_dir}: no <category>/<name>.csv file")
    return tuple(files)


def _read_labels(path: Path) -> dict[str, tuple[tuple[int, int], ...]]:
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BenchInputError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise BenchInputError(f"{path}: not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise BenchInputError(f"{path}: expected an object of file -> windows")
    labels = {}
    for key, windows in raw.items():
        try:
            labels[key] = tuple(
                (timestamp_ns(start), timestamp_ns(end)) for start, end in windows
            )
        except (TypeError, ValueError):
            raise BenchInputError(
                f"{path}: windows of {key!r} must be [[start, end], ...] with "
                f"ISO 8601 times, got {windows!r}"
            ) from None
    return labels


def result_path(out_dir: Path, detector: str, file: CorpusFile) -> Path:
    """``RESULTS/<detector>/<category>/<detector>_<name>.csv``."""
    return out_dir / detector / file.category / f"{detector}_{file.name}"


def run_file(detector: str, file: CorpusFile, out_dir: Path) -> FileRun:
    """Score every reading of ``file`` with a fresh ``detector`` (in time
    order, score then learn) and write its result file.

    Raises:
        BenchInputError: the data file is malformed, or the detector returned
            a score outside [0, 1].
    """
    series = read_series(file.path, "value")
    windows = window_rows(series.ts_ns, file.windows_ns, name=file.key)
    candidate = build(detector)
    started = time.perf_counter()
    scores = [
        candidate.score(value, ts)
        for value, ts in zip(series.values, series.ts_ns, strict=True)
    ]
    seconds = time.perf_counter() - started
    for row, score in enumerate(scores):
        if not 0.0 <= score <= 1.0:  # also catches NaN
            raise BenchInputError(
                f"detector {detector!r} scored row {row} of {file.key} "
                f"{score!r}; scores must be in [0, 1]"
            )
    labels = np.zeros(len(series), dtype=np.int8)
    for first, last in windows:
        labels[first : last + 1] = 1
    target = result_path(out_dir, detector, file)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(RESULT_COLUMNS)
        for ts, text, score, label in zip(
            series.times, series.texts, scores, labels, strict=True
        ):
            writer.writerow((ts, text, f"{score:.9f}", int(label)))
    return FileRun(detector, file.key, len(series), seconds)


def _run_task(task: tuple[str, CorpusFile, Path]) -> FileRun:
    return run_file(*task)


def read_results(
    out_dir: Path, detector: str, corpus: Sequence[CorpusFile]
) -> list[LabelledSeries]:
    """A detector's result files, read back for scoring.

    Raises:
        BenchInputError: a result file is missing or malformed.
    """
    series = []
    for file in corpus:
        path = result_path(out_dir, detector, file)
        stamps: list[int] = []
        scores: list[float] = []
        try:
            with path.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                for row in reader:
                    stamps.append(timestamp_ns(row["timestamp"]))
                    scores.append(float(row["anomaly_score"]))
        except OSError as exc:
            raise BenchInputError(f"{path}: cannot read: {exc.strerror}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise BenchInputError(f"{path}: malformed result file: {exc}") from None
        try:
            windows = window_rows(stamps, file.windows_ns, name=str(path))
            series.append(LabelledSeries(file.key, np.array(scores), windows))
        except ValueError as exc:
            raise BenchInputError(str(exc)) from None
    return series


def score_results(
    out_dir: Path, detector: str, corpus: Sequence[CorpusFile]
) -> Mapping[str, ProfileResult]:
    """Score a detector's result files under NAB's three profiles.

    Raises:
        BenchInputError: a result file is missing or malformed, or the corpus
            has no window.
    """
    series = read_results(out_dir, detector, corpus)
    try:
        return score_corpus(series, PROFILES)
    except ValueError as exc:
        raise BenchInputError(str(exc)) from None


def run_benchmark(
    data_dir: Path,
    out_dir: Path,
    detectors: Sequence[str],
    *,
    jobs: int = 1,
    progress: Callable[[str], None] = lambda line: None,
) -> list[DetectorScore]:
    """Run each detector over every file of the corpus, write the results and
    score them.

    Args:
        jobs: worker processes; files are spread over them, largest first.
        progress: called with one line per finished file.
    """
    corpus = load_corpus(data_dir)
    # Largest first, so that no long file starts last on an otherwise idle pool.
    ordered = sorted(corpus, key=lambda f: f.path.stat().st_size, reverse=True)
    tasks = [(name, file, out_dir) for name in detectors for file in ordered]
    runs: dict[str, list[FileRun]] = {name: [] for name in detectors}
    for done, run in enumerate(_execute(tasks, jobs), start=1):
        runs[run.detector].append(run)
        progress(
            f"[{done:>{len(str(len(tasks)))}}/{len(tasks)}] {run.detector} "
            f"{run.key} rows={run.rows} elapsed_s={run.seconds:.1f}"
        )
    scores = []
    for name in detectors:
        results = score_results(out_dir, name, corpus)
        scores.append(
            DetectorScore(
                name,
                results,
                seconds=math.fsum(r.seconds for r in runs[name]),
                rows=sum(r.rows for r in runs[name]),
            )
        )
        log.info(
            "scored detector=%s standard=%.2f files=%d",
            name,
            results["standard"].normalised,
            len(corpus),
        )
    _write_summaries(out_dir, scores)
    return scores


def _execute(tasks: list[tuple[str, CorpusFile, Path]], jobs: int) -> Iterator[FileRun]:
    if jobs <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield _run_task(task)
        return
    with multiprocessing.Pool(min(jobs, len(tasks))) as pool:
        yield from pool.imap_unordered(_run_task, tasks)


def _write_summaries(out_dir: Path, scores: Sequence[DetectorScore]) -> None:
    final = _load_json(out_dir / "final_results.json")
    thresholds = _load_json(out_dir / "thresholds.json")
    for one in scores:
        final[one.detector] = {
            name: result.normalised for name, result in one.results.items()
        }
        thresholds[one.detector] = {
            name: {"score": result.raw, "threshold": result.threshold}
            for name, result in one.results.items()
        }
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, content in (
        ("final_results.json", final),
        ("thresholds.json", thresholds),
    ):
        (out_dir / name).write_text(
            json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )


def _load_json(path: Path) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def format_table(scores: Sequence[DetectorScore]) -> str:
    """The results as a fixed-width table, one row per detector.

    ``threshold`` is the optimised threshold of each profile, in the order
    standard / reward_low_FP / reward_low_FN; ``seconds`` is the detector's
    own time summed over the files.
    """
    names = [p.name for p in PROFILES]
    width = max([len("detector"), *(len(s.detector) for s in scores)])
    lines = [
        f"{'detector':<{width}}  {names[0]:>8}  {names[1]:>13}  {names[2]:>13}  "
        f"{'threshold':>26}  {'seconds':>8}"
    ]
    for one in scores:
        values = [one.results[name].normalised for name in names]
        chosen = "/".join(f"{one.results[name].threshold:.6f}" for name in names)
        lines.append(
            f"{one.detector:<{width}}  {values[0]:>8.2f}  {values[1]:>13.2f}  "
            f"{values[2]:>13.2f}  {chosen:>26}  {one.seconds:>8.1f}"
        )
    return "\n".join(lines)


def default_jobs() -> int:
    """Worker processes by default: every core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
