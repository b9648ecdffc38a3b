"""Readings -> InfluxDB, committed only after the write.

The storage path is a consumer group of its own (``<app_id>-store``), not a
Faust agent beside the scoring agent: when two Faust agents read the same
topic, the group's committed offset can run ahead of the slower one (seen
here: offsets fully committed while the storage agent was thousands of
readings behind), so a crash would lose what it had not yet written. Here an
offset is committed only after InfluxDB accepted every point before it, so a
crash re-writes a batch at worst, and the points, timed by the device,
overwrite themselves.

Workers scale out as usual: every worker runs one, and the group shares the
readings partitions among them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiohttp
from aiokafka import AIOKafkaConsumer
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.write.point import Point

from riskwatch.contracts import ReadingRecord
from riskwatch.registry import Enterprise
from stream_jobs.storage import PointsRefused, PointWriter, reading_points

log = logging.getLogger(__name__)

RETRY_S = 5.0


class ReadingStore:
    """Consumes the readings topic and writes every reading as points."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        group_id: str,
        writer: Callable[[], PointWriter],
        enterprise: Callable[[str], Enterprise | None],
        batch: int,
        linger_s: float,
        offset_reset: str,
    ) -> None:
        # Made in run(): aiokafka objects belong to the running event loop.
        self._consumer_args = {
            "bootstrap_servers": bootstrap,
            "group_id": group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": offset_reset,
            "max_poll_records": batch,
        }
        self._topic = topic
        self._writer = writer
        self._enterprise = enterprise
        self._linger_ms = int(linger_s * 1000)
        self.stored = 0
        self.skipped = 0
        self.refused = 0

    async def run(self) -> None:
        """Until cancelled: poll, write, commit; a failed write is retried,
        never skipped."""
        consumer = AIOKafkaConsumer(self._topic, **self._consumer_args)
        await consumer.start()
        try:
            await self._join(consumer)
            while True:
                batches = await consumer.getmany(timeout_ms=self._linger_ms)
                records = [r for rs in batches.values() for r in rs]
                if not records:
                    continue
                points = []
                for record in records:
                    try:
                        reading = ReadingRecord.model_validate_json(record.value)
                    except ValueError:
                        # The scoring agent dead-letters it, once.
                        self.skipped += 1
                        continue
                    points.extend(
                        reading_points(reading, self._enterprise(reading.enterprise))
                    )
                await self._write(points)
                await consumer.commit()
                self.stored += len(points)
        finally:
            await consumer.stop()

    @staticmethod
    async def _join(consumer: AIOKafkaConsumer) -> None:
        """Wait for the group to assign partitions and fix the starting
        positions (with offset reset "latest", that is the moment from which
        readings are stored)."""
        while not consumer.assignment():
            await asyncio.sleep(0.2)
        for tp in consumer.assignment():
            await consumer.position(tp)
        log.info("store ready partitions=%s", len(consumer.assignment()))

    async def _write(self, points: list[Point]) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._writer().write(points)
            except PointsRefused as exc:
                # Retrying would stop the pipeline for every device behind
                # these points.
                self.refused += exc.points
                log.error(  # noqa: TRY400 - a refusal, not a crash: no traceback
                    "influxdb refused readings points=%s status=%s: %s",
                    exc.points,
                    exc.status,
                    exc,
                )
                return
            except (InfluxDBError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                await self._wait(attempt, len(points), exc)
            else:
                return

    @staticmethod
    async def _wait(attempt: int, points: int, exc: Exception) -> None:
        log.warning(
            "influxdb write failed points=%s attempt=%s, retrying in %ss: %r",
            points,
            attempt,
            RETRY_S,
            exc,
        )
        await asyncio.sleep(RETRY_S)
