"""The watch on the readings partitions: a committed offset that stays put
while records wait past it is reported once, and its recovery is logged."""

import asyncio
import logging
from collections import defaultdict

import pytest
from faust.types import TP

from riskwatch.topics import READINGS
from stream_jobs.app import readings_offsets
from stream_jobs.progress import Offsets, ProgressWatch
from tests.unit.conftest import fake_worker


def test_a_partition_stalled_for_the_limit_is_reported_once(caplog):
    watch = ProgressWatch(after_s=120)
    held = {2: Offsets(committed=58, end=83), 5: Offsets(committed=0, end=0)}
    with caplog.at_level(logging.INFO, logger="stream_jobs.progress"):
        found = [
            [s.partition for s in watch.check(held, now_s=t)]
            for t in (0.0, 60.0, 119.0, 120.0, 150.0, 300.0)
        ]
    assert found == [[], [], [], [2], [], []]
    (line,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert line.getMessage().startswith(
        "readings partition not progressing partition=2 committed=58 end=83 "
        "behind=25 stalled_s=120"
    )


def test_progress_restarts_the_count_and_logs_the_recovery(caplog):
    watch = ProgressWatch(after_s=100)
    watch.check({1: Offsets(10, 35)}, now_s=0.0)
    assert watch.check({1: Offsets(10, 35)}, now_s=100.0)
    with caplog.at_level(logging.INFO, logger="stream_jobs.progress"):
        # It moves (still behind): counted afresh from then.
        assert watch.check({1: Offsets(20, 40)}, now_s=110.0) == []
    assert "progressing again partition=1 committed=20 end=40" in caplog.text
    assert watch.check({1: Offsets(20, 40)}, now_s=200.0) == []
    assert [s.stalled_s for s in watch.check({1: Offsets(20, 40)}, now_s=210.0)] == [
        100.0
    ]


@pytest.mark.parametrize(
    "offsets",
    [
        Offsets(committed=83, end=83),  # caught up: nothing waits
        Offsets(committed=None, end=83),  # no committed offset known
        Offsets(committed=58, end=None),  # end not fetched yet
    ],
)
def test_a_partition_with_nothing_known_to_wait_is_never_reported(offsets):
    watch = ProgressWatch(after_s=10)
    assert [watch.check({0: offsets}, now_s=t) for t in (0.0, 50.0, 500.0)] == [
        [],
        [],
        [],
    ]


def test_a_lag_counts_from_when_it_began_not_from_the_last_commit():
    watch = ProgressWatch(after_s=60)
    watch.check({3: Offsets(40, 40)}, now_s=0.0)  # caught up for an hour
    watch.check({3: Offsets(40, 40)}, now_s=3600.0)
    assert watch.check({3: Offsets(40, 45)}, now_s=3630.0) == []
    assert [s.partition for s in watch.check({3: Offsets(40, 45)}, 3660.0)] == [3]


def test_a_partition_handed_to_another_worker_is_forgotten():
    watch = ProgressWatch(after_s=60)
    watch.check({4: Offsets(10, 20)}, now_s=0.0)
    watch.check({}, now_s=30.0)  # revoked
    # Assigned back later: counted from then, not from the first sighting.
    assert watch.check({4: Offsets(10, 20)}, now_s=70.0) == []
    assert watch.check({4: Offsets(10, 20)}, now_s=130.0) != []


def test_the_limit_must_be_positive():
    with pytest.raises(ValueError, match="after_s must be > 0, got 0"):
        ProgressWatch(after_s=0)


class FakeConsumer:
    """faust's consumer as readings_offsets reads it."""

    def __init__(self, committed, ends):
        self._committed_offset = defaultdict(lambda: None, committed)
        self.ends = ends

    def assignment(self):
        return set(self.ends)

    def highwater(self, tp):
        return self.ends[tp]


def test_the_worker_reads_the_offsets_of_its_readings_partitions_only():
    readings, other = TP(READINGS, 2), TP("riskwatch.warnings.v1", 2)
    consumer = FakeConsumer(
        committed={readings: 58, other: 4},
        ends={readings: 83, TP(READINGS, 5): None, other: 9},
    )
    assert readings_offsets(consumer) == {
        2: Offsets(committed=58, end=83),
        5: Offsets(committed=None, end=None),
    }


def test_the_stats_timer_runs_before_the_consumer_has_started(tmp_path, caplog):
    worker = fake_worker(tmp_path)
    with caplog.at_level(logging.INFO, logger="stream_jobs.app"):
        asyncio.run(worker._stats())
    assert readings_offsets(worker.app.consumer) == {}
    assert "worker stats scored=0" in caplog.text
