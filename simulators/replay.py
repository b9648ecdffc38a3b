"""Replay a recorded CSV series as one device's metric, shifted to end now.

The series' timestamps are moved by a whole number of seconds,
``shift = floor(now - last timestamp)``, so its last point lands at about now
and no point is ever in the future; callers map other times of the file
(e.g. NAB's labelled anomaly windows) onto the clock by adding the same shift.

Values are published as given, in the unit of the chosen metric. NAB's
``machine_temperature_system_failure.csv`` holds machine temperatures that
look like degrees Fahrenheit (about 2..110); the demo publishes them as
``temperature_c`` unconverted, on purpose: the detectors see the real shape of
the series, and converting would only rescale it.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt

from riskwatch.contracts import OFFLINE, ONLINE, Metric, status_topic
from riskwatch.settings import Settings
from simulators.errors import ReplayInputError
from simulators.publisher import (
    Progress,
    Transport,
    connect_simulator,
    publish_readings,
    publish_status,
)
from simulators.readings import Reading

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Series:
    """A recorded series: strictly increasing epoch seconds and values.

    ``skipped`` counts rows dropped because their timestamp did not advance
    (a recorder whose clock jumped back); the pipeline would drop them as late
    readings too, and they would overwrite stored points of the same time.
    """

    times_s: FloatArray
    values: FloatArray
    source: str
    column: str
    skipped: int = 0


@dataclass(frozen=True)
class ReplayResult:
    """What a replay published.

    Attributes:
        published: telemetry messages published.
        shift: added to every timestamp of the file.
        first_ts: mapped time of the first point published (UTC).
        last_ts: mapped time of the last point published (UTC).
        elapsed_s: wall time taken.
    """

    published: int
    shift: timedelta
    first_ts: datetime
    last_ts: datetime
    elapsed_s: float

    def map_time(self, original: datetime) -> datetime:
        """A time of the file (naive = UTC) on the shifted clock."""
        if original.tzinfo is None:
            original = original.replace(tzinfo=UTC)
        return original + self.shift


def parse_time(text: str) -> float:
    """A CSV timestamp -> epoch seconds; naive times are UTC (NAB's form is
    ``2013-12-02 21:15:00``).

    >>> parse_time("2013-12-02 21:15:00")
    1386018900.0

    Raises:
        ValueError: not an ISO 8601 date and time.
    """
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def read_series(
    path: Path, *, column: str = "value", limit: int | None = None
) -> Series:
    """Read ``timestamp`` and ``column`` of a CSV file.

    Args:
        limit: read only the first ``limit`` data rows.

    Raises:
        ReplayInputError: the file or a column is missing, a row holds a bad
            timestamp or value (the message names the line), or there are
            no rows. Rows whose timestamp does not advance are skipped and
            counted in ``Series.skipped``.
    """
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise ReplayInputError(f"{path}: cannot open: {exc.strerror}") from None
    times: list[float] = []
    values: list[float] = []
    skipped = 0
    with handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        for needed in ("timestamp", column):
            if needed not in fields:
                raise ReplayInputError(
                    f"{path}: no column {needed!r}; columns: {', '.join(fields)}"
                )
        for row in reader:
            if limit is not None and len(times) >= limit:
                break
            line = reader.line_num
            try:
                ts = parse_time(row["timestamp"])
            except (ValueError, TypeError):
                raise ReplayInputError(
                    f"{path}:{line}: timestamp {row['timestamp']!r} is not "
                    "ISO 8601 (e.g. 2013-12-02 21:15:00)"
                ) from None
            try:
                value = float(row[column])
            except (ValueError, TypeError):
                raise ReplayInputError(
                    f"{path}:{line}: {column} {row[column]!r} is not a number"
                ) from None
            if not math.isfinite(value):
                raise ReplayInputError(f"{path}:{line}: {column} is {value}")
            if times and ts <= times[-1]:
                skipped += 1
                continue
            times.append(ts)
            values.append(value)
    if not times:
        raise ReplayInputError(f"{path}: no data rows")
    return Series(np.array(times), np.array(values), str(path), column, skipped)


def time_shift(last_ts_s: float, now_s: float) -> float:
    """Whole seconds to add so that the last point lands at or just before now.

    >>> time_shift(100.0, 1000.6)
    900.0
    """
    return float(math.floor(now_s - last_ts_s))


def replay_readings(
    series: Series, *, enterprise: str, device: str, metric: Metric, shift_s: float
) -> Iterator[Reading]:
    """The series as readings, shifted by ``shift_s``; ``seq`` = row index."""
    for i, (ts, value) in enumerate(
        zip(series.times_s.tolist(), series.values.tolist(), strict=True)
    ):
        yield Reading(ts + shift_s, enterprise, device, i, ((metric, value),))


def replay(
    series: Series,
    transport: Transport,
    *,
    enterprise: str,
    device: str,
    metric: Metric,
    topic_root: str,
    speedup: float = 0.0,
    progress: Callable[[Progress], None] | None = None,
    now: Callable[[], float] = time.time,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ReplayResult:
    """Publish a series as ``enterprise/device`` ``metric``, ending about now.

    The device is marked ``online`` (retained) first and ``offline`` after.

    Args:
        speedup: device time runs this many times faster than wall time; 0
            publishes as fast as the broker acknowledges.
        now: the UTC wall clock, epoch seconds.

    Raises:
        PublishError: from the transport.
    """
    shift = time_shift(float(series.times_s[-1]), now())
    devices = [(enterprise, device)]
    publish_status(transport, devices, ONLINE, topic_root=topic_root)
    result = publish_readings(
        replay_readings(
            series, enterprise=enterprise, device=device, metric=metric, shift_s=shift
        ),
        transport,
        topic_root=topic_root,
        speedup=speedup,
        total=series.times_s.size,
        progress=progress,
        clock=clock,
        wall=now,
        sleep=sleep,
    )
    publish_status(transport, devices, OFFLINE, topic_root=topic_root)
    return ReplayResult(
        published=result.published,
        shift=timedelta(seconds=shift),
        first_ts=datetime.fromtimestamp(float(series.times_s[0]) + shift, UTC),
        last_ts=datetime.fromtimestamp(float(series.times_s[-1]) + shift, UTC),
        elapsed_s=result.elapsed_s,
    )


def run_replay(
    series: Series,
    settings: Settings,
    *,
    enterprise: str,
    device: str,
    metric: Metric,
    speedup: float = 0.0,
    progress: Callable[[Progress], None] | None = None,
) -> ReplayResult:
    """Connect with the simulator account (will: the device ``offline``),
    :func:`replay`, disconnect.

    Raises:
        ConfigError, BrokerUnavailable, PublishError.
    """
    root = settings.mqtt.topic_root
    transport = connect_simulator(
        settings, will_topic=status_topic(root, enterprise, device)
    )
    try:
        return replay(
            series,
            transport,
            enterprise=enterprise,
            device=device,
            metric=metric,
            topic_root=root,
            speedup=speedup,
            progress=progress,
        )
    finally:
        transport.close()
