"""The contract every series state keeps, whatever the detectors inside.

Serialisation round trip, determinism, warm-up, missing values, bounded size,
scores in [0, 1], and scoring split at any point equal to scoring in one go.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskwatch.contracts import Detector, Metric
from stream_jobs import state_codec as table_codec
from stream_jobs.detectors import (
    LEARNING_READINGS,
    new_state,
    score_value,
    state_fields,
)

T0_NS = 1_764_720_000 * 1_000_000_000
S = 1_000_000_000
STATE_BUDGET_BYTES = 4096


def run(values, times_s, metric=Metric.TEMPERATURE_C, state=None):
    state = state or new_state()
    results = []
    for value, t in zip(values, times_s, strict=True):
        state, scored = score_value(state, metric, float(value), T0_NS + int(t * S))
        results.append(scored)
    return state, results


def busy_series(n, seed=5, interval_s=300):
    """A daily cycle with noise, a level shift, spikes and a flat spell."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) * interval_s
    values = 50 + 10 * np.sin(2 * np.pi * t / 86_400) + rng.normal(0, 1, n)
    values[n // 2 :] += 15
    values[rng.integers(0, n, 10)] += 60
    values[n // 3 : n // 3 + 30] = 42.0
    return values, t


def test_state_is_bounded_after_a_long_series_of_any_magnitude():
    rng = np.random.default_rng(11)
    n = 20_000
    # Values with long reprs (many digits, large and tiny exponents).
    values = rng.normal(0, 1, n) * 10.0 ** rng.integers(-12, 12, n)
    state, _ = run(values, np.arange(n) * 60.0)
    assert len(table_codec.dumps(state)) <= STATE_BUDGET_BYTES


def test_state_after_weeks_of_seasonal_data_is_bounded_and_exact():
    values, t = busy_series(6_000)
    state, _ = run(values, t)
    text = table_codec.dumps(state)
    assert len(text) <= STATE_BUDGET_BYTES
    assert table_codec.loads(text) == state


def test_state_round_trips_through_the_faust_table_codec_exactly():
    # The worker's table stores states with its own codec (msgpack, see
    # stream_jobs/state_codec.py): scoring must continue from what it reads
    # back exactly as from the state in memory.
    values, t = busy_series(2_000)
    state, _ = run(values[:1_500], t[:1_500])
    assert table_codec.loads(table_codec.dumps(state)) == state
    _, direct = run(values[1_500:], t[1_500:], state=state)
    _, restored = run(
        values[1_500:], t[1_500:], state=table_codec.loads(table_codec.dumps(state))
    )
    assert [r.score for r in direct] == [r.score for r in restored]


def test_the_same_input_gives_the_same_output():
    values, t = busy_series(1_500)
    state_a, results_a = run(values, t)
    state_b, results_b = run(values, t)
    assert state_a == state_b
    assert results_a == results_b


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_missing_value_is_reported_not_learned(bad):
    values, t = busy_series(200)
    state, _ = run(values, t)
    after, scored = score_value(state, Metric.TEMPERATURE_C, bad, T0_NS + 10**15)
    assert after == state
    assert scored.score == 0.0
    assert [f.detector for f in scored.findings] == ["missing"]


def test_the_detectors_report_exactly_the_names_of_the_contract():
    # The names rules may use come from riskwatch.contracts.Detector; a
    # detector reporting under another name could never fire a rule, and a
    # name no detector reports would let a rule check pass that never fires.
    reported: set[str] = set()

    def note(results):
        reported.update(f.detector for r in results for f in r.findings)

    # A daily cycle with a shift, spikes and a flat spell: the level, step,
    # profile and flat-value detectors.
    note(run(*busy_series(3_000))[1])
    # A silence of 60 usual intervals.
    times = [*(np.arange(100) * 60), 99 * 60 + 3_600]
    note(run(np.random.default_rng(1).normal(20, 0.5, 101), times)[1])
    # A meter running backwards.
    rates = [*np.random.default_rng(1).normal(3, 0.1, 100), -1.0]
    note(run(rates, np.arange(101) * 60, metric=Metric.ENERGY_KWH)[1])
    # A value that is not a number.
    note([score_value(new_state(), Metric.TEMPERATURE_C, math.nan, T0_NS)[1]])
    assert reported == {detector.value for detector in Detector}


def test_learning_period_is_neutral_for_every_detector():
    # Wild values, irregular gaps, flat runs: nothing before LEARNING_READINGS.
    rng = np.random.default_rng(2)
    values = rng.choice([0.0, 1e6, -1e6, 5.0], LEARNING_READINGS)
    times = np.cumsum(rng.choice([1, 60, 86_400], LEARNING_READINGS))
    _, results = run(values, times, metric=Metric.ENERGY_KWH)
    assert all(r.learning and r.score == 0.0 for r in results)
    # Only a counter running backwards is reported while learning: it is
    # impossible, not unusual.
    assert {f.detector for r in results for f in r.findings} <= {"counter"}


def test_the_input_state_is_not_changed():
    values, t = busy_series(400)
    state, _ = run(values[:300], t[:300])
    before = table_codec.dumps(state)
    run(values[300:], t[300:], state=state)
    assert table_codec.dumps(state) == before


@given(
    seed=st.integers(0, 2**16),
    split=st.integers(0, 700),
    interval_s=st.sampled_from([60, 300, 3_600]),
)
@settings(max_examples=25, deadline=None)
def test_scoring_split_anywhere_with_the_table_codec_in_between_is_the_same(
    seed, split, interval_s
):
    values, t = busy_series(700, seed=seed, interval_s=interval_s)
    state_once, results_once = run(values, t)
    state, first = run(values[:split], t[:split])
    restored = table_codec.loads(table_codec.dumps(state))
    assert restored == state
    state_split, second = run(values[split:], t[split:], state=restored)
    assert state_split == state_once
    assert first + second == results_once


finite = st.floats(-1e9, 1e9, allow_nan=False)


@given(
    values=st.lists(finite | st.sampled_from([0.0, 1.0]), min_size=1, max_size=200),
    gaps=st.lists(st.integers(1, 200_000), min_size=200, max_size=200),
    metric=st.sampled_from(list(Metric)),
)
@settings(max_examples=60, deadline=None)
def test_scores_stay_in_the_unit_interval(values, gaps, metric):
    times = np.cumsum(gaps[: len(values)])
    state, results = run(values, times, metric=metric)
    for scored in results:
        assert 0.0 <= scored.score <= 1.0
        assert all(0.0 <= f.score <= 1.0 for f in scored.findings)
        assert all(f.detector in set(Detector) for f in scored.findings)
        if scored.score > 0:
            # Every non-zero score comes with its explanation.
            assert any(f.score > 0 for f in scored.findings)
    assert table_codec.loads(table_codec.dumps(state)) == state


def test_a_state_stored_by_the_first_version_is_completed_not_fatal():
    # What the worker's table held before the detectors grew (version 1).
    old = {
        "n": 200,
        "last_ts": T0_NS,
        "window": [20.0, 20.5, 19.5] * 32,
        "run": 1,
        "run_start": T0_NS,
        "last_value": 20.0,
    }
    state, scored = score_value(old, Metric.TEMPERATURE_C, 35.0, T0_NS + 60 * S)
    assert state_fields(state)["n"] == 201
    assert set(new_state()) <= set(state)
    assert [f.detector for f in scored.findings if f.score > 0] == ["robust_z"]
    assert table_codec.loads(table_codec.dumps(state)) == state
