"""The NAB-compatible scorer against the worked values of the NAB README and
against a slow row-by-row oracle written straight from the definition."""

import math

import numpy as np
import pytest

from stream_jobs.bench.nab_score import (
    NOTHING_THRESHOLD,
    PROFILES,
    LabelledSeries,
    optimise_threshold,
    probation_rows,
    scaled_sigmoid,
    score_corpus,
    score_files,
    window_rows,
)

STANDARD, LOW_FP, LOW_FN = PROFILES
# 1000 rows: the first 150 are probationary. One window of 50 rows.
N = 1000
WINDOW = (500, 549)


def series(*hits, n=N, windows=(WINDOW,), name="f.csv", value=1.0):
    scores = np.zeros(n)
    scores[list(hits)] = value
    return LabelledSeries(name, scores, windows)


def raw(one, profile=STANDARD, threshold=0.5):
    return score_files([one], profile, threshold)[0].raw


def s(y):
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def test_scaled_sigmoid_matches_the_readme_values():
    values = scaled_sigmoid(np.array([-1.0, -0.5, 0.0, 1.0, 3.5]))
    assert values == pytest.approx([0.98661, 0.84828, 0.0, -0.98661, -1.0], abs=1e-5)


def test_probation_is_15_percent_capped_at_750_rows():
    assert probation_rows(1000) == 150
    assert probation_rows(4032) == 604
    assert probation_rows(5000) == 750
    assert probation_rows(22695) == 750


def test_earliest_detection_in_a_window_earns_exactly_1():
    assert raw(series(WINDOW[0])) == pytest.approx(1.0, abs=1e-12)
    assert raw(series(WINDOW[0]), LOW_FN) == pytest.approx(1.0, abs=1e-12)


def test_a_later_detection_earns_the_sigmoid_of_its_position():
    first, last = WINDOW
    i = first + 25  # y = -(last - i + 1) / width = -0.5
    assert raw(series(i)) == pytest.approx(s(-0.5) / s(-1.0))
    assert raw(series(last)) == pytest.approx(s(-1 / 50) / s(-1.0))


def test_a_missed_window_costs_a_fn():
    assert raw(series()) == -1.0
    assert raw(series(), LOW_FN) == -2.0


def test_detections_after_the_first_in_a_window_count_nothing():
    first = WINDOW[0]
    assert raw(series(first, first + 1, first + 30)) == pytest.approx(1.0)
    assert raw(series(first + 10, first + 40)) == raw(series(first + 10))


def test_a_false_positive_far_from_any_window_costs_a_fp():
    # Before any window: S = -1.
    assert raw(series(WINDOW[0], 300)) == pytest.approx(1.0 - 0.11)
    assert raw(series(WINDOW[0], 300), LOW_FP) == pytest.approx(1.0 - 0.22)
    # More than 3 window spans (3 * 49 rows) past the window's last row.
    assert raw(series(WINDOW[0], WINDOW[1] + 3 * 49 + 1)) == pytest.approx(0.89)


def test_a_false_positive_is_weighted_by_its_distance_past_the_window():
    last = WINDOW[1]
    # One span (49 row intervals) past the last row: S(1) = -0.98661.
    assert raw(series(WINDOW[0], last + 49)) == pytest.approx(1.0 + 0.11 * s(1.0))
    # Right after the window a false positive costs almost nothing.
    assert raw(series(WINDOW[0], last + 1)) == pytest.approx(1.0 + 0.11 * s(1 / 49))
    assert -0.01 < raw(series(WINDOW[0], last + 1)) - 1.0 < 0.0


def test_a_false_positive_exactly_3_spans_past_the_window_costs_a_fp():
    # NAB's sweeper gives S = -1 from d = 3 on: 147 rows (3 spans of 49 row
    # intervals) past the window's last row cost the whole 0.11, not
    # 0.11 * (1 - 2 / (1 + e^15)) = 0.11 * 0.99999939.
    last = WINDOW[1]
    assert scaled_sigmoid(np.array(3.0)) == -1.0
    assert raw(series(WINDOW[0], last + 147)) == pytest.approx(0.89, abs=1e-12)
    assert raw(series(WINDOW[0], last + 147), LOW_FP) == pytest.approx(0.78, abs=1e-12)
    # One row closer, d = 146 / 49 < 3: a hair under the full cost.
    assert 0.89 + 1e-8 < raw(series(WINDOW[0], last + 146)) < 0.89 + 1e-7


def test_a_false_positive_just_before_a_window_costs_the_full_a_fp():
    # Only the preceding window discounts a false positive: row 699 is 350
    # rows (more than 3 spans of 49) past the first window, so it costs the
    # full 0.11 although the second window starts at the next row.
    one = series(300, 699, 700, windows=((300, 349), (700, 749)))
    assert raw(one) == pytest.approx(2.0 - 0.11, abs=1e-12)


def test_a_window_straddling_the_probation_keeps_its_full_width():
    # Rows 120..199 (80 rows); the probation ends after row 149. A detection
    # at row 150 is worth its place in the whole window,
    # y = -(199 - 150 + 1) / 80 = -0.625: S(-0.625) / S(-1) = 0.91582 /
    # 0.98661 = 0.92825, not the 1 of a window's first row.
    windows = ((120, 199),)
    assert raw(series(150, windows=windows)) == pytest.approx(0.92825, abs=1e-5)
    # A detection inside the probation does not count: the window is missed,
    # and the later detection at row 160 (y = -0.5) is its first.
    assert raw(series(130, windows=windows)) == -1.0
    assert raw(series(130, 160, windows=windows)) == pytest.approx(
        0.84828 / 0.98661, abs=1e-5
    )


def test_a_window_inside_the_probation_still_counts_for_the_perfect_score():
    # NAB counts every window of its labels file for the perfect score but
    # charges no A_fn for a window without a scored row: perfect = 2,
    # null = -1, so catching the other window at its first row scores
    # 100 * (1 - -1) / (2 - -1) = 66.67.
    files = [
        series(WINDOW[0], name="a.csv"),
        series(windows=((10, 20),), name="b.csv"),
    ]
    result = score_corpus(files)["standard"]
    assert (result.null, result.perfect) == (-1.0, 2.0)
    assert result.raw == pytest.approx(1.0)
    assert result.normalised == pytest.approx(200.0 / 3.0)


def test_false_positives_in_a_file_without_windows_cost_a_fp_each():
    # No window precedes them: each costs the full 0.11, raw = 1 - 3 * 0.11,
    # and the file counts nothing for null (-1) or perfect (1).
    files = [
        series(WINDOW[0], name="a.csv"),
        series(200, 300, 700, n=800, windows=(), name="b.csv"),
    ]
    result = score_corpus(files)["standard"]
    assert result.raw == pytest.approx(0.67)
    assert result.normalised == pytest.approx(83.5)  # 100 * (0.67 + 1) / 2
    assert [f.false_positives for f in result.files] == [0, 3]


def test_all_zero_scores_score_as_the_null_detector():
    # 0 is a candidate like any other score, but flagging every row of an
    # ordinary file costs hundreds of false positives: nothing is flagged.
    result = score_corpus([series(), series(n=800, windows=(), name="b.csv")])
    for profile in PROFILES:
        assert result[profile.name].threshold == NOTHING_THRESHOLD
        assert result[profile.name].normalised == 0.0


def test_a_file_above_the_threshold_everywhere_is_detections_everywhere():
    # NAB's per-file lookup finds no row for a threshold below all of a
    # file's scores and fails; here the threshold keeps its meaning. At 0.3
    # a's window is caught at its first row and every row of b (0.5, its
    # scored rows all in its window) is a detection: 1 + 1. At 0.5 a misses.
    a = series(WINDOW[0], value=0.3, name="a.csv")
    b = LabelledSeries("b.csv", np.full(100, 0.5), ((15, 99),))
    result = score_corpus([a, b])["standard"]
    assert result.threshold == 0.3
    assert result.raw == pytest.approx(2.0)
    assert [f.detected for f in result.files] == [1, 1]


def test_a_score_tied_across_files_makes_each_row_a_detection():
    # a's window start and b's stray row (b has no window) both score 0.7:
    # at 0.7 both are detections, 1 - 0.11 = 0.89; above it neither, -1.
    a = series(WINDOW[0], value=0.7, name="a.csv")
    b = series(300, value=0.7, windows=(), name="b.csv")
    threshold, total = optimise_threshold([a, b], STANDARD)
    assert threshold == 0.7
    assert total == pytest.approx(0.89)


def test_probationary_rows_are_ignored():
    assert raw(series(WINDOW[0], 0, 10, 149)) == pytest.approx(1.0)
    assert raw(series(WINDOW[0], 150)) == pytest.approx(0.89)


def test_a_window_inside_the_probation_neither_earns_nor_costs():
    assert raw(series(windows=((10, 20),))) == 0.0
    assert raw(series(15, windows=((10, 20),))) == 0.0


def test_every_row_at_or_above_the_threshold_is_a_detection():
    one = series(WINDOW[0], value=0.7)
    assert raw(one, threshold=0.7) == pytest.approx(1.0)
    assert raw(one, threshold=0.7000001) == -1.0


def test_null_detector_normalises_to_0_and_perfect_to_100():
    files = [
        series(name="a.csv"),
        series(name="b.csv", windows=((300, 349), (700, 799))),
    ]
    constant = [LabelledSeries(f.name, np.full(N, 0.5), f.windows) for f in files]
    for result in score_corpus(constant).values():
        assert result.normalised == 0.0
        assert result.threshold == NOTHING_THRESHOLD
    perfect = [
        LabelledSeries(f.name, series(*(w[0] for w in f.windows)).scores, f.windows)
        for f in files
    ]
    results = score_corpus(perfect)
    for profile in PROFILES:
        assert results[profile.name].normalised == pytest.approx(100.0)
        assert results[profile.name].perfect == 3.0
        assert results[profile.name].null == -3.0 * profile.fn


def test_normalisation_is_linear_between_null_and_perfect():
    files = [series(WINDOW[0], name="a.csv"), series(name="b.csv")]
    result = score_corpus(files)["standard"]
    # raw = 1 - 1 = 0, null = -2, perfect = 2: half way.
    assert result.raw == pytest.approx(0.0)
    assert result.normalised == pytest.approx(50.0)
    assert [f.detected for f in result.files] == [1, 0]
    assert [f.missed for f in result.files] == [0, 1]


def test_one_threshold_is_chosen_for_the_whole_corpus():
    # File a is caught only at 0.9 (with a false positive at 0.95 before any
    # window); file b at 0.6. The corpus is better off at 0.6 than at 0.9.
    a = series(name="a.csv").scores.copy()
    a[WINDOW[0]], a[200] = 0.9, 0.95
    b = series(name="b.csv").scores.copy()
    b[WINDOW[0]] = 0.6
    files = [
        LabelledSeries("a.csv", a, (WINDOW,)),
        LabelledSeries("b.csv", b, (WINDOW,)),
    ]
    threshold, total = optimise_threshold(files, STANDARD)
    assert threshold == 0.6
    assert total == pytest.approx(2.0 - 0.11)


def test_ties_go_to_the_highest_threshold():
    one = series(WINDOW[0], value=0.8)
    one.scores[WINDOW[0] + 1] = 0.7  # a second hit adds nothing
    assert optimise_threshold([one], STANDARD)[0] == 0.8


def test_scores_outside_0_1_are_rejected():
    with pytest.raises(ValueError, match=r"row 3 .* in \[0, 1\]"):
        LabelledSeries("x.csv", np.array([0, 0, 0, 1.5]), ())
    with pytest.raises(ValueError, match="row 0"):
        LabelledSeries("x.csv", np.array([math.nan]), ())


def test_overlapping_windows_are_rejected():
    with pytest.raises(ValueError, match="not overlapping"):
        LabelledSeries("x.csv", np.zeros(10), ((1, 5), (5, 8)))


def test_a_corpus_without_windows_cannot_be_normalised():
    with pytest.raises(ValueError, match="no anomaly window"):
        score_corpus([series(windows=())])


def test_windows_map_to_rows_by_exact_time_in_file_order():
    # A clock step back at row 4 (as in a few NAB files).
    ts = [0, 10, 20, 30, 15, 25, 35, 45]
    assert window_rows(ts, [(25, 35)]) == ((5, 6),)
    assert window_rows(ts, [(10, 30)]) == ((1, 3),)
    # No exact match: the rows inside the time range.
    assert window_rows(ts, [(31, 44)]) == ((6, 6),)
    with pytest.raises(ValueError, match="holds no row"):
        window_rows(ts, [(46, 50)])


# ---------------------------------------------------------------------------
# A slow oracle, row by row from the definition, over every threshold.


def oracle_file(scores, windows, profile, threshold):
    n = len(scores)
    total = 0.0
    for first, last in windows:
        width = last - first + 1
        hits = [
            i
            for i in range(max(first, probation_rows(n)), last + 1)
            if scores[i] >= threshold
        ]
        scored_rows = last >= probation_rows(n)
        if hits:
            y = -(last - hits[0] + 1) / width
            total += profile.tp * s(y) / s(-1.0)
        elif scored_rows:
            total -= profile.fn
    for i in range(probation_rows(n), n):
        if scores[i] < threshold or any(a <= i <= b for a, b in windows):
            continue
        before = [w for w in windows if w[1] < i]
        if not before:
            total -= profile.fp
            continue
        first, last = before[-1]
        d = (i - last) / max(last - first, 1)
        total += profile.fp * (-1.0 if d >= 3 else s(d))
    return total


@pytest.mark.parametrize("seed", range(6))
def test_threshold_search_matches_the_oracle_on_random_corpora(seed):
    rng = np.random.default_rng(seed)
    files = []
    for k in range(3):
        n = rng.integers(40, 120)
        # Coarse scores make ties, which the search must handle.
        scores = rng.integers(0, 21, size=n) / 20
        windows, start = [], rng.integers(0, 30)
        while start < n - 5:
            end = min(n - 1, start + rng.integers(1, 15))
            windows.append((start, end))
            start = end + rng.integers(2, 30)
        files.append(LabelledSeries(f"f{k}.csv", scores, tuple(windows)))
    for profile in PROFILES:
        candidates = sorted(
            {NOTHING_THRESHOLD, *np.concatenate([f.scores for f in files])}
        )
        expected = {
            t: sum(oracle_file(f.scores, f.windows, profile, t) for f in files)
            for t in candidates
        }
        best = max(expected.values())
        threshold, total = optimise_threshold(files, profile)
        assert total == pytest.approx(best, abs=1e-9)
        assert expected[threshold] == pytest.approx(best, abs=1e-9)
        # Ties go to the highest threshold.
        assert threshold == max(t for t, v in expected.items() if v >= best - 1e-9)
        direct = sum(f.raw for f in score_files(files, profile, threshold))
        assert direct == pytest.approx(best, abs=1e-9)
