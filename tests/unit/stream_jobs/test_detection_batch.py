"""Scoring many series at once (numpy across the series) is scoring each
alone: the same scores, findings and states, whatever the batches."""

import base64
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from riskwatch.contracts import Metric
from stream_jobs import state_codec as table_codec
from stream_jobs.detection import engine, state
from stream_jobs.detectors import (
    STATE_VERSION,
    last_ts,
    new_state,
    score_batch,
    score_series,
    score_value,
    state_fields,
)

T0_NS = 1_764_720_000 * 1_000_000_000
S = 1_000_000_000
FIXTURE = Path(__file__).with_name("data") / "detector_state_v4.json"
# States the version 5 engine stored after series_v4_read's readings, with
# its state_fields() of them.
FIXTURE_V5 = Path(__file__).with_name("data") / "detector_state_v5.json"
# Stored by version 6 from series_v4_read's readings, off shift before 07:00
# and from 19:00 (UTC).
FIXTURE_V6 = Path(__file__).with_name("data") / "detector_state_v6.json"


def mixed_series(seed, n):
    """A series of one of several shapes: a daily cycle with noise, coarse
    resolution, idle zeros, heavy tails; then flat spells, shifts, spikes,
    corrupted readings far beyond the series (1.7e308), gaps, a few missing
    values and, for counters, a meter running backwards. Off shift: never,
    nights and weekends, or at random."""
    rng = np.random.default_rng(seed)
    metric = list(Metric)[rng.integers(0, len(Metric))]
    interval = int(rng.choice([60, 900, 3_600]))
    steps = np.where(rng.random(n) < 0.03, interval * rng.integers(2, 30, n), interval)
    t = np.cumsum(steps)
    base = rng.normal(0, 10) * 10.0 ** rng.integers(-3, 4)
    amp = abs(base) * rng.random() + rng.random()
    values = base + amp * np.sin(2 * np.pi * t / 86_400) + rng.normal(0, amp / 10, n)
    shape = rng.integers(0, 4)
    if shape == 1:
        values = np.round(values, 1)
    elif shape == 2:
        values = np.where(rng.random(n) < 0.3, 0.0, np.abs(values))
    elif shape == 3:
        values = base + amp * rng.standard_t(2, n)
    for _ in range(rng.integers(0, 4)):
        first = rng.integers(0, n)
        last = min(n, first + rng.integers(5, 40))
        kind = rng.integers(0, 5)
        if kind == 0:
            values[first:last] = values[first]
        elif kind == 1:
            values[first:last] += amp * rng.normal(0, 5)
        elif kind == 2:
            values[first:last] = 0.0
        elif kind == 3:
            values[first] += 50 * amp
        else:
            values[first] = 1.7e308
    values[rng.integers(0, n, rng.integers(0, 3))] = math.nan
    values[rng.integers(0, n, rng.integers(0, 2))] = -abs(amp)
    hour = (t % 86_400) / 3_600
    schedule = rng.integers(0, 3)
    off = np.zeros(n, dtype=bool)
    if schedule == 1:
        off = (hour < 7) | (hour >= 19) | ((t // 86_400) % 7 >= 5)
    elif schedule == 2:
        off = rng.random(n) < 0.5
    return metric, values.tolist(), (T0_NS + t * S).tolist(), off.tolist()


def one_at_a_time(metric, values, times, off):
    series = new_state()
    results = []
    for value, ts, rest in zip(values, times, off, strict=True):
        series, scored = score_value(series, metric, value, ts, rest)
        results.append(scored)
    return series, results


@given(
    seeds=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=30),
    length=st.integers(1, 160),
    cuts=st.lists(st.integers(0, 5_000), max_size=12),
    order_seed=st.integers(0, 2**16),
)
@example(seeds=list(range(24)), length=160, cuts=[], order_seed=0)
@settings(max_examples=25, deadline=None)
def test_scoring_in_batches_equals_scoring_one_reading_at_a_time(
    seeds, length, cuts, order_seed
):
    series = {i: mixed_series(seed, length) for i, seed in enumerate(seeds)}
    # The fleet's readings interleaved in a random order that keeps each
    # series' own order, then cut into batches anywhere: a batch may hold
    # several readings of a series (scored in waves) or none.
    rng = np.random.default_rng(order_seed)
    owners = rng.permutation(np.repeat(list(series), length)).tolist()
    position = dict.fromkeys(series, 0)
    readings = []
    off_shift = []
    for key in owners:
        metric, values, times, off = series[key]
        i = position[key]
        position[key] += 1
        readings.append((key, metric, values[i], times[i]))
        off_shift.append(off[i])
    bounds = sorted({0, len(readings), *(c % (len(readings) + 1) for c in cuts)})
    states: dict[int, dict] = {}
    batched: dict[int, list] = {key: [] for key in series}
    for first, last in itertools.pairwise(bounds):
        part = readings[first:last]
        for (key, *_), (_, scored) in zip(
            part, score_series(states, part, off_shift[first:last]), strict=True
        ):
            batched[key].append(scored)
            assert 0.0 <= scored.score <= 1.0
            assert all(0.0 <= f.score <= 1.0 for f in scored.findings)
    for key, (metric, values, times, off) in series.items():
        alone, results = one_at_a_time(metric, values, times, off)
        assert batched[key] == results
        assert states[key] == alone
        assert table_codec.loads(table_codec.dumps(states[key])) == states[key]


def test_a_wave_large_enough_for_numpy_gives_each_series_its_own_result():
    fleet = [mixed_series(seed, 200) for seed in range(engine.NUMPY_FROM + 8)]
    states = [new_state() for _ in fleet]
    for i in range(200):
        metrics = [metric for metric, *_ in fleet]
        states, _ = score_batch(
            states,
            metrics,
            [values[i] for _, values, _, _ in fleet],
            [times[i] for _, _, times, _ in fleet],
            [off[i] for *_, off in fleet],
        )
    for (metric, values, times, off), batched in zip(fleet, states, strict=True):
        alone, _ = one_at_a_time(metric, values, times, off)
        assert batched == alone


def test_a_missing_value_in_a_wave_leaves_its_series_alone():
    fleet = [mixed_series(seed, 100) for seed in range(engine.NUMPY_FROM + 2)]
    states = []
    for metric, values, times, off in fleet:
        finite = [v if math.isfinite(v) else 0.0 for v in values]
        states.append(one_at_a_time(metric, finite, times, off)[0])
    values = [1.0] * len(fleet)
    values[3] = math.nan
    new, scored = score_batch(
        states,
        [metric for metric, *_ in fleet],
        values,
        [times[-1] + 60 * S for _, _, times, _ in fleet],
    )
    assert new[3] == states[3]
    assert [f.detector for f in scored[3].findings] == ["missing"]
    assert scored[3].score == 0.0
    assert all(last_ts(new[i]) == fleet[i][2][-1] + 60 * S for i in (0, 4))


def test_a_batch_of_mismatched_lengths_is_refused():
    with pytest.raises(ValueError, match="differ in length"):
        score_batch([new_state()], [Metric.TEMPERATURE_C], [1.0, 2.0], [T0_NS])
    assert score_batch([], [], [], []) == ([], [])


finite_floats = st.floats(allow_nan=False, allow_infinity=False)


@given(values=st.lists(finite_floats | st.sampled_from([math.nan, math.inf])))
@example(values=[0.5, 1.5, 2.5, 1234567.5, 9999999.5, 0.99999995, 1e-300, 5e-324])
@example(values=[1e22, 1e23, -1e-22, 123456.75, 0.0, -0.0, 1.7976931348623157e308])
def test_rounding_matches_the_string_rounding(values):
    expected = [float(f"{v:.7g}") for v in values]
    got = engine._q_array(np.array(values, dtype=np.float64)).tolist()
    assert [repr(v) for v in got] == [repr(v) for v in expected]


def test_rounding_is_exact_next_to_halves_and_powers_of_ten():
    rng = np.random.default_rng(3)
    digits = rng.integers(1_000_000, 10_000_000, 20_000)
    scale = 10.0 ** rng.integers(-15, 15, 20_000)
    halves = (digits + 0.5) * scale
    near = np.concatenate(
        [
            halves,
            np.nextafter(halves, np.inf),
            np.nextafter(halves, -np.inf),
            10.0 ** np.arange(-20, 21),
            np.nextafter(10.0 ** np.arange(-20, 21), 0),
        ]
    )
    expected = [float(f"{v:.7g}") for v in near.tolist()]
    assert engine._q_array(near).tolist() == expected


def series_v4_read(name):
    """The fixture's series, regenerated: the readings the version 4 engine
    had learned when it stored the state in the fixture."""
    if name == "temperature_c":
        rng = np.random.default_rng(5)
        n, interval = 700, 300
        t = np.arange(n) * interval
        values = 50 + 10 * np.sin(2 * np.pi * t / 86_400) + rng.normal(0, 1, n)
        values[n // 2 :] += 15
        values[rng.integers(0, n, 10)] += 60
        values[n // 3 : n // 3 + 30] = 42.0
    else:
        rng = np.random.default_rng(8)
        n, interval = 900, 900
        t = np.arange(n) * interval
        hour = (t % 86_400) / 3_600
        values = np.round(
            np.where((hour > 6) & (hour < 22), rng.gamma(2.0, 0.4, n), 0.0), 3
        )
    return values.tolist(), (T0_NS + t * S).tolist()


@pytest.mark.parametrize("name", ["temperature_c", "water_m3"])
def test_a_state_stored_by_version_4_is_converted_and_continues(name):
    # What the worker's table held under version 4 (JSON, every statistic
    # by name): converted on the next reading, it keeps every statistic and
    # scores and learns as its converted form does. (It is converted, not
    # recomputed: since version 4 a stuck reading no longer teaches the
    # spreads, so on these readings, which hold a stuck stretch each, this
    # version learns other spreads.)
    stored = json.loads(FIXTURE.read_text())[name]
    assert stored["v"] == 4
    metric = Metric(name)
    converted = state.pack_legacy(stored)
    kept = state_fields(converted)
    for key, value in stored.items():
        if key != "v":
            assert kept[key] == value, key
    values, times = series_v4_read(name)
    ts = times[-1] + 900 * S
    for value in (values[-1], 0.0, 3.0 * abs(values[-1]) + 1.0):
        from_v4, scored_v4 = score_value(stored, metric, value, ts)
        from_converted, scored_converted = score_value(converted, metric, value, ts)
        assert from_v4 == from_converted
        assert scored_v4 == scored_converted
    assert state.is_current(from_v4)
    assert from_v4["v"] == STATE_VERSION


def converted(fixture, version, upgrade, name):
    # A stored record of the fixture, its converted form and the converted
    # statistics, every one the fixture lists kept.
    entry = json.loads(fixture.read_text())[name]
    stored = {"v": version, "last_ts": entry["last_ts"]}
    stored["x"] = base64.b64decode(entry["x"])
    upgraded = upgrade(stored)
    assert state.is_current(upgraded)
    assert len(upgraded["x"]) == state.RECORD_BYTES
    kept = state_fields(upgraded)
    for key, value in entry["fields"].items():
        if key != "v":
            assert kept[key] == value, key
    return stored, upgraded, kept


def assert_scored_as_stored(stored, upgraded, name):
    # Scoring from a stored state is scoring from its converted form, on
    # shift and off, for an ordinary value, a zero and a jump.
    metric = Metric(name)
    values, times = series_v4_read(name)
    ts = times[-1] + 900 * S
    for value in (values[-1], 0.0, 3.0 * abs(values[-1]) + 1.0):
        for off in (False, True):
            from_stored, scored_stored = score_value(stored, metric, value, ts, off)
            from_upgraded, scored_upgraded = score_value(
                upgraded, metric, value, ts, off
            )
            assert from_stored == from_upgraded
            assert scored_stored == scored_upgraded
            assert from_stored["v"] == STATE_VERSION


@pytest.mark.parametrize("name", ["temperature_c", "water_m3"])
def test_a_state_stored_by_version_5_is_converted_and_continues(name):
    # Version 5's record had no level under the profile and one daily
    # profile: converted, every statistic stays, the level under the profile
    # starts at the level, the on-shift profile is version 5's and the
    # off-shift one is empty; scoring from it is scoring from the stored state.
    stored, upgraded, kept = converted(FIXTURE_V5, 5, state.upgrade, name)
    assert kept["ls"] == kept["lv"]
    assert kept["hod_off"] == [0.0] * state.DAY_BINS
    assert kept["had_off"] == [0.0] * state.DAY_BINS
    assert kept["hn_off"] == [0] * state.DAY_BINS
    assert_scored_as_stored(stored, upgraded, name)


@pytest.mark.parametrize("name", ["temperature_c", "water_m3"])
def test_a_state_stored_by_version_6_is_converted_and_continues(name):
    # Version 6's record had no usual step per knot: converted, every
    # statistic stays and no knot has a usual step yet; scoring from it is
    # scoring from the stored state.
    stored, upgraded, kept = converted(FIXTURE_V6, 6, state.upgrade_v6, name)
    assert kept["hds"] == kept["hds_off"] == [0.0] * state.DAY_BINS
    assert_scored_as_stored(stored, upgraded, name)
    # An ordinary reading teaches its nearest knot a usual step.
    values, times = series_v4_read(name)
    ordinary, _ = score_value(stored, Metric(name), values[-1], times[-1] + 900 * S)
    assert sum(v > 0 for v in state_fields(ordinary)["hds"]) == 1


def test_a_record_of_the_wrong_length_is_no_version_6_state():
    with pytest.raises(ValueError, match="version 6"):
        state.upgrade_v6({"v": 6, "last_ts": None, "x": bytes(16)})


def test_a_record_of_the_wrong_length_is_no_version_5_state():
    with pytest.raises(ValueError, match="version 5"):
        state.upgrade({"v": 5, "last_ts": None, "x": bytes(16)})
