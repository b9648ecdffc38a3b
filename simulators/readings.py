"""One telemetry message of a simulated device, and its wire form."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from riskwatch.contracts import METRICS, Metric, status_topic, telemetry_topic


@dataclass(frozen=True, slots=True)
class Reading:
    """What one device reports at one instant.

    Attributes:
        ts_s: device time, epoch seconds (UTC).
        enterprise: enterprise id.
        device: device id.
        seq: the device's sample index; a gap in ``seq`` means lost messages.
        values: (metric, value) pairs in the canonical unit of each metric.
    """

    ts_s: float
    enterprise: str
    device: str
    seq: int
    values: tuple[tuple[Metric, float], ...]
    ts_iso: str = ""  # iso_utc(ts_s), when the caller has it already

    def topic(self, root: str) -> str:
        return telemetry_topic(root, self.enterprise, self.device)

    def status_topic(self, root: str) -> str:
        return status_topic(root, self.enterprise, self.device)

    def payload(self) -> bytes:
        """The JSON body, as :class:`riskwatch.contracts.TelemetryPayload`
        expects it; ``ts`` is ISO 8601 in UTC with an explicit offset."""
        # Built by hand: json.dumps per message was most of the cost of a fleet
        # run. repr() of a finite float is valid JSON.
        items = ",".join(f"{_OPEN[m]}{float(v)!r}{_CLOSE[m]}" for m, v in self.values)
        ts = self.ts_iso or iso_utc(self.ts_s)
        return f'{{"ts":"{ts}","seq":{self.seq},"metrics":[{items}]}}'.encode()


_OPEN = {m: '{"metric":' + json.dumps(m.value) + ',"value":' for m in Metric}
_CLOSE = {
    m: ',"unit":' + json.dumps(METRICS[m].unit, ensure_ascii=False) + "}"
    for m in Metric
}


def iso_utc(ts_s: float) -> str:
    """Epoch seconds -> ISO 8601 in UTC, e.g. ``2026-12-03T10:00:00+00:00``."""
    return datetime.fromtimestamp(ts_s, UTC).isoformat()
