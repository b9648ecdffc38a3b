"""A warning version reaches the platform whatever InfluxDB makes of its
point: a point refused for good (older than the bucket's retention) or an
InfluxDB that does not answer is logged, and the version is posted all the
same instead of crashing the delivery agent (which lost the version)."""

import asyncio
import logging

import pytest

from riskwatch.contracts import to_json_bytes
from stream_jobs.storage import PointsRefused
from tests.unit.conftest import fake_worker, make_warning_record


async def _stream(values):
    for value in values:
        yield value


@pytest.mark.parametrize(
    "error",
    [
        PointsRefused(422, "points outside retention policy", 1),
        ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 8086)"),
    ],
    ids=["refused", "unreachable"],
)
def test_a_warning_is_posted_when_its_point_is_not_stored(tmp_path, caplog, error):
    worker = fake_worker(tmp_path)
    first = make_warning_record()
    second = make_warning_record(device="GD-102")
    worker.writer.fail = [error]
    values = [to_json_bytes(first), to_json_bytes(second)]
    with caplog.at_level(logging.ERROR, logger="stream_jobs.app"):
        asyncio.run(worker._deliver(_stream(values)))
    assert [r.id for r in worker.webhook.posted] == [first.id, second.id]
    assert f"warning point not stored warning={first.id} version=1" in caplog.text
