"""Every shipped rule loads, fires on its anomaly and stays quiet on normal data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alert_rules import DEFAULTS_DIR, Level
from riskwatch.contracts import Finding

ORDER = {
    "order_id": "SO-1",
    "start": datetime(2026, 12, 1, tzinfo=UTC),
    "reason": "hazard found on inspection",
    "authority": "District Emergency Bureau",
}


def _robust(score):
    return Finding(detector="robust_z", score=score, observed=9.0, expected=2.0)


def _deviation(score):
    return Finding(detector="deviation", score=score, observed=9.0, expected=5.0)


def _stuck():
    return Finding(detector="stuck", score=1.0, detail="same value for 2 h")


# rule id -> (enterprise overrides, metric, anomaly, normal); each sequence is
# a list of (minute, value, extra observation keywords).
SCENARIOS = {
    "spike-or-drop": (
        {},
        "temperature_c",
        [(0, 20, {}), (1, 90, {"score": 0.95, "findings": [_robust(0.95)]})],
        [
            (m, 20 + m % 3, {"score": 0.1, "findings": [_robust(0.1)]})
            for m in range(60)
        ],
    ),
    "consumption-jump": (
        {},
        "water_m3",
        # Off the daily profile at every reading for 15 minutes.
        [(m, 15.0, {"findings": [_deviation(0.8)]}) for m in range(0, 20, 5)],
        # Off it for 10 minutes only, then back: a burst, not a shift; and a
        # high combined score alone (an edge) is not a deviation that lasts.
        [
            *((m, 15.0, {"findings": [_deviation(0.8)]}) for m in (0, 5, 10)),
            *((m, 5.0, {"score": 0.9, "findings": [_robust(0.9)]}) for m in (15, 20)),
            *((m, 15.0, {"findings": [_deviation(0.8)]}) for m in (25, 30, 35)),
        ],
    ),
    "slow-drift": (
        {},
        "pressure_mpa",
        [(m, 1.0 + m / 100, {"findings": [_deviation(0.6)]}) for m in range(0, 20, 5)],
        # A deviation under the rule's 0.5 (2.5 spreads) for an hour.
        [(m, 1.0, {"findings": [_deviation(0.4)]}) for m in range(0, 60, 5)],
    ),
    "stuck-sensor": (
        {},
        "pressure_mpa",
        [(0, 0.8, {}), (5, 0.8, {"findings": [_stuck()]})],
        [(m, 0.8 + m / 1000, {}) for m in range(60)],
    ),
    "combustible-gas-orange": (
        {},
        "combustible_gas_lel",
        [(0, 2, {}), (1, 30, {})],
        [(m, 3.0, {}) for m in range(60)],
    ),
    "toxic-gas-orange": (
        {},
        "toxic_gas_ppm",
        [(0, 1, {}), (1, 30, {})],
        [(m, 5.0, {}) for m in range(60)],
    ),
    "hazchem-pressure-limit": (
        {},
        "pressure_mpa",
        [(m, 1.8, {}) for m in range(3)],
        [(m, 1.2, {}) for m in range(60)],
    ),
    "hazchem-temperature-limit": (
        {},
        "temperature_c",
        [(m, 160, {}) for m in range(7)],
        [(m, 85.0, {}) for m in range(60)],
    ),
    "power-during-shutdown-order": (
        {"shutdown_orders": [ORDER]},
        "power_kw",
        [(m, 120, {}) for m in range(0, 20, 5)],
        [(m, 1.5, {}) for m in range(0, 120, 5)],
    ),
    "water-during-shutdown-order": (
        {"shutdown_orders": [ORDER], "idle_load": {"water_m3": 0.4}},
        "water_m3",
        [(m, 3.0, {}) for m in range(0, 35, 5)],
        [(m, 0.45, {}) for m in range(0, 120, 5)],
    ),
    "gas-during-shutdown-order": (
        {"shutdown_orders": [ORDER], "idle_load": {"gas_m3": 0.15}},
        "gas_m3",
        [(m, 1.2, {}) for m in range(0, 35, 5)],
        [(m, 0.2, {}) for m in range(0, 120, 5)],
    ),
    "load-at-closed-or-unlicensed-site": (
        {"status": "closed"},
        "power_kw",
        [(m, 80, {}) for m in range(0, 35, 5)],
        [(m, 1.0, {}) for m in range(0, 120, 5)],
    ),
    "device-silent": (
        {},
        "power_kw",
        [(0, 50, {}), (20, None, {"silent_s": 1200})],
        [(m, 50, {}) for m in range(0, 120, 5)],
    ),
    "safety-sensor-silent": (
        {},
        "combustible_gas_lel",
        # As the worker's scan reports it, once, after silent_after_s.
        [(0, 1, {}), (16, None, {"silent_s": 960})],
        [(m, 1, {}) for m in range(0, 120, 5)],
    ),
    "safety-sensor-stale": (
        {},
        "combustible_gas_lel",
        [(0, 1, {}), (40, None, {"stale_s": 2400})],
        [(0, 1, {}), *((m, None, {"stale_s": m * 60}) for m in range(1, 29))],
    ),
    "device-clock-skew": (
        {},
        "temperature_c",
        [(0, 20, {"clock_offset_s": -30.0}), (1, 20, {"clock_offset_s": -600.0})],
        # Within a few seconds, and a backlog that gives no measurement.
        [(m, 20, {"clock_offset_s": m % 3 - 1.0}) for m in range(30)]
        + [(m, 20, {}) for m in range(30, 60)],
    ),
    # Grouped rules: what fires here is one member's device finding; the
    # group warnings they make are in tests/unit/alert_rules/test_grouping.py.
    "hazchem-safety-sensors-silent": (
        {},
        "combustible_gas_lel",
        [(0, 1, {}), (20, None, {"silent_s": 1200})],
        [(m, 1, {}) for m in range(60)],
    ),
    "toxic-gas-several-enterprises": (
        {},
        "toxic_gas_ppm",
        [(0, 1, {}), (1, 30, {})],
        [(m, 5.0, {}) for m in range(60)],
    ),
}


def test_every_default_loads_with_unique_ids(default_rules):
    ids = [rule.id for rule in default_rules]
    assert len(ids) == len(set(ids)) >= 11
    assert all(rule.enabled for rule in default_rules)


def test_every_default_rule_has_a_scenario(default_rules):
    assert {rule.id for rule in default_rules} == set(SCENARIOS)


def test_every_level_choice_is_explained_in_a_comment(default_rules):
    text = "\n".join(p.read_text() for p in DEFAULTS_DIR.glob("*.yaml"))
    for level in Level:
        assert f"# Level {level.value} (" in text
    # One for each rule's level and one for each escalation step's.
    steps = sum(len(rule.escalate) for rule in default_rules)
    assert text.count("# Level ") == len(default_rules) + steps


@pytest.mark.parametrize("rule_id", ["combustible-gas-orange", "toxic-gas-orange"])
def test_gas_levels(default_rules, rule_id):
    # The two alarm levels of one gas are one rule: orange, escalating to red
    # at the second threshold and back under 40 held for 5 minutes.
    rule = {rule.id: rule for rule in default_rules}[rule_id]
    assert rule.level == Level.II
    [step] = rule.escalate
    assert step.to == Level.I
    assert step.when is not None
    assert list(step.when.thresholds()) == [50]
    assert step.clear is not None
    assert list(step.clear.thresholds()) == [40]
    assert step.clear_for == timedelta(minutes=5)
    assert step.action is not None
    assert "Evacuate" in step.action


@pytest.mark.parametrize(
    ("metric", "unit"), [("combustible_gas_lel", "%LEL"), ("toxic_gas_ppm", "ppm")]
)
def test_a_gas_rising_past_the_second_threshold_escalates_one_warning(
    default_rules, make_obs, run, metric, unit
):
    rising = [(0, 2), (1, 30), (2, 45), (3, 55), (4, 60)]
    falling = [(5, 45), (6, 38), *((m, 35) for m in range(7, 13))]
    cleared = [(m, 5) for m in range(13, 20)]
    observations = [make_obs(metric, v, m) for m, v in rising + falling + cleared]
    records = [
        r for r in run(default_rules, observations) if r.rule_id.endswith("gas-orange")
    ]
    assert [(r.status.value, r.level.value) for r in records] == [
        ("open", "II"),
        ("open", "I"),  # over 50 at minute 3
        ("open", "II"),  # under 40 from minute 6, for 5 minutes
        ("resolved", "II"),  # under 20 from minute 13, for 5 minutes
    ]
    assert len({r.id for r in records}) == 1
    assert [e.from_ for e in records[-1].levels] == [
        datetime(2026, 12, 3, 0, m, tzinfo=UTC) for m in (1, 3, 11)
    ]
    assert records[1].items[0].observed_value == 55
    assert unit in records[1].items[0].unit


def _observations(make_obs, metric, sequence):
    return [
        make_obs(metric, value, minute, **extra) for minute, value, extra in sequence
    ]


@pytest.mark.parametrize("rule_id", sorted(SCENARIOS))
def test_default_rule_fires_on_its_anomaly(
    rule_id, default_rules, make_obs, make_enterprise, run
):
    overrides, metric, anomaly, _ = SCENARIOS[rule_id]
    enterprise = make_enterprise(**overrides)
    records = run(default_rules, _observations(make_obs, metric, anomaly), enterprise)
    fired = [r for r in records if r.rule_id == rule_id]
    assert [r.status.value for r in fired] == ["open"], records


@pytest.mark.parametrize("rule_id", sorted(SCENARIOS))
def test_default_rule_is_quiet_on_normal_data(
    rule_id, default_rules, make_obs, make_enterprise, run
):
    overrides, metric, _, normal = SCENARIOS[rule_id]
    enterprise = make_enterprise(**overrides)
    records = run(default_rules, _observations(make_obs, metric, normal), enterprise)
    assert [r for r in records if r.rule_id == rule_id] == []


def test_spike_rule_needs_one_detector_past_its_own_alarm_level(
    default_rules, make_obs, run
):
    # A calm gas detector's blip: unusual for the series (combined 0.67), yet
    # no detector is far past its alarm level.
    blip = [
        make_obs("toxic_gas_ppm", 2.1, 0),
        make_obs("toxic_gas_ppm", 2.8, 1, score=0.67, findings=[_robust(0.12)]),
    ]
    assert [r for r in run(default_rules, blip) if r.rule_id == "spike-or-drop"] == []
    spike = [
        make_obs("toxic_gas_ppm", 2.1, 0),
        make_obs("toxic_gas_ppm", 9.0, 1, score=0.67, findings=[_robust(0.6)]),
    ]
    opened = [r for r in run(default_rules, spike) if r.rule_id == "spike-or-drop"]
    assert [r.status.value for r in opened] == ["open"]


def test_a_step_far_beyond_the_usual_is_a_spike_on_its_own(
    default_rules, make_obs, run
):
    # A tank level whose wide rolling band hides a jump: only the rate of
    # change sees it, so the combined score stays at a third.
    def step(score):
        finding = Finding(detector="rate_of_change", score=score, observed=26.0)
        return [
            make_obs("level_pct", 40.0, 0),
            make_obs("level_pct", 66.0, 1, score=score / 3, findings=[finding]),
        ]

    def spikes(records):
        return [r.status.value for r in records if r.rule_id == "spike-or-drop"]

    assert spikes(run(default_rules, step(0.8))) == ["open"]
    assert spikes(run(default_rules, step(0.5))) == []


def test_load_rule_needs_an_unlicensed_or_closed_site(
    default_rules, make_obs, make_enterprise, run
):
    sequence = [make_obs("power_kw", 80, m) for m in range(0, 40, 5)]
    operating = run(default_rules, sequence, make_enterprise())
    assert operating == []
    unlicensed = run(default_rules, sequence, make_enterprise(licensed=False))
    assert [r.rule_id for r in unlicensed] == ["load-at-closed-or-unlicensed-site"]


def test_power_during_a_shutdown_order_turns_red_after_two_hours(
    default_rules, make_obs, make_enterprise, run
):
    enterprise = make_enterprise(shutdown_orders=[ORDER])
    load = [make_obs("power_kw", 120, m) for m in range(0, 150, 5)]
    records = run(default_rules, load, enterprise)
    assert [(r.status.value, r.level.value) for r in records] == [
        ("open", "II"),  # for: 15m
        ("open", "I"),  # 2 h after the load began
    ]
    opened, escalated = records
    assert opened.detection_time == datetime(2026, 12, 3, 0, 15, tzinfo=UTC)
    assert escalated.levels[-1].from_ == datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
    assert escalated.history[-1].comment == (
        "escalated II -> I: during a shutdown order and value above 1.5 x the "
        "registered idle load (at least 5) for 2h"
    )
    assert "enforcement team" in escalated.items[0].action


@pytest.mark.parametrize(
    ("risk_class", "opened", "red"),
    [
        # for 15m and after 2h, x0.33 for class D and x0.67 for C: readings
        # every 5 minutes, so the first one at or past 4.95m and 39.6m...
        ("D", 5, 40),
        # ... and for class C past 10.05m and 80.4m.
        ("C", 15, 85),
        ("A", 15, 120),
    ],
)
def test_a_high_risk_enterprise_under_a_shutdown_order_turns_red_sooner(
    default_rules, make_obs, make_enterprise, run, risk_class, opened, red
):
    enterprise = make_enterprise(shutdown_orders=[ORDER], risk_class=risk_class)
    load = [make_obs("power_kw", 120, m) for m in range(0, 150, 5)]
    records = run(default_rules, load, enterprise)
    assert [(r.status.value, r.level.value) for r in records] == [
        ("open", "II"),
        ("open", "I"),
    ]
    t0 = datetime(2026, 12, 3, tzinfo=UTC)
    assert records[0].detection_time == t0 + timedelta(minutes=opened)
    assert records[1].levels[-1].from_ == t0 + timedelta(minutes=red)
    if risk_class == "D":
        assert (
            records[1]
            .history[-1]
            .comment.endswith("(at least 5) for 2h (39m36s for risk class D)")
        )
