"""Window novelty (stream_jobs.detection.novelty): hand-worked records,
learning, suppression, and the contract (scores in [0, 1], causal, exact
state round trip, fixed bounded state, determinism)."""

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskwatch.contracts import Metric
from stream_jobs import state_codec as table_codec
from stream_jobs.detection.novelty import (
    DAYLONG,
    NoveltyParams,
    NoveltyParamsError,
    WindowNovelty,
    state_bytes,
)
from stream_jobs.detectors import new_state, score_value

STATE_BUDGET_BYTES = 4096
# What a new component was allowed beside the production engine's ~2,230
# bytes of STATE_VERSION 5 (the engine's own state is ~3,060 bytes since
# version 6, see the budget test below).
NEW_COMPONENT_BYTES = 1800
# Small enough to work out by hand: windows of 2 points, 1 reference (the
# previous window), records held against 2 blocks of 2 distances.
TINY = NoveltyParams(
    window=2,
    scales=(1,),
    references=1,
    blocks=2,
    block=2,
    learning=0,
    suppress_half_life=1.0,
)


def scores_of(values, params=None, detector=None):
    detector = detector or WindowNovelty(params)
    return [detector.score(float(v)) for v in values]


def busy_series(n, seed=3):
    """Daily cycle at 5-minute readings, noise, a level shift, spikes."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = 50 + 10 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 1, n)
    values[n // 2 :] += 15
    values[rng.integers(0, n, 8)] += 60
    return values


def test_a_record_is_the_distance_over_the_largest_recent_distance_minus_one():
    # Points 0, 1, 2, 4, 5, 9: windows (0,1) (1,2) (2,4) (4,5) (5,9); the
    # distance of each window to the one before it: -, sqrt2, sqrt5, sqrt5,
    # sqrt17. The first block (sqrt2, sqrt5) completes with the 3rd window's
    # distance, so the 4th window is the first one held against a record.
    scores = scores_of([0, 1, 2, 4, 5, 9], TINY)
    assert scores[:4] == [0.0, 0.0, 0.0, 0.0]  # sqrt5 / sqrt5 - 1 = 0
    assert scores[4] == 0.0
    assert scores[5] == pytest.approx(math.sqrt(17) / math.sqrt(5) - 1)


def test_a_record_below_double_scores_its_excess():
    # Windows (0,0) (0,1) (1,1) (1,1) (1,2.5): distances 1, 1, 0, then
    # sqrt(0 + 1.5^2) = 1.5 against a record of 1: score 0.5.
    scores = scores_of([0, 0, 1, 1, 1, 2.5], TINY)
    assert scores[-1] == pytest.approx(0.5)
    assert max(scores[:-1]) == 0.0


def test_settling_distances_stay_out_of_the_record_history():
    # Windows (0,10) (10,10) (10,11) (11,11) (11,13): distances to the window
    # before 10, 1, 1, 2. Without settling, 10 is in the history and 2 is no
    # record. Settling 1 distance leaves blocks (1, 1): 2 / 1 - 1 = 1.
    values = [0, 10, 10, 11, 11, 13]
    assert scores_of(values, TINY)[-1] == 0.0
    settled = scores_of(values, dataclasses.replace(TINY, settle=1))
    assert settled == [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]


def daily_cycle(days, missing_peak_day=None):
    """5-minute readings: 20 at night, 80 from reading 100 to 199 of each day,
    a ripple of period 9 on top; one day's peak may be missing."""
    day = np.arange(days * 288) % 288
    ripple = 0.5 * np.sin(2 * np.pi * day / 9)
    peak = (day >= 100) & (day < 200)
    if missing_peak_day is not None:
        peak[missing_peak_day * 288 : (missing_peak_day + 1) * 288] = False
    return np.where(peak, 80.0, 20.0) + ripple


@pytest.mark.parametrize("params", [NoveltyParams(), DAYLONG])
def test_a_pure_daily_cycle_never_scores(params):
    assert max(scores_of(daily_cycle(14), params)) == 0.0


def test_daylong_flags_a_missing_peak_where_a_long_point_should_have_held_it():
    # Day 10's peak should start at reading 2980. Scale 32's points close at
    # readings 32k - 1: the one at 2975 (2944..2975) is low on every day; the
    # one at 3007 should have held 28 high readings and holds none, a window
    # never seen. Scales 1 and 4 see only the night's shapes.
    scores = np.array(scores_of(daily_cycle(14, missing_peak_day=10), DAYLONG))
    assert np.flatnonzero(scores).tolist() == [3007]
    assert scores[3007] == 1.0
    # The default parameters' windows span at most 2 h 40 min: no record.
    assert max(scores_of(daily_cycle(14, missing_peak_day=10))) == 0.0


def test_a_spike_on_a_repeating_pattern_is_flagged_at_its_reading():
    values = [10.0 + (i % 7) * 0.1 for i in range(3000)]
    values[2500] = 25.0
    scores = scores_of(values)
    assert scores[2500] == 1.0
    assert max(scores[:2500]) == 0.0


def test_a_flat_line_never_scores_and_a_change_after_it_scores_one():
    scores = scores_of([3.5] * 2000 + [3.6])
    assert max(scores[:2000]) == 0.0
    assert scores[2000] == 1.0


def test_nothing_scores_during_the_learning_readings():
    params = NoveltyParams(learning=500)
    values = [10.0 + (i % 7) * 0.1 for i in range(1000)]
    values[400] = 99.0  # a record, but still inside the learning period
    values[800] = -99.0
    scores = scores_of(values, params)
    assert max(scores[:500]) == 0.0
    assert scores[800] > 0.0


def test_a_second_anomaly_is_suppressed_until_the_first_has_decayed():
    values = [10.0 + (i % 7) * 0.1 for i in range(6000)]
    values[3000] = 25.0
    values[3050] = 26.0  # 50 readings later, no larger: suppressed
    values[5000] = 60.0  # 1,950 readings (~10 half-lives) later: reported
    scores = scores_of(values)
    assert scores[3000] == 1.0
    assert scores[3050] == 0.0
    assert scores[5000] == 1.0


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
        min_size=1,
        max_size=400,
    )
)
def test_scores_stay_in_zero_one(values):
    params = NoveltyParams(learning=0, block=4, blocks=3)
    assert all(0.0 <= s <= 1.0 for s in scores_of(values, params))


@pytest.mark.parametrize("params", [NoveltyParams(), DAYLONG])
@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=0, max_value=2400), st.integers(min_value=0, max_value=9))
def test_scoring_a_prefix_gives_the_same_scores_and_a_restored_state_continues_exactly(
    params, split, seed
):
    values = busy_series(2400, seed=seed)
    whole = scores_of(values, params)
    first = WindowNovelty(params)
    prefix = scores_of(values[:split], detector=first)
    assert prefix == whole[:split]  # causal: later readings change nothing
    restored = WindowNovelty.from_bytes(first.to_bytes(), params)
    assert restored.to_bytes() == first.to_bytes()
    assert prefix + scores_of(values[split:], detector=restored) == whole


@pytest.mark.parametrize("params", [NoveltyParams(), DAYLONG])
def test_the_state_has_a_fixed_size_within_budget_beside_the_riskwatch_state(params):
    detector = WindowNovelty(params)
    sizes = set()
    riskwatch = new_state()
    rng = np.random.default_rng(11)
    values = rng.normal(0, 1, 20_000) * 10.0 ** rng.integers(-12, 12, 20_000)
    for k, value in enumerate(values):
        detector.score(float(value))
        riskwatch, _ = score_value(
            riskwatch, Metric.TEMPERATURE_C, float(value), (k + 1) * 60 * 10**9
        )
        if k % 997 == 0:
            sizes.add(len(detector.to_bytes()))
    assert sizes == {state_bytes(detector.params)}
    assert state_bytes(detector.params) <= NEW_COMPONENT_BYTES
    assert len(table_codec.dumps(riskwatch)) <= STATE_BUDGET_BYTES


@pytest.mark.parametrize("params", [NoveltyParams(), DAYLONG])
def test_scores_are_deterministic(params):
    values = busy_series(3000)
    assert scores_of(values, params) == scores_of(values, params)


def test_a_level_shift_on_a_noisy_daily_cycle_is_flagged_as_it_happens():
    rng = np.random.default_rng(4)
    t = np.arange(3000)
    values = 50 + 10 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 1, t.size)
    values[1500:] += 15
    scores = np.array(scores_of(values))
    assert scores[1500] > 0.0
    # Reported at its onset (scale 1, then scale 4 whose first shifted point
    # closes 3 readings later with a larger record of its own), not while
    # the new level lasts.
    reported = np.flatnonzero(scores[1400:1800]) + 1400
    assert reported.min() == 1500
    assert reported.max() < 1500 + 4


def test_a_state_for_other_parameters_is_refused():
    data = WindowNovelty().to_bytes()
    with pytest.raises(ValueError, match="bytes, expected"):
        WindowNovelty.from_bytes(data, NoveltyParams(window=4))


def test_a_non_finite_reading_is_refused():
    with pytest.raises(ValueError, match="value: nan is not a finite number"):
        WindowNovelty().score(math.nan)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"window": 0}, "novelty.window"),
        ({"references": 2000}, "novelty.references"),
        ({"scales": ()}, "novelty.scales"),
        ({"scales": (1, 0)}, "novelty.scales"),
        ({"learning": -1}, "novelty.learning"),
        ({"settle": -1}, "novelty.settle"),
        ({"suppress_half_life": 0.0}, "novelty.suppress_half_life"),
        ({"suppress_half_life": math.inf}, "novelty.suppress_half_life"),
    ],
)
def test_parameters_out_of_range_are_refused_naming_the_field(change, field):
    with pytest.raises(NoveltyParamsError, match=field):
        NoveltyParams(**change)
