"""The readings behind a warning's items, read from InfluxDB."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol

from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

from alert_rules.warning import Evidence

# The parameters are bound by InfluxDB (params.*), never pasted into the text.
_FLUX = """
from(bucket: params.bucket)
  |> range(start: params.start, stop: params.stop)
  |> filter(fn: (r) => r._measurement == params.metric)
  |> filter(fn: (r) => r.enterprise == params.enterprise and r.device == params.device)
  |> filter(fn: (r) => r._field == "value" or r._field == "score")
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> keep(columns: ["_time", "value", "score"])
  |> sort(columns: ["_time"])
  |> limit(n: params.limit)
"""


class EvidenceSource(Protocol):
    """Reads one evidence series: ``[{"time", "value", "score"}, ...]``."""

    async def series(
        self, enterprise: str, evidence: Evidence, limit: int
    ) -> list[dict[str, Any]]: ...

    async def close(self) -> None: ...


class InfluxEvidence:
    """An :class:`EvidenceSource` on the telemetry bucket."""

    def __init__(self, url: str, token: str, org: str, bucket: str) -> None:
        self._client = InfluxDBClientAsync(url=url, token=token, org=org, timeout=30000)
        self._bucket = bucket

    async def series(
        self, enterprise: str, evidence: Evidence, limit: int
    ) -> list[dict[str, Any]]:
        # range's stop is exclusive; the evidence's "to" is the last reading.
        params = {
            "bucket": self._bucket,
            "start": evidence.from_,
            "stop": evidence.to + timedelta(microseconds=1),
            "metric": evidence.metric.value,
            "enterprise": enterprise,
            "device": evidence.device,
            "limit": limit,
        }
        tables = await self._client.query_api().query(_FLUX, params=params)
        return [
            {
                "time": _iso(row.get_time()),
                "value": row.values.get("value"),
                "score": row.values.get("score"),
            }
            for table in tables
            for row in table.records
        ]

    async def close(self) -> None:
        await self._client.close()


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
