"""Meter registers to consumption: increases, resets, rollovers, jitter.

The property tests simulate a register of ``digits`` digits: they draw the
true consumption of every interval and the events (reset, rollover), derive
the readings from them, and check that the increases add up to what was
drawn.
"""

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_jobs.counters import (
    JITTER_SHARE,
    ROLLOVER_FROM_SHARE,
    ROLLOVER_SHARE,
    counter_increase,
    rate_per_hour,
)


@pytest.mark.parametrize(
    ("previous", "current", "increase"),
    [
        (100.0, 104.5, 4.5),
        (0.0, 7.25, 7.25),
        (5234.0, 5234.0, 0.0),
        (1e9, 1e9 + 1, 1.0),
    ],
)
def test_normal_increase(previous, current, increase):
    assert counter_increase(previous, current) == (pytest.approx(increase), "")


@pytest.mark.parametrize("digits", [1, 2, 3, 5, 6, 8, 9])
def test_rollover_at_a_power_of_ten(digits):
    span = 10.0**digits
    previous = span * 0.97
    current = span * 0.02
    increase, event = counter_increase(previous, current)
    assert event == "rollover"
    assert increase == pytest.approx(span * 0.05)


@pytest.mark.parametrize("digits", [2, 4, 7])
def test_rollover_from_just_below_the_span(digits):
    span = 10**digits
    increase, event = counter_increase(span - 1, 2)
    assert (increase, event) == (pytest.approx(3), "rollover")


def test_rollover_limits_are_inclusive():
    # Exactly 90 % of the span before and 10 % after is still a rollover.
    span = 1000.0
    previous, current = ROLLOVER_FROM_SHARE * span, ROLLOVER_SHARE * span
    assert counter_increase(previous, current) == (
        pytest.approx(span - previous + current),
        "rollover",
    )
    # Just past either limit it is a reset.
    assert counter_increase(previous - 1, current)[1] == "reset"
    assert counter_increase(previous, current + 1)[1] == "reset"


def test_previous_at_an_exact_power_of_ten_rolls_over_the_next_span():
    # 1000 has four digits: it rolls over at 10 000, not at 1000.
    assert counter_increase(1000.0, 3.0) == (3.0, "reset")
    assert counter_increase(9500.0, 3.0) == (pytest.approx(503.0), "rollover")


@pytest.mark.parametrize(
    ("previous", "current"),
    [
        (5234.0, 2.0),  # mid-span: a replaced meter
        (5234.0, 0.0),
        (50_000.0, 40_000.0),  # far from zero after: not a rollover
        (950.0, 150.0),  # near the top, but too far from zero after
    ],
)
def test_reset_counts_from_zero(previous, current):
    assert counter_increase(previous, current) == (current, "reset")


def test_reset_to_a_negative_register_is_zero():
    assert counter_increase(100.0, -5.0) == (0.0, "reset")


@pytest.mark.parametrize("previous", [1.0, 250.0, 12_345.678, 9.7e6])
def test_jitter_is_no_consumption(previous):
    slightly_less = previous * (1 - JITTER_SHARE / 2)
    assert counter_increase(previous, slightly_less) == (0.0, "jitter")
    # A bigger drop is no longer jitter.
    assert counter_increase(previous, previous * (1 - 3 * JITTER_SHARE))[1] != "jitter"


@pytest.mark.parametrize(
    ("increase", "dt_s", "per_hour"),
    [
        (1.5, 900, 6.0),
        (10.0, 3600, 10.0),
        (0.0, 60, 0.0),
        (2.0, 7200, 1.0),
    ],
)
def test_rate_per_hour(increase, dt_s, per_hour):
    assert rate_per_hour(increase, dt_s * 1_000_000_000) == pytest.approx(per_hour)


@pytest.mark.parametrize("dt_ns", [0, -1, -60_000_000_000])
def test_rate_needs_time_to_advance(dt_ns):
    assert rate_per_hour(1.0, dt_ns) is None


finite = st.floats(-1e12, 1e12, allow_nan=False)


@given(previous=finite, current=finite)
def test_never_negative(previous, current):
    increase, event = counter_increase(previous, current)
    assert increase >= 0.0
    assert event in ("", "reset", "rollover", "jitter")


def _top_of_inferred_span(value: float) -> bool:
    """Whether ``value`` lies in the top 10 % of the power of ten above it.

    A register reset from there to near zero looks exactly like a rollover of
    a register with that many digits; counter_increase cannot tell them apart,
    so the simulation below only resets from elsewhere.
    """
    span = 10.0 ** math.ceil(math.log10(value))
    if span <= value:
        span *= 10
    return value >= ROLLOVER_FROM_SHARE * span


@st.composite
def register_history(draw):
    """(readings, true consumption) of a register with injected events."""
    digits = draw(st.integers(2, 9))
    span = 10.0**digits
    # Each interval consumes at most 5 % of the span: a wrap then always goes
    # from above 95 % to below 5 %, which is what a rollover is.
    step = st.floats(0.0, 0.05 * span, allow_nan=False)
    register = draw(st.floats(0.0, span * 0.999))
    readings, true_total = [register], 0.0
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["use", "use", "use", "reset"]))
        if kind == "reset" and register > 0 and not _top_of_inferred_span(register):
            # The register restarts at zero and counts what was used since.
            used = draw(st.floats(0.0, register * 0.5))
            register = used
        else:
            used = draw(step)
            register = register + used
            if register >= span:
                register -= span
        true_total += used
        readings.append(register)
    return readings, true_total, span


@given(history=register_history())
def test_increases_add_up_to_the_true_consumption(history):
    readings, true_total, span = history
    total = 0.0
    for previous, current in itertools.pairwise(readings):
        increase, _ = counter_increase(previous, current)
        assert increase >= 0.0
        total += increase
    assert total == pytest.approx(true_total, rel=1e-9, abs=1e-9 * span)


@given(
    start=st.floats(1.0, 1e6),
    uses=st.lists(st.floats(0.0, 100.0), min_size=1, max_size=30),
    noise=st.lists(st.floats(0.0, JITTER_SHARE * 0.9), min_size=31, max_size=31),
)
def test_jitter_never_adds_more_than_the_noise(start, uses, noise):
    # Readings are the true register minus a small read error.
    true_registers = [start]
    for used in uses:
        true_registers.append(true_registers[-1] + used)
    readings = [r * (1 - e) for r, e in zip(true_registers, noise, strict=False)]
    total = sum(counter_increase(p, c)[0] for p, c in itertools.pairwise(readings))
    true_total = true_registers[-1] - true_registers[0]
    worst_error = sum(r * e for r, e in zip(true_registers, noise, strict=False))
    assert total >= 0.0
    assert abs(total - true_total) <= worst_error + 1e-9 * true_registers[-1]
