"""A scorer compatible with the Numenta Anomaly Benchmark (NAB).

Written from the definition in the NAB subset's README (shared data) and
checked against NAB's own code (``nab/sweeper.py``, ``nab/optimizer.py``,
``nab/scorer.py``, ``nab/runner.py`` of NAB 1.x), whose conventions win where
the prose leaves a choice open or differs. For one file of ``n`` rows with
labelled anomaly windows:

* The first ``min(floor(0.15 * n), 750)`` rows are a probationary period: a
  detector may learn there, nothing in it is scored, and a window with no
  row after it neither earns nor costs anything.
* A row is a *detection* when its anomaly score is ``>= threshold``.
* A window ``[l, r]`` (inclusive row indices, ``w = r - l + 1`` rows) earns
  ``A_tp * S(y) / S(-1)`` for its first detection at row ``i``, where
  ``y = -(r - i + 1) / w``: ``-1`` at the window's first row (earning exactly
  ``A_tp``), rising towards 0 at its end. Later detections in the same window
  count nothing. A window without a detection costs ``A_fn``. A window that
  starts in the probationary period keeps its full width: its first scored
  row earns what its position in the whole window is worth.
* A detection outside every window costs ``A_fp * S(d)``: ``d`` is its
  distance past the last row of the preceding window in units of that
  window's span (``w - 1`` row intervals, i.e. its length in time on a
  regular series), and ``S = -1`` when no window precedes it or ``d >= 3``
  (NAB's sweeper charges the full cost from three spans on; the README's
  "d > 3" would charge ``A_fp * 6.1e-7`` less at exactly three spans). Only
  the preceding window counts: a detection just before a window costs the
  full ``A_fp``, one just after a window almost nothing.
* ``S(y) = 2 / (1 + exp(5 y)) - 1``.

Windows are matched to rows by exact timestamp, in file order: a window
starts at the row stamped with its start time and ends at the row stamped
with its end time (both inclusive), as NAB's sweeper walks the file (see
:func:`window_rows`).

A corpus is scored with ONE threshold per profile, the one that maximises the
summed raw score of all files (ties go to the highest threshold, as in NAB).
The candidates are NAB's: 1.1 (nothing is a detection) and each distinct
score, taken from the highest down. The raw scores of the files at that
threshold are summed and the total is normalised once, not per file:
``100 * (raw - null) / (perfect - null)``. ``null`` is the score of NAB's
null detector, a constant 0.5, at its own optimised threshold (on a real
corpus it flags nothing: ``-A_fn`` per window with a scored row);
``perfect`` is ``A_tp`` per window of the corpus, counting the windows
wholly inside a probationary period too, as NAB counts every window of its
labels file, so that such a window keeps even a perfect detector below 100.

Where NAB's code refuses an input, this module still scores it: a window
time that no row or several rows carry (NAB's labeller raises; here see
:func:`window_rows`), a one-row window followed by a false positive (NAB
divides by zero; here its span counts as one row interval), and a file
whose every scored row is above the corpus threshold (NAB's per-file lookup
finds no row for the threshold and fails; here every row of it is a
detection, as the threshold says).

The threshold search is exact: every distinct score is a candidate, and all
candidates are evaluated in one pass over the rows sorted by score, so a
corpus of 10^5 to 10^6 rows is optimised in well under a second.

Example:
    >>> import numpy as np
    >>> scores = np.zeros(100)
    >>> scores[60] = 1.0  # fires at the first row of the window
    >>> series = LabelledSeries("demo.csv", scores, ((60, 69),))
    >>> result = score_corpus([series])["standard"]
    >>> round(result.normalised, 6), result.threshold
    (100.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = [
    "NOTHING_THRESHOLD",
    "PROFILES",
    "FileScore",
    "LabelledSeries",
    "Profile",
    "ProfileResult",
    "optimise_threshold",
    "probation_rows",
    "scaled_sigmoid",
    "score_corpus",
    "score_files",
    "window_rows",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PROBATION_FRACTION = 0.15
# NAB caps the probationary period at 15 % of 5000 rows.
PROBATION_MAX_ROWS = 750
# NAB's threshold that flags nothing (anomaly scores are at most 1).
NOTHING_THRESHOLD = 1.1
# From this many window spans on a false positive costs the full A_fp
# (NAB's sweeper: ``>= 3.0``).
FAR_SPANS = 3.0


@dataclass(frozen=True)
class Profile:
    """NAB's application profile: the weights of the cost matrix."""

    name: str
    tp: float
    fp: float
    fn: float


PROFILES: tuple[Profile, ...] = (
    Profile("standard", tp=1.0, fp=0.11, fn=1.0),
    Profile("reward_low_FP", tp=1.0, fp=0.22, fn=1.0),
    Profile("reward_low_FN", tp=1.0, fp=0.11, fn=2.0),
)


@dataclass(frozen=True)
class LabelledSeries:
    """One file's anomaly scores and its windows.

    Args:
        name: the file, e.g. ``realKnownCause/nyc_taxi.csv``.
        scores: one anomaly score per row, each in [0, 1].
        windows: inclusive ``(first_row, last_row)`` pairs, in order and not
            overlapping (see :func:`window_rows`).

    Raises:
        ValueError: a score is not finite or outside [0, 1], or a window is
            out of range, reversed or overlaps the one before.
    """

    name: str
    scores: FloatArray
    windows: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        scores = np.asarray(self.scores, dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(scores) | (scores < 0.0) | (scores > 1.0))
        if bad.size:
            raise ValueError(
                f"{self.name}: anomaly_score of row {int(bad[0])} is "
                f"{scores[bad[0]]!r}; scores must be finite and in [0, 1]"
            )
        previous_end = -1
        for first, last in self.windows:
            if not previous_end < first <= last < scores.size:
                raise ValueError(
                    f"{self.name}: window rows ({first}, {last}) must be inside "
                    f"0..{scores.size - 1}, in order and not overlapping"
                )
            previous_end = last
        object.__setattr__(self, "scores", scores)


@dataclass(frozen=True)
class FileScore:
    """One file scored at one threshold (raw, not normalised)."""

    name: str
    raw: float
    detected: int  # windows with a detection
    missed: int  # windows without one
    false_positives: int  # detections outside every window


@dataclass(frozen=True)
class ProfileResult:
    """A corpus scored under one profile at its optimised threshold."""

    profile: Profile
    threshold: float
    raw: float
    null: float
    perfect: float
    files: tuple[FileScore, ...] = field(repr=False)

    @property
    def normalised(self) -> float:
        """NAB's score: 0 for the null detector, 100 for a perfect one."""
        return 100.0 * (self.raw - self.null) / (self.perfect - self.null)


def probation_rows(n_rows: int) -> int:
    """Rows at the start of a file of ``n_rows`` rows that are not scored."""
    return min(math.floor(PROBATION_FRACTION * n_rows), PROBATION_MAX_ROWS)


def scaled_sigmoid(position: FloatArray) -> FloatArray:
    """NAB's ``S(y) = 2 / (1 + exp(5 y)) - 1``: ~0.987 at -1, 0 at 0, ~-0.987
    at 1, and -1 from ``FAR_SPANS`` (3) on, as in NAB's sweeper."""
    y = np.asarray(position, dtype=np.float64)
    # Clip before exp: from 3 on the value is replaced anyway, and exp(5 y)
    # would overflow for the huge distances of long files.
    near = 2.0 / (1.0 + np.exp(5.0 * np.minimum(y, FAR_SPANS))) - 1.0
    return np.where(y >= FAR_SPANS, -1.0, near)


_S_EARLIEST = float(scaled_sigmoid(np.array(-1.0)))


def window_rows(
    timestamps_ns: Sequence[int] | IntArray,
    windows: Iterable[tuple[int, int]],
    *,
    name: str = "series",
) -> tuple[tuple[int, int], ...]:
    """Map windows given as ``(start_ns, end_ns)`` times to inclusive row
    indices, rows taken in file order.

    As in NAB, a window starts at the first row stamped with its start time
    and ends at the first row after that stamped with its end time. Where no
    row carries the exact time, the window starts at the first row at or
    after its start and ends at the last row before a time past its end. (A
    few NAB files step back in time once or twice; this keeps such files in
    file order, as NAB does.)

    Args:
        timestamps_ns: the file's timestamps, in file order.
        windows: the file's windows, in any order.
        name: the file, for error messages.

    Raises:
        ValueError: a window holds no row, or windows overlap.
    """
    ts = np.asarray(timestamps_ns, dtype=np.int64)
    rows: list[tuple[int, int]] = []
    for start, end in sorted(windows):
        first = _first(ts == start, 0)
        if first is None:
            first = _first(ts >= start, 0)
        if first is None or ts[first] > end:
            raise ValueError(f"{name}: window ({start}, {end}) ns holds no row")
        last = _first(ts == end, first)
        if last is None:
            past = _first(ts > end, first)
            last = ts.size - 1 if past is None else past - 1
        if rows and first <= rows[-1][1]:
            raise ValueError(f"{name}: window ({start}, {end}) ns overlaps another")
        rows.append((first, last))
    return tuple(rows)


def _first(mask: npt.NDArray[np.bool_], after: int) -> int | None:
    hits = np.flatnonzero(mask[after:])
    return after + int(hits[0]) if hits.size else None


@dataclass(frozen=True)
class _Scorable:
    """The scored rows of a corpus, concatenated over files.

    ``unit`` is the profile-free part of a detection's value: ``S(y)/S(-1)``
    inside a window, ``S(d)`` outside. ``window`` is a corpus-wide window
    number, or -1 outside every window.
    """

    scores: FloatArray
    window: IntArray
    unit: FloatArray
    n_windows: int  # windows with at least one scored row


def _units(
    n_rows: int, windows: Sequence[tuple[int, int]]
) -> tuple[IntArray, FloatArray]:
    window = np.full(n_rows, -1, dtype=np.int64)
    unit = np.full(n_rows, -1.0)  # before any window: the full cost
    for k, (first, last) in enumerate(windows):
        width = last - first + 1
        rows = np.arange(first, last + 1, dtype=np.float64)
        unit[first : last + 1] = (
            scaled_sigmoid(-(last - rows + 1) / width) / _S_EARLIEST
        )
        window[first : last + 1] = k
        stop = windows[k + 1][0] if k + 1 < len(windows) else n_rows
        # A one-row window has no span; count it as one row interval rather
        # than divide by zero.
        span = max(width - 1, 1)
        after = np.arange(last + 1, stop, dtype=np.float64)
        unit[last + 1 : stop] = scaled_sigmoid((after - last) / span)
    return window, unit


def _scorable(series: Sequence[LabelledSeries]) -> _Scorable:
    scores, windows, units = [], [], []
    offset = 0
    for one in series:
        window, unit = _units(one.scores.size, one.windows)
        keep = slice(probation_rows(one.scores.size), None)
        window = window[keep]
        present = np.unique(window[window >= 0])
        # Renumber the windows that have scored rows as offset, offset + 1, ...
        lookup = np.full(len(one.windows) + 1, -1, dtype=np.int64)
        lookup[present] = np.arange(offset, offset + present.size)
        scores.append(one.scores[keep])
        windows.append(lookup[window])  # -1 indexes the final -1
        units.append(unit[keep])
        offset += present.size
    if not series:
        empty = np.zeros(0)
        return _Scorable(empty, np.zeros(0, dtype=np.int64), empty, 0)
    return _Scorable(
        np.concatenate(scores), np.concatenate(windows), np.concatenate(units), offset
    )


def _sweep(rows: _Scorable, profile: Profile) -> tuple[FloatArray, FloatArray]:
    """Raw corpus score at every candidate threshold, highest threshold first.

    The first candidate is NOTHING_THRESHOLD (no detection: every window
    missed); then each distinct score, where every row scoring at least that
    much is a detection.
    """
    order = np.argsort(-rows.scores, kind="stable")
    ranked = rows.scores[order]
    window = rows.window[order]
    unit = rows.unit[order]
    change = np.zeros(ranked.size)
    outside = window < 0
    change[outside] = profile.fp * unit[outside]
    # Inside a window only the earliest detection counts, and lowering the
    # threshold can only add detections: the window's value is the running
    # maximum of A_tp * S(y)/S(-1) over its rows taken in score order, and
    # each step up of that maximum (from -A_fn at first) is a change.
    inside = np.flatnonzero(~outside)
    by_window = inside[np.argsort(window[inside], kind="stable")]
    bounds = np.flatnonzero(np.diff(window[by_window])) + 1
    for positions in np.split(by_window, bounds):
        if positions.size == 0:
            continue
        best = np.maximum.accumulate(profile.tp * unit[positions])
        change[positions] = np.diff(best, prepend=-profile.fn)
    base = -profile.fn * rows.n_windows
    totals = base + np.cumsum(change)
    # The candidate threshold is each distinct score; its total includes
    # every row tied at that score, i.e. it is read at the last row of a tie.
    last_of_tie = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))
    thresholds = np.concatenate(([NOTHING_THRESHOLD], ranked[last_of_tie]))
    return thresholds, np.concatenate(([base], totals[last_of_tie]))


def optimise_threshold(
    series: Sequence[LabelledSeries], profile: Profile
) -> tuple[float, float]:
    """The threshold that maximises the corpus's raw score, and that score.

    Every distinct score is tried (exactly, in one sorted pass); ties go to
    the highest threshold.
    """
    thresholds, totals = _sweep(_scorable(series), profile)
    best = int(np.argmax(totals))  # the first maximum: the highest threshold
    return float(thresholds[best]), float(totals[best])


def score_files(
    series: Sequence[LabelledSeries], profile: Profile, threshold: float
) -> tuple[FileScore, ...]:
    """Each file's raw score when rows scoring ``>= threshold`` are detections."""
    results = []
    for one in series:
        window, unit = _units(one.scores.size, one.windows)
        keep = slice(probation_rows(one.scores.size), None)
        window, unit = window[keep], unit[keep]
        hit = one.scores[keep] >= threshold
        false_positives = hit & (window < 0)
        raw = profile.fp * float(unit[false_positives].sum())
        detected = missed = 0
        for k in np.unique(window[window >= 0]):
            in_window = hit & (window == k)
            if in_window.any():
                # Units fall along a window, so the earliest hit is the largest.
                raw += profile.tp * float(unit[in_window].max())
                detected += 1
            else:
                raw -= profile.fn
                missed += 1
        results.append(
            FileScore(one.name, raw, detected, missed, int(false_positives.sum()))
        )
    return tuple(results)


def score_corpus(
    series: Sequence[LabelledSeries], profiles: Iterable[Profile] = PROFILES
) -> Mapping[str, ProfileResult]:
    """Score a corpus under each profile at its own optimised threshold.

    Returns:
        The result per profile name, normalised against the null detector
        (its best raw score with a constant anomaly score) and the perfect
        one (``A_tp`` per window of the corpus).

    Raises:
        ValueError: the corpus has no anomaly window, so the score cannot be
            normalised.
    """
    n_windows = sum(len(one.windows) for one in series)
    if n_windows == 0:
        raise ValueError("the corpus has no anomaly window: nothing to normalise by")
    rows = _scorable(series)
    constant = _Scorable(
        np.full(rows.scores.size, 0.5), rows.window, rows.unit, rows.n_windows
    )
    results = {}
    for profile in profiles:
        thresholds, totals = _sweep(rows, profile)
        best = int(np.argmax(totals))
        threshold = float(thresholds[best])
        files = score_files(series, profile, threshold)
        results[profile.name] = ProfileResult(
            profile=profile,
            threshold=threshold,
            # Summed per file rather than read from the sweep, so the total is
            # exactly the sum of the per-file scores reported with it.
            raw=math.fsum(f.raw for f in files),
            null=float(np.max(_sweep(constant, profile)[1])),
            perfect=profile.tp * n_windows,
            files=files,
        )
    return results
