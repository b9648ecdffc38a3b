"""The readings behind a warning's items, read from InfluxDB."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

from alert_rules.warning import Evidence

# Strings go in as JSON string literals (Flux reads the same escapes), so a
# value cannot end the string early. (The client's params= came back from
# InfluxDB 2.9 as "undefined identifier params" for this query.)
_FLUX = """
from(bucket: {bucket})
  |> range(start: {start}, stop: {stop})
  |> filter(fn: (r) => r._measurement == {metric})
  |> filter(fn: (r) => r.enterprise == {enterprise} and r.device == {device})
  |> filter(fn: (r) => r._field == "value" or r._field == "score")
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> keep(columns: ["_time", "value", "score"])
  |> sort(columns: ["_time"])
  |> limit(n: {most:d})
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
        flux = _FLUX.format(
            bucket=json.dumps(self._bucket),
            start=_iso(evidence.from_),
            stop=_iso(evidence.to + timedelta(microseconds=1)),
            metric=json.dumps(evidence.metric.value),
            enterprise=json.dumps(enterprise),
            device=json.dumps(evidence.device),
            most=limit,
        )
        tables = await self._client.query_api().query(flux)
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
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
