"""Properties of the engine over arbitrary observation sequences (hypothesis)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alert_rules import RuleEngine, WarningStatus, load_rules, warning_id
from alert_rules.engine import subject_of
from riskwatch.contracts import NS_PER_S, Finding, Observation
from riskwatch.registry import Enterprise

T0_NS = int(datetime(2026, 12, 3, tzinfo=UTC).timestamp()) * NS_PER_S
RULES = load_rules(None)
RULE_LEVELS = {rule.id: rule.level for rule in RULES}
ENTERPRISE = Enterprise.model_validate(
    {
        "id": "E1",
        "name": "Test Chemicals",
        "industry": "hazardous_chemicals",
        "district": "d1",
        "grid": "g1",
        "risk_class": "D",
        "hazardous_chemicals": True,
        "licensed": False,
        "shutdown_orders": [
            {
                "order_id": "SO-1",
                "start": "2026-12-03T01:00:00+00:00",
                "end": "2026-12-03T03:00:00+00:00",
                "reason": "r",
                "authority": "a",
            }
        ],
        "officer": {"id": "GO-1", "name": "Officer"},
    }
)
METRIC_VALUES = {
    "combustible_gas_lel": st.floats(0, 70),
    "power_kw": st.floats(0, 12),
    "pressure_mpa": st.floats(1.4, 1.8),
}


@st.composite
def observations(draw):
    metric = draw(st.sampled_from(sorted(METRIC_VALUES)))
    minute = draw(st.integers(0, 300))
    device = draw(st.sampled_from(["D1", "D2"]))
    silent = draw(st.booleans()) and draw(st.booleans())
    findings = []
    if draw(st.booleans()):
        detector = draw(st.sampled_from(["robust_z", "stuck"]))
        score = draw(st.floats(0.0, 1.0))
        findings.append(Finding(detector=detector, score=score))
    return Observation(
        enterprise="E1",
        device=device,
        metric=metric,
        kind="silence" if silent else "reading",
        ts_ns=T0_NS + minute * 60 * NS_PER_S,
        value=None if silent else draw(METRIC_VALUES[metric]),
        unit="x",
        score=max((f.score for f in findings), default=0.0),
        silent_s=draw(st.floats(0, 7200)) if silent else None,
        findings=findings,
    )


def _sorted_mostly(items, swaps):
    """Readings in time order, with a few neighbours swapped (late arrivals)."""
    ordered = sorted(items, key=lambda o: o.ts_ns)
    for index in swaps:
        if index + 1 < len(ordered):
            ordered[index], ordered[index + 1] = ordered[index + 1], ordered[index]
    return ordered


def _evaluate(sequence):
    engine = RuleEngine(RULES, authority="A")
    states: dict[str, dict] = {}
    records = []
    for observation in sequence:
        state = states.get(observation.device, {})
        state, new = engine.evaluate(observation, ENTERPRISE, state)
        assert json.loads(json.dumps(state)) == state
        states[observation.device] = json.loads(json.dumps(state))
        records.extend(new)
    return records


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.lists(observations(), max_size=80),
    swaps=st.lists(st.integers(0, 79), max_size=10),
)
def test_never_two_open_warnings_for_one_rule_and_subject(items, swaps):
    sequence = _sorted_mostly(items, swaps)
    open_ids: dict[tuple[str, str], str] = {}
    for record in _evaluate(sequence):
        subject = f"{record.enterprise_id}/{record.device_id}/{record.metric.value}"
        key = (record.rule_id, subject)
        if record.history[-1].level_change is not None:
            # A level change is a later version of the warning already open.
            assert open_ids[key] == record.id
            assert record.status == WarningStatus.OPEN
            assert record.level.severity >= RULE_LEVELS[record.rule_id].severity
        elif record.status == WarningStatus.OPEN and record.version > 1:
            # The flapping mark: a later version of the warning already open.
            assert open_ids[key] == record.id
            assert record.flapping
            assert record.history[-1].from_status == WarningStatus.OPEN
        elif record.status == WarningStatus.OPEN:
            assert key not in open_ids, f"second open warning for {key}"
            open_ids[key] = record.id
        else:
            assert open_ids.pop(key) == record.id
            assert record.resolved_time is not None
            assert record.start_time <= record.detection_time <= record.resolved_time


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(observations(), max_size=60))
def test_evaluation_is_deterministic(items):
    sequence = sorted(items, key=lambda o: o.ts_ns)
    assert _evaluate(sequence) == _evaluate(sequence)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(observations(), min_size=1, max_size=60))
def test_ids_derive_from_rule_subject_and_start(items):
    for record in _evaluate(sorted(items, key=lambda o: o.ts_ns)):
        start_ns = int(record.start_time.timestamp()) * NS_PER_S
        probe = items[0].model_copy(
            update={"device": record.device_id, "metric": record.metric}
        )
        assert record.id == warning_id(record.rule_id, subject_of(probe), start_ns)
