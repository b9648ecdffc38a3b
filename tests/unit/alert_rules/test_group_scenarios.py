"""Enterprise, grid and district grouping on the fleet simulator: labelled
anomalies injected into a fleet of the sample registry are replayed reading by
reading through the worker's scoring path (with its silence timer on the
device clock) and the group stage, as the worker routes them."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from alert_rules import (
    Rule,
    RuleEngine,
    ScopeKind,
    WarningRecord,
    WarningStatus,
    load_rules,
)
from alert_rules.grouping import GroupTable
from riskwatch.contracts import Metric
from riskwatch.registry import load_registry
from simulators.fleet import Injection, generate_fleet
from stream_jobs.bench.scenarios import reading_record
from stream_jobs.processing import process_reading, silence
from tests.unit.stream_jobs.test_processing import SAMPLE_REGISTRY

START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
SILENT_AFTER_S = 900.0
NS = 10**9
AUTHORITY = "Test Work Safety Office"
REGISTRY = load_registry(SAMPLE_REGISTRY).by_id()


def _replay(ids, injections, rules, hours=6.0):
    """Every record the worker would publish: the engine's, members turned
    into group versions."""
    enterprises = [REGISTRY[i] for i in ids]
    fleet = generate_fleet(
        enterprises,
        start=START,
        end=START + timedelta(hours=hours),
        step_s=60.0,
        seed=7,
        anomaly_rate=0.0,
        counter_event_rate=0.0,
        injections=injections,
    )
    engine = RuleEngine(rules, AUTHORITY)
    groups = GroupTable(rules, list(REGISTRY.values()), AUTHORITY)
    states: dict[tuple[str, str], dict] = {}
    published: list[WarningRecord] = []
    clock = -math.inf
    for reading in fleet.readings():
        if reading.ts_s != clock:
            clock = reading.ts_s
            now_ns = round(clock * NS)
            for (enterprise, device), state in list(states.items()):
                if state["silent"] or (now_ns - state["last_seen_ns"]) < (
                    SILENT_AFTER_S * NS
                ):
                    continue
                outcome = silence(
                    enterprise, device, state, now_ns, REGISTRY[enterprise], engine
                )
                states[enterprise, device] = outcome.state
                published += groups.feed(outcome.warnings)
        record = reading_record(reading)
        key = (reading.enterprise, reading.device)
        outcome = process_reading(
            record, states.get(key), REGISTRY[reading.enterprise], engine
        )
        states[key] = outcome.state
        published += groups.feed(outcome.warnings)
    return published


def _of(published, rule_id):
    return [w for w in published if w.rule_id == rule_id]


def _at(hours):
    return START + timedelta(hours=hours)


def _dropout(enterprise, device, hours, duration_h=1.5):
    return Injection(
        "dropout", enterprise, device, _at(hours), duration_s=duration_h * 3600
    )


def test_silent_safety_sensors_of_one_enterprise_are_one_enterprise_warning():
    rules = load_rules(None)
    published = _replay(
        ["HC001", "HC002"],
        [
            _dropout("HC001", "GD-101", 1.0),
            _dropout("HC001", "GD-102", 1.25),
            _dropout("HC001", "PT-101", 1.5),
            # One sensor of another enterprise: no enterprise warning there.
            _dropout("HC002", "GD-101", 1.0),
        ],
        rules,
    )
    versions = _of(published, "hazchem-safety-sensors-silent")
    assert {w.id for w in versions} == {versions[0].id}
    assert [w.scope.id for w in versions] == ["HC001"] * len(versions)
    opened, *_, resolved = versions
    # It opened with the second sensor's silence (silent_after_s after its
    # last reading), and names the first sensor's as its start.
    first_silent = _at(1.0) - timedelta(minutes=1) + timedelta(seconds=SILENT_AFTER_S)
    second_silent = first_silent + timedelta(hours=0.25)
    assert opened.detection_time == second_silent
    assert opened.start_time == second_silent
    assert [(m.id, m.start_time) for m in opened.members] == [
        ("GD-101", first_silent),
        ("GD-102", second_silent),
    ]
    assert [(v.status, len(v.members)) for v in versions] == [
        (WarningStatus.OPEN, 2),
        (WarningStatus.OPEN, 3),  # PT-101 joined
        (WarningStatus.OPEN, 3),  # GD-101 back: two left
        (WarningStatus.RESOLVED, 3),  # GD-102 back: one left
    ]
    assert [m.active for m in resolved.members] == [False, False, True]
    # Back at 2.5 h, GD-102 at 2.75 h: the first reading after each dropout.
    assert resolved.resolved_time == _at(2.75)
    # The device warnings are delivered on their own; the members are not.
    silent = {w.device_id for w in _of(published, "device-silent")}
    assert silent == {"GD-101", "GD-102", "PT-101"}
    assert all(w.scope.kind != ScopeKind.DEVICE for w in versions)


@pytest.fixture
def grid_gas_rule():
    return Rule.model_validate(
        {
            "id": "gas-several-enterprises",
            "title": "Combustible gas at several enterprises of one grid",
            "level": "I",
            "scope": "grid",
            "group": {"min_members": 2, "window": "30m"},
            "select": {"metrics": ["combustible_gas_lel"]},
            "when": {"above": 25},
            "clear": {"below": 20},
            "action": "Alert the emergency management bureau.",
            "expected": "Below 25 %LEL at every enterprise of the grid.",
        }
    )


def _leak(enterprise, hours):
    return Injection(
        "gas_leak_ramp",
        enterprise,
        "GD-101",
        _at(hours),
        duration_s=3600,
        metric=Metric.COMBUSTIBLE_GAS_LEL,
    )


def test_gas_at_two_enterprises_of_one_grid_within_the_window(grid_gas_rule):
    # HC001, HC002 and HC015 are in grid nanhu-g2, HC003 in binhai-g1.
    published = _replay(
        ["HC001", "HC002", "HC003", "HC015"],
        [
            _leak("HC001", 1.0),
            _leak("HC002", 1.2),
            _leak("HC003", 1.1),  # another grid
            _leak("HC015", 4.0),  # the same grid, hours later: alone
        ],
        [grid_gas_rule],
    )
    versions = _of(published, grid_gas_rule.id)
    assert {w.id for w in versions} == {versions[0].id}
    opened, resolved = versions[0], versions[-1]
    assert (opened.scope.kind, opened.scope.id, opened.district) == (
        ScopeKind.GRID,
        "nanhu-g2",
        "nanhu",
    )
    assert opened.officer is not None
    assert opened.officer.id == "GO-08"  # the officer of nanhu-g2's sites
    assert [m.id for m in opened.members] == ["HC001", "HC002"]
    hc001, hc002 = opened.members
    assert _at(1.0) < hc001.start_time < hc002.start_time < _at(2.2)
    assert opened.start_time == hc002.start_time
    assert resolved.status == WarningStatus.RESOLVED
    # Each leak's items carry the device's readings.
    assert {i.evidence.device for i in opened.items if i.evidence} == {"GD-101"}


def test_devices_silent_at_enterprises_of_one_district_at_once():
    # A power cut across district xicheng: HC006 (grid xicheng-g2), HC007
    # and HC008 (xicheng-g3) lose every device at 2 h; HC001 (nanhu) a
    # sensor at the same time.
    rule = Rule.model_validate(
        {
            "id": "district-blackout",
            "title": "Devices silent at several enterprises of one district",
            "level": "II",
            "scope": "district",
            "group": {"min_members": 3, "window": "15m"},
            "when": {"silent": True},
            "action": "Ask the power supplier about the district.",
            "expected": "Readings from every enterprise.",
        }
    )
    ids = ["HC006", "HC007", "HC008", "HC001"]
    injections = [
        _dropout(e, d.id, 2.0, duration_h=1.0)
        for e in ids[:3]
        for d in REGISTRY[e].devices
    ]
    injections.append(_dropout("HC001", "GD-101", 2.0, duration_h=1.0))
    published = _replay(ids, injections, [rule])
    versions = _of(published, rule.id)
    assert {w.id for w in versions} == {versions[0].id}
    opened = versions[0]
    assert (opened.scope.kind, opened.scope.id) == (ScopeKind.DISTRICT, "xicheng")
    assert (opened.grid, opened.officer, opened.enterprise_id) == (None, None, "*")
    assert sorted(m.id for m in opened.members) == ["HC006", "HC007", "HC008"]
    assert versions[-1].status == WarningStatus.RESOLVED
