"""The resonance detector: hand-worked features and reports, learning period,
bounded exact state, and the streaming properties (hypothesis)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_jobs.detection import novelty
from stream_jobs.detection.resonance import (
    Resonance,
    ResonanceParams,
    ResonanceParamsError,
    _haar,
    state_bytes,
)

# Readings per point with the defaults: 750 // (8 * 13).
STEP = 7

# Small enough that hypothesis reaches reports: 96 readings of learning in
# points of 96 // (4 * 3) = 8 readings.
SMALL = ResonanceParams(learning=96, horizon=96, window=4, windows_per_learning=3)


def cycle(n, period=50.0, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = 10 + np.sin(2 * np.pi * t / period) + rng.normal(0, noise, n)
    return [float(v) for v in values]


def scores_of(values, params=None, detector=None):
    detector = detector or Resonance(params)
    return [detector.score(v) for v in values]


def test_haar_coefficients_worked_by_hand():
    # [1, 3]: average (1 + 3) / sqrt 2, detail (3 - 1) / sqrt 2.
    assert np.allclose(_haar(np.array([1.0, 3.0])), [4 / math.sqrt(2), math.sqrt(2)])
    # [1, 3, 5, 7]: pairs give details sqrt 2, sqrt 2 and averages 4 / sqrt 2,
    # 12 / sqrt 2; those give the average 8 and the coarse detail 4.
    assert np.allclose(
        _haar(np.array([1.0, 3.0, 5.0, 7.0])), [8.0, 4.0, math.sqrt(2), math.sqrt(2)]
    )


def test_the_step_and_learning_points_follow_from_the_learning_period():
    params = ResonanceParams()
    assert params.step == STEP  # 750 // 104
    assert params.trend_points == 107  # 750 // 7
    assert params.learning_points == 86  # 602 // 7
    assert params.mask == 12


@pytest.mark.parametrize("period", [50.0, 288.0])
def test_nothing_scores_on_a_pure_cycle_after_learning(period):
    assert max(scores_of(cycle(8000, period))) == 0.0


def test_a_spike_is_flagged_at_its_reading_when_it_ends_a_point():
    values = cycle(4000, noise=0.02)
    spike = 3002  # (3002 + 1) % 7 == 0: the last reading of a point
    values[spike] = 30.0
    scores = scores_of(values)
    assert max(scores[:spike]) == 0.0
    assert scores[spike] > 0.0


def test_a_spike_inside_a_point_is_flagged_at_the_end_of_its_point():
    values = cycle(4000, noise=0.02)
    values[2999] = 30.0  # readings 2996..3002 make one point
    scores = scores_of(values)
    assert max(scores[:3002]) == 0.0
    assert scores[3002] > 0.0


def test_a_drop_below_the_cycle_is_flagged_too():
    values = cycle(4000, noise=0.02)
    values[3002] = -20.0
    assert scores_of(values)[3002] > 0.0


def test_an_anomaly_is_reported_once_at_its_onset_not_while_it_lasts():
    values = cycle(4000, noise=0.02)
    values[3002:3060] = [30.0] * 58  # a new level held for eight points
    scores = scores_of(values)
    assert scores[3002] > 0.0
    assert max(scores[3003:3060]) == 0.0


def test_nothing_scores_during_the_learning_readings():
    values = cycle(1200, noise=0.02)
    values[400] = 30.0
    detector = Resonance()
    scores = scores_of(values[:601], detector=detector)
    assert detector.learning
    assert max(scores) == 0.0
    detector.score(values[601])  # the 602nd reading ends the 86th point
    assert not detector.learning


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
        min_size=1,
        max_size=400,
    )
)
def test_scores_stay_in_zero_one(values):
    assert all(0.0 <= s <= 1.0 for s in scores_of(values, SMALL))


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=1500), st.integers(min_value=0, max_value=9))
def test_scoring_split_anywhere_equals_scoring_in_one_go_through_the_state(split, seed):
    values = cycle(1500, period=37.0, noise=0.2, seed=seed)
    values[1200] += 8.0
    whole = scores_of(values)
    first = Resonance()
    prefix = scores_of(values[:split], detector=first)
    assert prefix == whole[:split]  # causal: later readings change nothing
    restored = Resonance.from_bytes(first.to_bytes())
    assert restored.to_bytes() == first.to_bytes()
    assert prefix + scores_of(values[split:], detector=restored) == whole


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
        min_size=100,
        max_size=300,
    ),
    st.integers(min_value=0, max_value=300),
)
def test_a_small_detector_round_trips_its_state_at_any_point(values, split):
    first = Resonance(SMALL)
    prefix = scores_of(values[:split], detector=first)
    restored = Resonance.from_bytes(first.to_bytes(), SMALL)
    assert prefix + scores_of(values[split:], detector=restored) == scores_of(
        values, SMALL
    )


def test_the_state_is_bounded_and_fits_beside_daylong_in_4_kb():
    params = ResonanceParams()
    detector = Resonance(params)
    sizes = set()
    for value in cycle(6000, period=23.0, noise=0.3):
        detector.score(value)
        sizes.add(len(detector.to_bytes()))
    assert max(sizes) == state_bytes(params) == 2356
    assert state_bytes(params) + novelty.state_bytes(novelty.DAYLONG) <= 4096


def test_scores_are_deterministic():
    values = cycle(3000, period=41.0, noise=0.5, seed=3)
    assert scores_of(values) == scores_of(values)


def test_a_state_record_of_the_wrong_length_is_refused():
    detector = Resonance()
    for value in cycle(900):
        detector.score(value)
    with pytest.raises(ValueError, match="resonance state"):
        Resonance.from_bytes(detector.to_bytes()[:-1])


def test_a_corrupted_far_reading_counts_as_far_and_is_flagged():
    values = cycle(1500, noise=0.02)
    values[1203] = 1.7e308  # (1203 + 1) % 7 == 0: the end of a point
    scores = scores_of(values)
    assert scores[1203] > 0.0
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_a_non_finite_reading_is_refused():
    with pytest.raises(ValueError, match="not a finite number"):
        Resonance().score(math.nan)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("window", 6),
        ("levels", 0),
        ("categories", 1),
        ("margin", 1.5),
        ("chomp", -0.1),
        ("learning", 10),
    ],
)
def test_parameters_out_of_range_are_refused_naming_the_field(field, value):
    with pytest.raises(ResonanceParamsError, match=f"resonance.{field}"):
        ResonanceParams(**{field: value})
