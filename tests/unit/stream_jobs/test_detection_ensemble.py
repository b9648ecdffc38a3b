"""The resonance-and-novelty ensemble: its parts, the calibration worked by
hand, bounded exact state and the streaming properties (hypothesis)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_jobs.detection import novelty
from stream_jobs.detection.ensemble import (
    QUICK,
    RESONANCE_WEIGHT,
    Calibration,
    Ensemble,
    state_bytes,
)
from stream_jobs.detection.resonance import Resonance


def cycle(n, period=288.0, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = 10 + np.sin(2 * np.pi * t / period) + rng.normal(0, noise, n)
    return [float(v) for v in values]


def scores_of(values, ensemble=None):
    ensemble = ensemble or Ensemble()
    return [ensemble.score(v) for v in values]


def test_calibration_divides_a_record_by_one_plus_the_similar_records_before_it():
    calibration = Calibration()
    # record / (1 + 2 n)
    assert calibration.score(0.0) == 0.0  # no record: nothing remembered
    assert calibration.score(0.4) == 0.4  # nothing before it
    assert calibration.score(0.3) == pytest.approx(0.3 / 3)  # 0.4 >= 0.15
    assert calibration.score(0.9) == 0.9  # neither 0.4 nor 0.3 is >= 0.45
    assert calibration.score(0.2) == pytest.approx(0.2 / 7)  # all three >= 0.1


def test_calibration_remembers_the_last_sixteen_records_only():
    calibration = Calibration()
    for _ in range(16):
        calibration.score(0.05)
    assert calibration.score(1.0) == 1.0  # none of the sixteen is >= 0.5
    for _ in range(15):
        calibration.score(0.05)
    # The 1.0 is still among the last 16; one more record pushes it out.
    assert calibration.score(0.8) == pytest.approx(0.8 / 3)
    assert calibration.score(0.8) == pytest.approx(0.8 / 3)


def test_the_score_is_weighted_resonance_plus_calibrated_novelty_capped_at_one():
    values = cycle(2000, period=50.0, noise=0.05, seed=2)
    values[1500] = 30.0
    main, quick = Resonance(), Resonance(QUICK)
    calibration, records = Calibration(), novelty.WindowNovelty(novelty.DAYLONG)
    expected = []
    for k, value in enumerate(values):
        shape, early = main.score(value), quick.score(value)
        shape = early if k < 602 else shape  # the quick one while main learns
        record = calibration.score(records.score(value))
        expected.append(min(1.0, RESONANCE_WEIGHT * shape + record))
    assert scores_of(values) == expected
    assert expected[1500] == 1.0


def test_the_quick_detector_covers_the_main_ones_learning_period():
    values = cycle(700, period=40.0, noise=0.02)
    values[400] = 30.0  # after the quick detector's 186 readings of learning
    scores = scores_of(values)
    assert scores[400] > 0.0


def test_nothing_scores_on_a_pure_daily_cycle_once_the_main_detector_has_learnt():
    assert max(scores_of(cycle(9000))[602:]) == 0.0


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
        min_size=1,
        max_size=700,
    )
)
def test_scores_stay_in_zero_one(values):
    assert all(0.0 <= s <= 1.0 for s in scores_of(values))


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=0, max_value=1400), st.integers(min_value=0, max_value=9))
def test_scoring_split_anywhere_equals_scoring_in_one_go_through_the_state(split, seed):
    values = cycle(1400, period=37.0, noise=0.2, seed=seed)
    values[1100] += 8.0
    whole = scores_of(values)
    first = Ensemble()
    prefix = scores_of(values[:split], first)
    assert prefix == whole[:split]  # causal
    restored = Ensemble.from_bytes(first.to_bytes())
    assert restored.to_bytes() == first.to_bytes()
    assert prefix + scores_of(values[split:], restored) == whole


def test_the_state_is_bounded_within_4_kb():
    ensemble = Ensemble()
    sizes = set()
    for value in cycle(5000, period=23.0, noise=0.3):
        ensemble.score(value)
        sizes.add(len(ensemble.to_bytes()))
    assert max(sizes) == state_bytes() == 4074
    assert state_bytes() <= 4096


def test_a_truncated_state_is_refused():
    ensemble = Ensemble()
    scores_of(cycle(300), ensemble)
    with pytest.raises(ValueError, match="state"):
        Ensemble.from_bytes(ensemble.to_bytes()[:-3])


def test_corrupted_far_readings_score_within_zero_one_and_are_flagged():
    values = cycle(1500, period=40.0, noise=0.02)
    values[1200] = 1.7e308
    values[1300] = -1.7e308
    scores = scores_of(values)
    assert scores[1200] == 1.0
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_a_non_finite_reading_is_refused():
    with pytest.raises(ValueError, match="not a finite number"):
        Ensemble().score(math.inf)
