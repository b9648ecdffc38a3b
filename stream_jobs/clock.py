"""A device's clock against the gateway's: the offset behind ``clock_skew_above``.

Every reading carries two times: the device's timestamp (``ts_ns``) and when
it reached the gateway (``received_ns``, the gateway's clock, which is kept
right by NTP on the server). Their difference is the message's delay plus the
device clock's error. One delayed message says nothing about the clock, and
neither does a backlog: a device sending an hour of stored readings in a few
seconds has every reading an hour "behind" with a perfectly good clock.

So the offset is judged over the device's last ``window`` readings, in
timestamp order, and only when they agree: the device's time and the
gateway's advanced alike over them (the spread of ``received - ts`` is at
most a quarter of the device time they span). A backlog advances device
time far faster than arrival time and gives no measurement; a single
delayed message widens the spread and gives none either. The offset is the
device's time minus the gateway's with the smallest delay of the window
(delays only ever add): negative when the device clock is behind.

State: ``{"window": [[ts_ns, received_ns], ...], "metric": <name>}``, at most
``window`` pairs; ``metric`` is the one metric whose observations carry the
measurement, so a device gets one clock warning, not one per metric.
"""

from __future__ import annotations

from typing import Any

from riskwatch.contracts import NS_PER_S

CLOCK_KEY = "clock"
"""The device-state key of the clock measurement."""

# How much of the device time a window spans its offsets may spread over and
# still count as one clock: network jitter is a few seconds, a backlog's
# spread is nearly all of the span.
AGREEMENT = 0.25


def measure(
    clock: dict[str, Any] | None, ts_ns: int, received_ns: int, window: int
) -> tuple[dict[str, Any], float | None]:
    """Add one applied reading to the device's clock window.

    Args:
        clock: the device's clock state (not modified), None for none yet.
        ts_ns: the reading's device time.
        received_ns: when it reached the gateway.
        window: how many consecutive readings must agree.

    Returns:
        The new state and the device clock's offset in seconds (device minus
        gateway), or None while the window is not full or does not agree.

    >>> state, offset = None, None
    >>> for i in range(5):  # a clock 10 minutes behind, a reading a minute
    ...     ts = (1_800_000_000 + 60 * i) * NS_PER_S
    ...     state, offset = measure(state, ts, ts + 600 * NS_PER_S, 5)
    >>> offset
    -600.0
    """
    pairs = [*(clock or {}).get("window", []), [ts_ns, received_ns]][-window:]
    new = {**(clock or {}), "window": pairs}
    if len(pairs) < window:
        return new, None
    span = pairs[-1][0] - pairs[0][0]
    delays = [received - ts for ts, received in pairs]
    if span <= 0 or max(delays) - min(delays) > AGREEMENT * span:
        return new, None
    return new, -min(delays) / NS_PER_S
