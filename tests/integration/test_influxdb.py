import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from influxdb_client import InfluxDBClient, Point
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from stream_jobs.storage import InfluxWriter, PointsRefused


def test_points_written_are_read_back_with_flux(settings, stack):
    s = settings.influxdb
    run = uuid.uuid4().hex
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    values = [20.5, 21.0, 35.25]
    points = [
        Point("selftest")
        .tag("run", run)
        .tag("device", "TT-101")
        .field("temperature_c", v)
        .time(start + timedelta(seconds=10 * i))
        for i, v in enumerate(values)
    ]
    with InfluxDBClient(
        url=s.url, token=stack.influxdb.operator_token(), org=s.org
    ) as c:
        c.write_api(write_options=SYNCHRONOUS).write(bucket=s.bucket, record=points)
        tables = c.query_api().query(
            f'from(bucket: "{s.bucket}") |> range(start: -1h) '
            f'|> filter(fn: (r) => r._measurement == "selftest" and r.run == "{run}")'
        )
    rows = [(r.get_time(), r.get_value()) for t in tables for r in t.records]
    assert rows == [
        (start + timedelta(seconds=10 * i), v) for i, v in enumerate(values)
    ]


def test_bucket_has_the_configured_retention(settings, stack):
    s = settings.influxdb
    with InfluxDBClient(
        url=s.url, token=stack.influxdb.operator_token(), org=s.org
    ) as c:
        bucket = c.buckets_api().find_bucket_by_name(s.bucket)
    assert bucket is not None
    assert [r.every_seconds for r in bucket.retention_rules] == [
        s.retention_days * 86400
    ]


def test_a_wrong_token_is_refused(settings, stack):
    s = settings.influxdb
    with (
        InfluxDBClient(url=s.url, token="not-the-token", org=s.org) as c,
        pytest.raises(ApiException) as refused,
    ):
        c.buckets_api().find_bucket_by_name(s.bucket)
    assert refused.value.status == 401


def test_points_beyond_retention_raise_points_refused_and_the_rest_is_kept(
    settings, stack
):
    s = settings.influxdb
    run = uuid.uuid4().hex
    now = datetime.now(UTC).replace(microsecond=0)
    old = now - timedelta(days=s.retention_days + 5)

    def point(when, value):
        return Point("selftest").tag("run", run).field("v", value).time(when)

    async def write():
        writer = InfluxWriter(s.url, stack.influxdb.operator_token(), s.org, s.bucket)
        try:
            with pytest.raises(PointsRefused) as refused:
                await writer.write([point(old, 1.0), point(now, 2.0)])
        finally:
            await writer.close()
        return refused.value

    refused = asyncio.run(write())
    assert refused.status == 422
    assert refused.points == 2
    assert "retention" in str(refused)
    with InfluxDBClient(
        url=s.url, token=stack.influxdb.operator_token(), org=s.org
    ) as c:
        tables = c.query_api().query(
            f'from(bucket: "{s.bucket}") |> range(start: -1h) '
            f'|> filter(fn: (r) => r._measurement == "selftest" and r.run == "{run}")'
        )
    # A partial write: InfluxDB kept the point inside the retention.
    assert [r.get_value() for t in tables for r in t.records] == [2.0]
