"""Production against the registry: bounds relative to a site's registered
idle load (``above_idle``, ``below_idle``) and the shipped rules on power,
water and gas during a shutdown order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import TypeAdapter, ValidationError

from alert_rules.conditions import Condition, Context

ORDER = {
    "order_id": "SO-7",
    "start": datetime(2026, 12, 3, tzinfo=UTC) - timedelta(days=30),
    "reason": "gas detection out of service",
    "authority": "District Emergency Bureau",
}


def condition(data: object):
    return TypeAdapter(Condition).validate_python(data)


@pytest.mark.parametrize(
    ("spec", "idle", "metric", "bound"),
    [
        ({"factor": 1.5}, {"power_kw": 60}, "power_kw", 90.0),
        # The floor wins over a small idle load, and stands alone without one.
        ({"factor": 1.5, "at_least": 5}, {"power_kw": 2}, "power_kw", 5.0),
        ({"factor": 1.5, "at_least": 5}, {}, "power_kw", 5.0),
        # An energy register's use per hour is power.
        ({"factor": 2}, {"power_kw": 10}, "energy_kwh", 20.0),
        ({"factor": 2}, {"power_kw": 10, "energy_kwh": 12}, "energy_kwh", 24.0),
        ({"factor": 2, "at_least": 0.5}, {"water_m3": 0.4}, "water_m3", 0.8),
        ({"factor": 2}, {"power_kw": 10}, "water_m3", None),
    ],
)
def test_the_bound_follows_the_registered_idle_load(
    spec, idle, metric, bound, make_obs, make_enterprise
):
    enterprise = make_enterprise(idle_load=idle)
    above = condition({"above_idle": spec})
    ctx = Context.of(make_obs(metric, 1.0, 0), enterprise)
    assert above.threshold_at(ctx) == bound
    if bound is None:
        assert above.test(ctx) is None
        return
    just_over = Context.of(make_obs(metric, bound * 1.01, 0), enterprise)
    just_under = Context.of(make_obs(metric, bound * 0.99, 0), enterprise)
    assert (above.test(just_over), above.test(just_under)) == (True, False)
    below = condition({"below_idle": spec})
    assert (below.test(just_over), below.test(just_under)) == (False, True)


def test_no_registry_entry_is_no_evidence_unless_a_floor_is_given(make_obs):
    ctx = Context.of(make_obs("power_kw", 100.0, 0), None)
    assert condition({"above_idle": 1.5}).test(ctx) is None
    assert condition({"above_idle": {"factor": 1.5, "at_least": 5}}).test(ctx)


def test_a_silence_is_no_evidence(make_obs, make_enterprise):
    enterprise = make_enterprise(idle_load={"power_kw": 10})
    silence = make_obs("power_kw", None, 0, silent_s=900)
    assert condition({"above_idle": 1.5}).test(Context.of(silence, enterprise)) is None


@pytest.mark.parametrize("factor", [0, -1, float("nan"), "a lot"])
def test_a_bad_factor_is_refused_naming_it(factor):
    with pytest.raises(ValidationError, match="factor"):
        condition({"above_idle": {"factor": factor}})


def test_a_negative_idle_load_is_refused_naming_the_metric(make_enterprise):
    with pytest.raises(ValidationError, match=r"idle_load\.power_kw"):
        make_enterprise(idle_load={"power_kw": -1})


def _series(make_obs, metric, values_by_minute):
    return [make_obs(metric, value, minute) for minute, value in values_by_minute]


def test_the_idle_load_of_a_site_under_an_order_is_not_production(
    default_rules, make_obs, make_enterprise, run
):
    """A plant that idles at 60 kW under an order: its idle load is no
    warning (the fixed 5 kW floor alone would warn for as long as the order
    lasts); 200 kW for 20 minutes is one, expecting at most 90 kW."""
    enterprise = make_enterprise(shutdown_orders=[ORDER], idle_load={"power_kw": 60})
    rules = [r for r in default_rules if r.id == "power-during-shutdown-order"]
    idle = _series(make_obs, "power_kw", [(m, 61.0) for m in range(0, 120, 5)])
    assert run(rules, idle, enterprise) == []
    producing = [(m, 200.0 if 60 <= m < 100 else 61.0) for m in range(0, 160, 5)]
    records = run(rules, _series(make_obs, "power_kw", producing), enterprise)
    assert [r.status.value for r in records] == ["open", "resolved"]
    (item,) = records[0].items
    assert (item.observed_value, item.expected_value) == (200.0, 90.0)
    # Without the registered idle load the 5 kW floor holds.
    unregistered = make_enterprise(shutdown_orders=[ORDER])
    assert [r.status.value for r in run(rules, idle, unregistered)] == ["open"]


@pytest.mark.parametrize(
    ("rule_id", "metric", "idle", "floor", "use"),
    [
        ("water-during-shutdown-order", "water_m3", 0.4, 0.5, 3.0),
        ("gas-during-shutdown-order", "gas_m3", 0.1, 0.3, 1.2),
    ],
)
def test_water_and_gas_use_during_an_order_warn_after_30_minutes(
    rule_id, metric, idle, floor, use, default_rules, make_obs, make_enterprise, run
):
    enterprise = make_enterprise(shutdown_orders=[ORDER], idle_load={metric: idle})
    rules = [r for r in default_rules if r.id == rule_id]
    steady = [(m, idle * 1.1) for m in range(0, 90, 5)]
    assert run(rules, _series(make_obs, metric, steady), enterprise) == []
    drawn = [(m, use if m >= 30 else idle) for m in range(0, 90, 5)]
    records = run(rules, _series(make_obs, metric, drawn), enterprise)
    assert [(r.status.value, r.level.value) for r in records] == [("open", "III")]
    opened = records[0]
    assert opened.detection_time - opened.start_time == timedelta(minutes=30)
    assert opened.items[0].expected_value == pytest.approx(max(2 * idle, floor))
    # No order, no warning.
    assert run(rules, _series(make_obs, metric, drawn), make_enterprise()) == []
