"""Cumulative meter registers (energy kWh, water m³, gas m³) to consumption.

A register only goes up, except when it is reset (replaced meter, cleared
register: it restarts near zero) or rolls over (a register of d digits wraps
from 99…9 to 0). Consumption is never negative.
"""

from __future__ import annotations

import math
from typing import Literal

CounterEvent = Literal["", "reset", "rollover", "jitter"]

# A register that reads slightly less than before is measurement jitter or a
# rounding artefact, not a reset: up to this share of the previous value.
JITTER_SHARE = 1e-3
# A rollover leaves the register close to zero: at most this share of the
# register's span.
ROLLOVER_SHARE = 0.1
# ...and happens only when the register was near the top of its span.
ROLLOVER_FROM_SHARE = 0.9


def counter_increase(previous: float, current: float) -> tuple[float, CounterEvent]:
    """Consumption between two register readings, and what happened.

    >>> counter_increase(100.0, 104.5)
    (4.5, '')
    >>> counter_increase(99998.0, 3.0)   # 5-digit register wrapped
    (5.0, 'rollover')
    >>> counter_increase(5234.0, 2.0)    # reset: counts from zero again
    (2.0, 'reset')
    """
    if current >= previous:
        return current - previous, ""
    if previous - current <= JITTER_SHARE * abs(previous):
        return 0.0, "jitter"
    if previous > 0 and current >= 0:
        span = 10.0 ** math.ceil(math.log10(previous + 1e-12))
        if span <= previous:  # previous is an exact power of ten
            span *= 10
        if previous >= ROLLOVER_FROM_SHARE * span and current <= ROLLOVER_SHARE * span:
            return span - previous + current, "rollover"
    return max(current, 0.0), "reset"


def rate_per_hour(increase: float, dt_ns: int) -> float | None:
    """Consumption per hour over ``dt_ns``; None when time did not advance."""
    if dt_ns <= 0:
        return None
    return increase * 3600e9 / dt_ns
