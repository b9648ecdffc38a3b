"""The worker's flush of derived points (scores, rates) to InfluxDB."""

import asyncio
import logging

from influxdb_client.client.write.point import Point

from riskwatch.settings import Settings
from stream_jobs.app import DERIVED_WRITE_MAX, StreamWorker
from stream_jobs.storage import MemoryWriter, PointsRefused


def _worker(tmp_path, writer):
    settings = Settings(run_dir=tmp_path / "run", cache_dir=tmp_path / "cache")
    return StreamWorker(settings, writer_factory=lambda: writer)


def _points(n, start=0):
    return [Point("power_kw").field("score", 0.0).time(start + i) for i in range(n)]


def test_refused_points_are_dropped_and_counted_and_later_ones_written(
    tmp_path, caplog
):
    writer = MemoryWriter()
    writer.fail = [PointsRefused(422, "points beyond retention policy dropped", 3)]
    worker = _worker(tmp_path, writer)
    worker.derived.extend(_points(3))
    with caplog.at_level(logging.ERROR):
        asyncio.run(worker._flush_derived())
    assert worker.derived == []
    assert worker.counters["derived_refused"] == 3
    assert "influxdb refused derived points=3 status=422" in caplog.text
    # The refusal does not block what comes next.
    worker.derived.extend(_points(2, start=100))
    asyncio.run(worker._flush_derived())
    assert len(writer.lines) == 2
    assert worker.derived == []


def test_a_failed_write_keeps_the_points_for_the_next_flush(tmp_path, caplog):
    writer = MemoryWriter()
    writer.fail = [ConnectionError("influxdb down")]
    worker = _worker(tmp_path, writer)
    worker.derived.extend(_points(4))
    with caplog.at_level(logging.WARNING):
        asyncio.run(worker._flush_derived())
    assert len(worker.derived) == 4
    assert "kept for the next flush" in caplog.text
    asyncio.run(worker._flush_derived())
    assert len(writer.lines) == 4
    assert worker.counters["derived_refused"] == 0


def test_a_large_backlog_is_written_in_bounded_batches(tmp_path):
    writer = MemoryWriter()
    sizes = []
    original = writer.write

    async def counting(points):
        sizes.append(len(points))
        await original(points)

    writer.write = counting
    worker = _worker(tmp_path, writer)
    worker.derived.extend(_points(2 * DERIVED_WRITE_MAX + 7))
    asyncio.run(worker._flush_derived())
    assert sizes == [DERIVED_WRITE_MAX, DERIVED_WRITE_MAX, 7]
    assert worker.derived == []
