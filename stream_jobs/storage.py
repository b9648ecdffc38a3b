"""InfluxDB schema and writes.

Schema (docs/contracts.md has the reasoning):

* one measurement per metric kind (``temperature_c``, ``power_kw``, ...), so a
  query for "a grid's gas sensors" scans one measurement;
* tags ``enterprise``, ``device``, ``district``, ``grid``, ``industry``: all
  bounded by the registry and the fleet (no reading ids, sequence numbers or
  timestamps as tags);
* fields: ``value`` (the measured value) written by the storage agent;
  ``score`` and, for counters, ``rate_per_h`` merged into the same point by
  the scoring agent;
* the point's time is the device timestamp, so a reading stored twice (QoS 1
  redelivery, retained message, replay) overwrites itself: one point.

Warnings go to the ``warning`` measurement, tagged by level, rule,
enterprise, status, scope, subject, metric and version (:func:`warning_point`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from riskwatch.contracts import ReadingRecord
from riskwatch.errors import RiskwatchError
from riskwatch.registry import Enterprise

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def reading_tags(
    enterprise_id: str, device: str, enterprise: Enterprise | None
) -> dict[str, str]:
    """Tags of a device's points; registry fields are ``unknown`` until the
    enterprise is registered."""
    return {
        "enterprise": enterprise_id,
        "device": device,
        "district": enterprise.district if enterprise else UNKNOWN,
        "grid": enterprise.grid if enterprise else UNKNOWN,
        "industry": enterprise.industry.value if enterprise else UNKNOWN,
    }


def reading_points(record: ReadingRecord, enterprise: Enterprise | None) -> list[Point]:
    tags = reading_tags(record.enterprise, record.device, enterprise)
    points = []
    for m in record.metrics:
        point = (
            Point(m.metric.value)
            .field("value", m.value)
            .time(record.ts_ns, WritePrecision.NS)
        )
        for key, value in tags.items():
            point.tag(key, value)
        points.append(point)
    return points


def derived_point(
    metric: str,
    tags: dict[str, str],
    ts_ns: int,
    fields: dict[str, float],
) -> Point:
    point = Point(metric).time(ts_ns, WritePrecision.NS)
    for key, value in tags.items():
        point.tag(key, value)
    for key, field_value in fields.items():
        point.field(key, field_value)
    return point


class PointsRefused(RiskwatchError):
    """InfluxDB refused a write for good (HTTP 4xx other than 429), e.g.
    points older than the bucket's retention: writing it again would fail
    again, so the caller drops it rather than retry and block what follows.
    On a partial write (422) InfluxDB has kept the points it could."""

    def __init__(self, status: int, message: str, points: int) -> None:
        super().__init__(
            f"InfluxDB refused {points} point(s), HTTP {status}: {message}"
        )
        self.status = status
        self.points = points


class PointWriter(Protocol):
    async def write(self, points: Sequence[Point]) -> None:
        """Write ``points``.

        Raises:
            PointsRefused: InfluxDB refused them for good.
            Exception: anything else (connection, timeout, 5xx) may pass if
                tried again.
        """
        ...

    async def close(self) -> None: ...


class InfluxWriter:
    """Async writes to one bucket; a failed write raises, so the caller's
    Kafka offsets are not committed and the batch is processed again."""

    def __init__(self, url: str, token: str, org: str, bucket: str) -> None:
        self._client = InfluxDBClientAsync(url=url, token=token, org=org, timeout=30000)
        self._api = self._client.write_api()
        self._bucket = bucket

    async def write(self, points: Sequence[Point]) -> None:
        if not points:
            return
        try:
            await self._api.write(bucket=self._bucket, record=list(points))
        except InfluxDBError as exc:
            status = exc.response.status if exc.response is not None else None
            if status is not None and 400 <= status < 500 and status != 429:
                raise PointsRefused(status, str(exc.message), len(points)) from exc
            raise

    async def close(self) -> None:
        await self._client.close()


class MemoryWriter:
    """Points kept as line protocol, for tests; ``fail`` makes the next
    writes raise the given errors, one each."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.fail: list[Exception] = []

    async def write(self, points: Sequence[Point]) -> None:
        if self.fail:
            raise self.fail.pop(0)
        self.lines.extend(p.to_line_protocol() for p in points)

    async def close(self) -> None:
        return None


def warning_point(warning: dict[str, Any]) -> Point:
    """A warning (or an update of one) as a point of the ``warning`` measurement,
    at its issue time, tagged by what officers filter on.

    InfluxDB identifies a point by its measurement, tags and time, so the
    tags also name what tells two versions apart that can share an issue
    time: the subject (``subject``: the scope's id, a device or a group),
    the ``metric`` (a device's per-metric warnings of one reading) and the
    ``version`` (1 for the opening, one more per history entry). All three
    are bounded by the fleet and the rules, not by time.

    A ``platform_reference`` key (the supervision platform's receipt, see
    :mod:`stream_jobs.delivery`) becomes a field of that name."""
    scope = warning.get("scope") or {}
    issued = warning.get("issue_time") or warning.get("detection_time")
    when = _to_ns(issued) if issued else time.time_ns()
    point = Point("warning").time(when, WritePrecision.NS)
    for tag, value in (
        ("level", warning.get("level")),
        ("rule", warning.get("rule_id")),
        ("enterprise", warning.get("enterprise_id")),
        ("status", warning.get("status")),
        ("scope", scope.get("kind") if isinstance(scope, dict) else None),
        ("subject", scope.get("id") if isinstance(scope, dict) else None),
        ("metric", warning.get("metric")),
        ("version", len(warning["history"]) if warning.get("history") else None),
    ):
        point.tag(tag, str(value) if value is not None else UNKNOWN)
    point.field("id", str(warning.get("id", "")))
    point.field("device", str(warning.get("device_id") or ""))
    point.field("title", str(warning.get("title") or ""))
    # A grouped warning: how many members it has had; an inhibited one:
    # which warning held it back.
    if warning.get("members"):
        point.field("members", len(warning["members"]))
    if warning.get("inhibited_by"):
        point.field("inhibited_by", str(warning["inhibited_by"]))
    # Not part of the record: the platform's receipt, added after delivery.
    if warning.get("platform_reference"):
        point.field("platform_reference", str(warning["platform_reference"]))
    return point


def _to_ns(value: object) -> int:
    if isinstance(value, int | float):
        return int(value)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    # Integer arithmetic: a float of epoch nanoseconds is off by up to 256 ns.
    return (parsed - _EPOCH) // timedelta(microseconds=1) * 1000
