"""Detectors checked against a numpy oracle over the same causal window."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskwatch.contracts import Metric
from stream_jobs import state_codec as table_codec
from stream_jobs.detectors import (
    LEARNING_READINGS,
    STUCK_MIN_READINGS,
    STUCK_MIN_S,
    WINDOW,
    new_state,
    score_value,
    state_fields,
)

T0_NS = 1_764_720_000 * 1_000_000_000
S = 1_000_000_000


def run(values, metric=Metric.PRESSURE_MPA, interval_s=60, state=None, start=0):
    """Score ``values`` one after another; returns (state, [Scored])."""
    state = state or new_state()
    results = []
    for i, value in enumerate(values, start=start):
        state, scored = score_value(
            state, metric, float(value), T0_NS + i * interval_s * S
        )
        results.append(scored)
    return state, results


def oracle_z_score(history, value):
    """What the robust_z score should be, from numpy on the causal window.

    Written from the method (median, MAD scaled by 1.4826, a floor on the
    spread, z mapped linearly from 4 -> 0 to 12 -> 1), not from the code. The
    window keeps its values to 7 significant digits (to bound the state).
    """
    window = np.asarray([float(f"{v:.7g}") for v in history[-WINDOW:]])
    median = np.median(window)
    mad = np.median(np.abs(window - median))
    sigma = max(1.4826 * mad, 1e-3 * abs(median), 1e-6)
    z = abs(value - median) / sigma
    return float(np.clip((z - 4.0) / 8.0, 0.0, 1.0)), float(median)


def noisy(n, seed=7, level=20.0, spread=0.5):
    return np.random.default_rng(seed).normal(level, spread, n)


def robust(scored):
    return [f for f in scored.findings if f.detector == "robust_z"]


# robust_z ------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_robust_z_matches_the_numpy_oracle_at_every_step(seed):
    rng = np.random.default_rng(seed)
    # Heavy tails, so that some readings score and most do not.
    values = 50.0 + rng.standard_t(2, 250)
    _, results = run(values)
    scored_any = False
    for i, (value, scored) in enumerate(zip(values, results, strict=True)):
        if i < LEARNING_READINGS:
            continue
        expected, median = oracle_z_score(list(values[:i]), value)
        found = robust(scored)
        if expected == 0.0:
            assert found == []
        else:
            scored_any = True
            assert len(found) == 1
            assert found[0].score == pytest.approx(expected, rel=1e-12)
            assert found[0].expected == pytest.approx(median, rel=1e-12)
            assert found[0].observed == value
    assert scored_any, "the series should contain outliers for this test to bite"


def test_window_is_bounded_and_holds_the_latest_values():
    values = np.arange(300, dtype=float)
    state, _ = run(values)
    fields = state_fields(state)
    assert fields["window"] == [float(f"{v:.7g}") for v in values[-WINDOW:]]
    assert fields["n"] == 300


def test_spike_is_flagged_at_its_index_and_nothing_before():
    values = noisy(80)
    spike_at = 60
    values[spike_at] = 35.0  # about 30 robust standard deviations above
    _, results = run(values)
    assert all(not r.findings for r in results[:spike_at])
    assert all(r.score == 0.0 for r in results[:spike_at])
    found = robust(results[spike_at])
    assert len(found) == 1
    assert found[0].score == 1.0
    assert found[0].low < 20.0 < found[0].high < 35.0
    assert "above" in found[0].detail


def test_drop_is_flagged_below():
    values = noisy(50)
    values[45] = 5.0
    _, results = run(values)
    found = robust(results[45])
    assert found
    assert "below" in found[0].detail


def test_learning_period_scores_zero_whatever_the_values():
    wild = [1.0, 1e6, -1e6, 0.0] * 10
    _, results = run(wild)
    for i, scored in enumerate(results):
        if i < LEARNING_READINGS:
            assert scored.learning
            assert scored.score == 0.0
            assert scored.findings == []
        else:
            assert not scored.learning
    # After learning, the same wild series is reported (the combined score
    # needs a few more readings to know what is usual for the series).
    assert any(r.findings for r in results[LEARNING_READINGS:])


# stuck ---------------------------------------------------------------------


def stuck_findings(results):
    return [
        i
        for i, r in enumerate(results)
        if any(f.detector == "stuck" for f in r.findings)
    ]


def learned_then_flat(flat_value, flat_n, interval_s, metric=Metric.PRESSURE_MPA):
    varied = list(noisy(LEARNING_READINGS, spread=0.2, level=flat_value or 1.0))
    _, results = run(
        varied + [flat_value] * flat_n, metric=metric, interval_s=interval_s
    )
    return stuck_findings(results), len(varied)


def test_stuck_needs_the_configured_duration():
    # One reading a minute: 12 readings span 11 min; the run must span 30 min.
    flagged, first = learned_then_flat(20.0, 40, interval_s=60)
    readings_needed = int(STUCK_MIN_S // 60) + 1
    assert readings_needed > STUCK_MIN_READINGS
    assert flagged[0] == first + readings_needed - 1
    assert flagged == list(range(flagged[0], first + 40))


def test_stuck_needs_the_configured_number_of_readings():
    # One reading every 10 min: the duration is met after 4 readings, but 12
    # readings are needed.
    flagged, first = learned_then_flat(20.0, 20, interval_s=600)
    assert (STUCK_MIN_READINGS - 1) * 600 >= STUCK_MIN_S
    assert flagged[0] == first + STUCK_MIN_READINGS - 1


def test_a_changing_value_restarts_the_run():
    varied = list(noisy(LEARNING_READINGS, spread=0.2))
    flat = [20.0] * 20 + [20.1] + [20.0] * 20
    _, results = run(varied + flat, interval_s=600)
    flagged = stuck_findings(results)
    restart = LEARNING_READINGS + 21
    assert flagged[0] == LEARNING_READINGS + STUCK_MIN_READINGS - 1
    assert LEARNING_READINGS + 20 not in flagged  # the changed value
    assert next(i for i in flagged if i > LEARNING_READINGS + 20) == (
        restart + STUCK_MIN_READINGS - 1
    )


@pytest.mark.parametrize(
    "metric", [Metric.POWER_KW, Metric.COMBUSTIBLE_GAS_LEL, Metric.TOXIC_GAS_PPM]
)
def test_a_flat_zero_where_zero_is_normal_is_not_stuck(metric):
    flagged, _ = learned_then_flat(0.0, 40, interval_s=600, metric=metric)
    assert flagged == []


@pytest.mark.parametrize("metric", [Metric.PRESSURE_MPA, Metric.TEMPERATURE_C])
def test_a_flat_zero_elsewhere_is_stuck(metric):
    flagged, first = learned_then_flat(0.0, 20, interval_s=600, metric=metric)
    assert flagged[0] == first + STUCK_MIN_READINGS - 1


@pytest.mark.parametrize(
    "metric", [Metric.POWER_KW, Metric.COMBUSTIBLE_GAS_LEL, Metric.TOXIC_GAS_PPM]
)
def test_a_flat_non_zero_value_is_stuck_even_where_zero_is_normal(metric):
    flagged, first = learned_then_flat(3.0, 20, interval_s=600, metric=metric)
    assert flagged[0] == first + STUCK_MIN_READINGS - 1


def test_stuck_is_not_reported_while_learning():
    _, results = run([5.0] * LEARNING_READINGS, interval_s=600)
    assert stuck_findings(results) == []


# State ---------------------------------------------------------------------

values_strategy = st.lists(
    st.floats(-1e6, 1e6, allow_nan=False) | st.sampled_from([0.0, 1.0, 20.0]),
    min_size=1,
    max_size=120,
)


@given(values=values_strategy, data=st.data())
@settings(max_examples=60)
def test_scoring_with_the_state_serialised_at_any_split_is_the_same(values, data):
    split = data.draw(st.integers(0, len(values)))
    state_once, results_once = run(values)

    state, first = run(values[:split])
    restored = table_codec.loads(table_codec.dumps(state))
    assert restored == state
    state_split, second = run(values[split:], state=restored, start=split)

    assert state_split == state_once
    assert [r.score for r in first + second] == [r.score for r in results_once]
    assert [r.findings for r in first + second] == [r.findings for r in results_once]


@given(values=values_strategy)
@settings(max_examples=60)
def test_scores_are_in_the_unit_interval_and_the_input_state_is_kept(values):
    state = new_state()
    for i, value in enumerate(values):
        before = table_codec.dumps(state)
        new, scored = score_value(state, Metric.LEVEL_PCT, value, T0_NS + i * 60 * S)
        assert table_codec.dumps(state) == before  # the input state is not changed
        state = new
        assert 0.0 <= scored.score <= 1.0
        assert all(0.0 <= f.score <= 1.0 for f in scored.findings)
        if scored.learning:
            assert scored.score == 0.0
