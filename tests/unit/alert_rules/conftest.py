"""Factories for rule tests: observations, enterprises, rules and a runner."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from alert_rules import Rule, RuleEngine, WarningRecord, load_rules
from riskwatch.contracts import METRICS, NS_PER_S, Finding, Metric, Observation
from riskwatch.registry import Enterprise

# 2026-12-03 08:00 Asia/Shanghai, a Thursday.
T0_NS = int(datetime(2026, 12, 3, 0, 0, tzinfo=UTC).timestamp()) * NS_PER_S
MINUTE_NS = 60 * NS_PER_S
AUTHORITY = "Test Work Safety Office"


def at(minute: float) -> int:
    """Event time ``minute`` minutes after T0, in ns."""
    return T0_NS + round(minute * MINUTE_NS)


@pytest.fixture
def make_obs() -> Callable[..., Observation]:
    def make(
        metric: Metric | str,
        value: float | None,
        minute: float,
        *,
        device: str = "D1",
        enterprise: str = "E1",
        score: float = 0.0,
        findings: Iterable[Finding] = (),
        silent_s: float | None = None,
        stale_s: float | None = None,
        clock_offset_s: float | None = None,
    ) -> Observation:
        """A reading; with ``value`` None a silence, or with ``stale_s`` a
        stale observation."""
        metric = Metric(metric)
        info = METRICS[metric]
        silence = value is None
        kind = "reading" if not silence else "stale" if stale_s else "silence"
        return Observation(
            enterprise=enterprise,
            device=device,
            metric=metric,
            kind=kind,
            ts_ns=at(minute),
            value=value,
            unit=f"{info.unit}/h" if info.counter else info.unit,
            rate=info.counter,
            score=score,
            silent_s=silent_s if silence else None,
            stale_s=stale_s if silence else None,
            clock_offset_s=clock_offset_s,
            findings=list(findings),
        )

    return make


@pytest.fixture
def make_enterprise() -> Callable[..., Enterprise]:
    def make(**overrides: Any) -> Enterprise:
        data: dict[str, Any] = {
            "id": "E1",
            "name": "Test Chemicals Co., Ltd.",
            "industry": "hazardous_chemicals",
            "district": "nanhu",
            "grid": "nanhu-g1",
            "risk_class": "B",
            "hazardous_chemicals": True,
            "officer": {"id": "GO-01", "name": "Wang Lei", "phone": "+86 1"},
            "devices": [
                {"id": "D1", "metrics": ["power_kw"], "description": "main meter"}
            ],
        }
        data.update(overrides)
        return Enterprise.model_validate(data)

    return make


@pytest.fixture
def make_rule() -> Callable[[str], Rule]:
    """A rule from YAML text, with the fields a test does not care about."""

    def make(text: str) -> Rule:
        data = {
            "id": "r1",
            "title": "test rule",
            "level": "III",
            "action": "look",
            "expected": "normal",
        }
        data.update(yaml.safe_load(text))
        return Rule.model_validate(data)

    return make


@pytest.fixture(scope="session")
def default_rules() -> list[Rule]:
    return load_rules(None)


Runner = Callable[..., list[WarningRecord]]


@pytest.fixture
def run() -> Runner:
    """Feed observations through an engine, the state through JSON each time.

    Returns every record; ``states`` (if given) receives each state.
    """

    def feed(
        rules: list[Rule],
        observations: Iterable[Observation],
        enterprise: Enterprise | None = None,
        states: list[dict[str, Any]] | None = None,
    ) -> list[WarningRecord]:
        engine = RuleEngine(rules, authority=AUTHORITY)
        state: dict[str, Any] = {}
        records: list[WarningRecord] = []
        for observation in observations:
            state, new = engine.evaluate(observation, enterprise, state)
            text = json.dumps(state)
            assert json.loads(text) == state
            state = json.loads(text)
            if states is not None:
                states.append(state)
            records.extend(new)
        return records

    return feed


@pytest.fixture
def gas_rule(make_rule: Callable[[str], Rule]) -> Rule:
    """Gas over 25 %LEL for 5m opens; under 20 for 3m resolves."""
    return make_rule(
        """
        id: gas
        level: II
        select: {metrics: [combustible_gas_lel]}
        when: {above: 25}
        for: 5m
        clear: {below: 20}
        clear_for: 3m
        """
    )


@pytest.fixture
def escalating_gas_rule(make_rule: Callable[[str], Rule]) -> Rule:
    """Orange over 25 %LEL (clears under 20); red over 50 until under 40."""
    return make_rule(
        """
        level: II
        select: {metrics: [combustible_gas_lel]}
        when: {above: 25}
        clear: {below: 20}
        escalate:
          - when: {above: 50}
            clear: {below: 40}
            to: I
            action: Evacuate the area.
        """
    )
