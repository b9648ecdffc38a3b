"""Factories shared by the unit tests of several packages."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alert_rules import (
    AuditEntry,
    Evidence,
    Level,
    Officer,
    ScopeKind,
    WarningItem,
    WarningRecord,
    WarningScope,
    WarningStatus,
    warning_id,
)
from riskwatch.contracts import Metric
from riskwatch.settings import Settings
from stream_jobs.app import StreamWorker
from stream_jobs.storage import MemoryWriter

T0 = datetime(2026, 12, 3, 1, 0, 0, 250_000, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_riskwatch_environment(monkeypatch):
    """Unit tests see the settings' defaults, whatever RISKWATCH_* variables
    the shell that runs them exports (a developer's own ports, say)."""
    for name in list(os.environ):
        if name.upper().startswith("RISKWATCH_"):
            monkeypatch.delenv(name)


MakeWarning = Callable[..., WarningRecord]


def make_warning_record(
    *,
    level: Level | str = Level.II,
    scope: ScopeKind = ScopeKind.DEVICE,
    resolved: bool = False,
    metric: Metric = Metric.COMBUSTIBLE_GAS_LEL,
    rule: str = "combustible-gas",
    device: str = "GD-101",
    enterprise: str = "HC001",
    start: datetime = T0,
    items: int = 1,
    **overrides: Any,
) -> WarningRecord:
    """A plausible warning version: the opening, or its resolved update."""
    level = Level(level)
    issued = start + timedelta(minutes=2)
    history = [AuditEntry(at=issued, status=WarningStatus.OPEN, by="rules")]
    valid_until = issued + timedelta(hours=4)
    if resolved:
        valid_until = issued + timedelta(minutes=30)
        history.append(
            AuditEntry(at=valid_until, status=WarningStatus.RESOLVED, by="rules")
        )
    scope_id = {
        ScopeKind.DEVICE: device,
        ScopeKind.ENTERPRISE: enterprise,
        ScopeKind.GRID: "nanhu-g2",
        ScopeKind.DISTRICT: "nanhu",
    }[scope]
    data: dict[str, Any] = {
        "id": warning_id(rule, f"{enterprise}/{device}/{metric}", 0),
        "rule_id": rule,
        "title": "Combustible gas above 25 %LEL",
        "level": level,
        "colour": level.colour,
        "status": history[-1].status,
        "scope": WarningScope(kind=scope, id=scope_id, name=f"{scope_id} & co <1>"),
        "start_time": start,
        "detection_time": start + timedelta(minutes=1),
        "issue_time": history[-1].at,
        "valid_until": valid_until,
        "resolved_time": valid_until if resolved else None,
        "items": [
            WarningItem(
                observed=f"{30 + n} %LEL at the tank farm",
                expected="below 25 %LEL",
                observed_value=30.0 + n,
                expected_value=25.0,
                unit="%LEL",
                evidence=Evidence.model_validate(
                    {
                        "device": device,
                        "metric": metric,
                        "from": start,
                        "to": start + timedelta(minutes=1),
                    }
                ),
                action=f"Ventilate and check the seals ({n + 1})",
            )
            for n in range(items)
        ],
        "enterprise_id": enterprise,
        "enterprise_name": "Nanhu Chemicals Co., Ltd.",
        "device_id": device,
        "metric": metric,
        "district": "nanhu",
        "grid": "nanhu-g2",
        "officer": Officer(id="GO-01", name="Wang Lei", phone="+86 1"),
        "authority": "Test Work Safety Office",
        "history": history,
    }
    data.update(overrides)
    return WarningRecord.model_validate(data)


@pytest.fixture
def make_warning() -> MakeWarning:
    return make_warning_record


def enterprise_entry(**changes: Any) -> dict[str, Any]:
    """A registry entry with what every enterprise needs, and ``changes``."""
    base: dict[str, Any] = {
        "id": "E001",
        "name": "Test Works",
        "industry": "food",
        "district": "d1",
        "grid": "g1",
        "risk_class": "B",
        "officer": {"id": "GO-1", "name": "Li Wei"},
        "devices": [{"id": "EM-01", "metrics": ["power_kw", "energy_kwh"]}],
    }
    return {**base, **changes}


class FakeTopic:
    """A Kafka topic that keeps what is sent to it."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, bytes]] = []

    async def send(self, *, key: bytes | None, value: bytes) -> None:
        self.sent.append((key, value))


class FakeWebhook:
    """The platform's webhook, keeping what is posted to it."""

    def __init__(self) -> None:
        self.posted: list[WarningRecord] = []

    async def post(self, record: WarningRecord) -> None:
        self.posted.append(record)


WORKER_TOPICS = (
    "warnings",
    "warning_store",
    "refusals",
    "commands",
    "anomalies",
    "dead_letter",
    "silences",
    "expiries",
    "groups",
)


def fake_worker(tmp_path: Path, *, worker: dict[str, Any] | None = None, **kwargs: Any):
    """A StreamWorker whose topics, tables and webhook are in memory and
    whose views (silences, active findings) count as read; ``kwargs`` go to
    the worker (``clock=``, ``rules=``)."""
    settings = Settings(
        run_dir=tmp_path / "run", cache_dir=tmp_path / "cache", worker=worker or {}
    )
    made = StreamWorker(settings, writer_factory=MemoryWriter, **kwargs)
    made.device_state, made.warning_state, made.group_state = {}, {}, {}
    for name in WORKER_TOPICS:
        setattr(made, name, FakeTopic())
    made.webhook = FakeWebhook()
    made.silence_view.ready.set()
    made.findings.ready.set()
    return made
