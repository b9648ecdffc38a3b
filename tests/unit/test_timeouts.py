import pytest

from riskwatch.timeouts import Deadline, wait_until


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_deadline_counts_down_on_the_given_clock():
    clock = FakeClock()
    d = Deadline(5.0, clock=clock)
    assert d.remaining() == 5.0
    clock.now += 3.0
    assert d.remaining() == 2.0
    assert not d.expired()
    clock.now += 2.0
    assert d.expired()
    assert d.remaining() == 0.0


def test_negative_deadline_is_refused():
    with pytest.raises(ValueError, match="seconds must be >= 0, got -1"):
        Deadline(-1)


def test_wait_until_returns_as_soon_as_the_check_passes():
    clock = FakeClock()
    answers = iter([False, False, True])
    assert wait_until(
        lambda: next(answers),
        Deadline(10, clock=clock),
        interval=1.0,
        sleep=clock.sleep,
    )
    assert clock.sleeps == [1.0, 1.0]


def test_wait_until_gives_up_at_the_deadline_without_oversleeping():
    clock = FakeClock()
    calls = []
    ok = wait_until(
        lambda: calls.append(1) or False,
        Deadline(2.5, clock=clock),
        interval=1.0,
        sleep=clock.sleep,
    )
    assert not ok
    assert clock.sleeps == [1.0, 1.0, 0.5]
    assert len(calls) == 4
