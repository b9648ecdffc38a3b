"""Staleness: a metric the device stopped sending while it still sends others
gets ``stale`` observations, and the ``stale`` condition fires on them,
clears on the metric's next reading and takes a device silence as no
evidence."""

from pathlib import Path

import pytest
import yaml

import riskwatch
from alert_rules import Rule, RuleEngine, load_rules
from alert_rules.errors import RuleError
from alert_rules.loader import load_rules as load_dir
from riskwatch.registry import load_registry
from stream_jobs.processing import STALE_STEP_NS, process_reading, silence
from tests.unit.stream_jobs.test_processing import MIN, T0_NS, FakeRules, S, reading

REGISTRY = Path(riskwatch.__file__).with_name("data") / "sample_registry.yaml"
RULE = "safety-sensor-stale"


def _feed(records, rules, enterprise=None):
    state, warnings = None, []
    for record in records:
        outcome = process_reading(record, state, enterprise, rules)
        state = outcome.state
        warnings += outcome.warnings
    return state, warnings


def _both(minute):
    return reading(
        T0_NS + minute * MIN, device="GD-101", combustible_gas_lel=1.0, temperature_c=20
    )


def _temperature(seconds):
    return reading(T0_NS + seconds * S, device="GD-101", temperature_c=20.0)


def test_a_metric_left_out_gets_a_stale_observation_a_minute():
    rules = FakeRules()
    # Both at minute 0; then temperature alone every 20 s for 5 minutes.
    state, _ = _feed([_both(0), *(_temperature(s) for s in range(20, 301, 20))], rules)
    stale = [o for o in rules.seen if o.kind == "stale"]
    assert [(o.metric.value, o.stale_s) for o in stale] == [
        ("combustible_gas_lel", float(s)) for s in (60, 120, 180, 240, 300)
    ]
    assert all(o.value is None for o in stale)
    # The gas back: no more stale observations, the mark is gone.
    state, _ = _feed([_both(6)], rules)
    assert "combustible_gas_lel" not in (state.get("stale") or {})
    assert STALE_STEP_NS == 60 * S


def test_a_metric_never_sent_is_not_stale():
    rules = FakeRules()
    _feed([_temperature(s) for s in range(0, 600, 60)], rules)
    assert [o for o in rules.seen if o.kind == "stale"] == []


@pytest.fixture(scope="module")
def hc001():
    return load_registry(REGISTRY).by_id()["HC001"]


@pytest.fixture(scope="module")
def engine():
    return RuleEngine(load_rules(None), authority="Test Work Safety Office")


def test_a_dead_gas_channel_opens_the_stale_rule_and_its_return_resolves(engine, hc001):
    records = [_both(0), *(_temperature(s) for s in range(60, 45 * 60, 60))]
    records.append(_both(45))
    _, warnings = _feed(records, engine, hc001)
    stale = [w for w in warnings if w.rule_id == RULE]
    assert [w.status.value for w in stale] == ["open", "resolved"]
    opened, resolved = stale
    assert opened.metric.value == "combustible_gas_lel"
    assert opened.level.value == "III"
    assert opened.start_time.timestamp() * S == T0_NS + 30 * MIN
    item = opened.items[0]
    assert (item.observed_value, item.unit) == (1800.0, "s")
    assert "while still sending its other metrics" in item.observed
    assert resolved.resolved_time.timestamp() * S == T0_NS + 45 * MIN
    # The temperature, still reported, has no stale warning of its own.
    assert {w.metric.value for w in warnings if w.rule_id == RULE} == {
        "combustible_gas_lel"
    }


def _rule(text):
    data = {"id": "r1", "title": "t", "level": "III", "action": "a", "expected": "e"}
    return Rule.model_validate({**data, **yaml.safe_load(text)})


def test_a_device_silence_is_no_evidence_for_stale():
    rule = _rule("{when: {stale: 5m}, for: 10m, select: {metrics: [pressure_mpa]}}")
    engine = RuleEngine([rule], authority="Office")

    def pressure_then_power(gap_at=None):
        state, warnings = None, []
        records = [reading(T0_NS, pressure_mpa=1.0, power_kw=5.0)]
        records += [reading(T0_NS + m * MIN, power_kw=5.0) for m in range(1, 30)]
        for record in records:
            if gap_at is not None and record.ts_ns == T0_NS + gap_at * MIN:
                # The whole device silent in between: a silence, not staleness.
                out = silence("HC001", "PT-101", state, record.ts_ns, None, engine)
                state, warnings = out.state, warnings + out.warnings
            out = process_reading(record, state, None, engine)
            state, warnings = out.state, warnings + out.warnings
        return warnings

    [opened] = pressure_then_power()
    # Stale from minute 5; 10 minutes of it later.
    assert opened.start_time.timestamp() * S == T0_NS + 5 * MIN
    assert opened.detection_time.timestamp() * S == T0_NS + 15 * MIN
    # A silence at minute 10 breaks the run: it counts again from minute 10.
    [later] = pressure_then_power(gap_at=10)
    assert later.start_time.timestamp() * S == T0_NS + 10 * MIN
    assert later.detection_time.timestamp() * S == T0_NS + 20 * MIN


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        ("{stale: 0}", "longer than 0s"),
        ("{stale: soon}", "expected a duration"),
        ("{clock_skew_above: 0s}", "longer than 0s"),
    ],
)
def test_bad_durations_name_the_field(tmp_path, condition, reason):
    (tmp_path / "r.yaml").write_text(
        f"rules:\n  - {{id: r1, title: t, level: IV, action: a, expected: e, "
        f"when: {condition}}}\n"
    )
    with pytest.raises(RuleError) as caught:
        load_dir(tmp_path)
    text = str(caught.value) + "".join(str(p) for p in caught.value.problems)
    assert "when" in text
    assert reason in text
