"""Event time on the fleet simulator: a gas leak's warning starts at the
injected onset (its first reading over 25 %LEL) within one sample, and
escalates at its crossing of 50, whether the readings arrive in order or late
and out of order within the worker's lateness; beyond it they are dropped
as too late, and counted."""

from datetime import UTC, datetime, timedelta

import pytest

from alert_rules import RuleEngine, load_rules
from riskwatch.contracts import Measurement, Metric, ReadingRecord
from riskwatch.registry import load_registry
from simulators.cli import sample_registry_path
from simulators.fleet import Injection, arrivals, generate_fleet
from stream_jobs.processing import flush, process_arrival
from stream_jobs.reorder import ReorderPolicy

NS = 1_000_000_000
STEP_S = 60.0
START = datetime(2026, 11, 2, tzinfo=UTC)
ONSET = START + timedelta(hours=4)
RULE = "combustible-gas-orange"


@pytest.fixture(scope="module")
def fleet():
    registry = load_registry(sample_registry_path())
    hc001 = registry.by_id()["HC001"]
    return hc001, generate_fleet(
        [hc001],
        start=START,
        end=START + timedelta(hours=6),
        step_s=STEP_S,
        seed=5,
        anomaly_rate=0.0,
        counter_event_rate=0.0,
        injections=[
            Injection(
                "gas_leak_ramp",
                "HC001",
                "GD-101",
                ONSET,
                3600,
                Metric.COMBUSTIBLE_GAS_LEL,
            )
        ],
    )


@pytest.fixture(scope="module")
def engine():
    return RuleEngine(load_rules(None), authority="Test Work Safety Office")


def _replay(fleet, engine, *, max_delay_s, lateness_s, seed=0):
    """Every reading through the scoring agent's path in arrival order, then
    the silence scan's flush; the warnings, the too-late count, and how many
    readings arrived before one taken earlier."""
    enterprise, generated = fleet
    policy = ReorderPolicy.of(lateness_s)
    states = {}
    warnings, late, overtaken, newest = [], 0, 0, {}
    for arrival in arrivals(generated.readings(), max_delay_s=max_delay_s, seed=seed):
        reading = arrival.reading
        key = reading.device
        overtaken += reading.ts_s < newest.get(key, 0.0)
        newest[key] = max(newest.get(key, 0.0), reading.ts_s)
        record = ReadingRecord(
            enterprise=reading.enterprise,
            device=reading.device,
            ts_ns=round(reading.ts_s * NS),
            seq=reading.seq,
            metrics=[Measurement(metric=m, value=v) for m, v in reading.values],
            received_ns=round(arrival.arrival_s * NS),
        )
        outcome = process_arrival(record, states.get(key), enterprise, engine, policy)
        states[key] = outcome.state
        warnings += outcome.warnings
        late += outcome.late
    for state in states.values():
        warnings += flush(state, enterprise, engine).warnings
    return warnings, late, overtaken


def _crossings(fleet):
    [event] = [e for e in fleet[1].truth if e.kind == "gas_leak_ramp"]
    return (
        datetime.fromisoformat(str(event.params["crosses_25"])),
        datetime.fromisoformat(str(event.params["crosses_50"])),
    )


def _gas(warnings):
    return [w for w in warnings if w.rule_id == RULE]


def test_in_order_the_warning_starts_at_the_onset(fleet, engine):
    warnings, late, _ = _replay(fleet, engine, max_delay_s=0, lateness_s=0)
    crosses_25, crosses_50 = _crossings(fleet)
    opened = _gas(warnings)[0]
    assert abs(opened.start_time - crosses_25) <= timedelta(seconds=STEP_S)
    assert [w.level.value for w in _gas(warnings)][:2] == ["II", "I"]
    assert _gas(warnings)[1].levels[-1].from_ == crosses_50
    assert late == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_late_and_out_of_order_within_the_lateness_changes_nothing(fleet, engine, seed):
    in_order, _, _ = _replay(fleet, engine, max_delay_s=0, lateness_s=0)
    # Up to 2.5 samples late: readings overtake each other all the time.
    warnings, late, overtaken = _replay(
        fleet, engine, max_delay_s=150, lateness_s=180, seed=seed
    )
    assert overtaken > 100
    assert late == 0
    crosses_25, crosses_50 = _crossings(fleet)
    opened, escalated, *_ = _gas(warnings)
    assert abs(opened.start_time - crosses_25) <= timedelta(seconds=STEP_S)
    assert escalated.levels[-1].from_ == crosses_50
    # Every warning of every rule, with all its times, as in order.
    assert warnings == in_order


def test_without_a_lateness_the_same_disorder_loses_readings(fleet, engine):
    in_order, _, _ = _replay(fleet, engine, max_delay_s=0, lateness_s=0)
    warnings, late, overtaken = _replay(
        fleet, engine, max_delay_s=150, lateness_s=0, seed=1
    )
    assert late >= overtaken > 100
    # The readings lost are counted, not evaluated. (Whether the warnings
    # change depends on which ones were lost: here none does, as the gas
    # detector's spreads are floored at its resolution; the gas warning needs
    # a single reading over 25 %LEL and still opens within a sample.)
    crosses_25, _ = _crossings(fleet)
    assert abs(_gas(warnings)[0].start_time - crosses_25) <= timedelta(seconds=STEP_S)
    assert _gas(warnings)[0].start_time == _gas(in_order)[0].start_time
