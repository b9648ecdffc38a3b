"""A watch on the readings partitions this worker holds: one whose committed
offset stays put while records wait past it is reported to the operator.

Issue 5's restart defect was silent: the restarted worker logged that it was
ready, scored nothing and committed nothing, with no error, while readings
waited on its partition. Whatever keeps the scoring agent from getting on (a
faust race, an agent stuck on an await), this is how it shows: the group's
committed offset of a partition does not move although the partition's end
offset is past it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Well above faust's commit interval (2.8 s) and a batch's time, well below
# the minutes an operator would otherwise wait to notice.
STALL_AFTER_S = 120.0


@dataclass(frozen=True)
class Offsets:
    """A partition's committed offset (the next record the group reads;
    None: none known) and end offset (None: not fetched yet)."""

    committed: int | None
    end: int | None

    @property
    def behind(self) -> int:
        """Records past the committed offset; 0 when either is unknown."""
        if self.committed is None or self.end is None:
            return 0
        return max(self.end - self.committed, 0)


@dataclass(frozen=True)
class Stall:
    """A partition reported stalled, with its offsets then."""

    partition: int
    offsets: Offsets
    stalled_s: float


@dataclass
class _Seen:
    committed: int | None
    since_s: float  # when the committed offset last moved, or the lag began
    reported: bool = False


class ProgressWatch:
    """Reports a partition whose committed offset has not moved for
    ``after_s`` seconds while records wait past it; once, and again once it
    moves. Times are seconds on any monotonic clock, passed in by the caller.

    >>> watch = ProgressWatch(after_s=60)
    >>> watch.check({2: Offsets(committed=10, end=35)}, now_s=0.0)
    []
    >>> [s.partition for s in watch.check({2: Offsets(10, 35)}, now_s=60.0)]
    [2]
    >>> watch.check({2: Offsets(10, 35)}, now_s=90.0)  # reported already
    []
    """

    def __init__(self, after_s: float = STALL_AFTER_S) -> None:
        if after_s <= 0:
            raise ValueError(f"after_s must be > 0, got {after_s}")
        self.after_s = after_s
        self._seen: dict[int, _Seen] = {}

    def check(self, offsets: Mapping[int, Offsets], now_s: float) -> list[Stall]:
        """The partitions (of ``offsets``, by number) that have newly stalled;
        logs a WARNING for each, and an INFO line for one that moves again."""
        stalled = []
        for partition in self._seen.keys() - offsets.keys():
            del self._seen[partition]  # no longer held by this worker
        for partition, now in offsets.items():
            seen = self._seen.get(partition)
            if seen is None or seen.committed != now.committed or not now.behind:
                if seen is not None and seen.reported:
                    log.info(
                        "readings partition progressing again partition=%d "
                        "committed=%s end=%s",
                        partition,
                        now.committed,
                        now.end,
                    )
                self._seen[partition] = _Seen(now.committed, now_s)
                continue
            stalled_s = now_s - seen.since_s
            if seen.reported or stalled_s < self.after_s:
                continue
            seen.reported = True
            stall = Stall(partition, now, stalled_s)
            stalled.append(stall)
            log.warning(
                "readings partition not progressing partition=%d committed=%s "
                "end=%s behind=%d stalled_s=%.0f: the scoring agent takes "
                "nothing from it",
                partition,
                now.committed,
                now.end,
                now.behind,
                stalled_s,
            )
        return stalled
