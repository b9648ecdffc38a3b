"""One way to own a timeout: a deadline on the monotonic clock.

The clock is injectable so that code waiting on a deadline is tested without
sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]


@dataclass
class Deadline:
    """A point in time ``seconds`` after creation, on a monotonic clock.

    >>> now = iter([0.0, 0.5, 2.0]).__next__
    >>> d = Deadline(1.0, clock=now)
    >>> d.expired(), d.expired()
    (False, True)
    """

    seconds: float
    clock: Clock = time.monotonic
    _end: float = field(init=False)

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {self.seconds}")
        self._end = self.clock() + self.seconds

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self._end - self.clock())

    def expired(self) -> bool:
        return self.clock() >= self._end


def wait_until(
    check: Callable[[], bool],
    deadline: Deadline,
    *,
    interval: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Call ``check`` until it returns True or the deadline passes.

    Returns:
        True when ``check`` succeeded, False when the deadline passed first.
        ``check`` is always called at least once.
    """
    while True:
        if check():
            return True
        if deadline.expired():
            return False
        sleep(min(interval, deadline.remaining()))
