"""The scoring agent's work on a batch of readings: what it would do with
each reading in turn, the detectors scoring the batch together."""

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import riskwatch
from alert_rules import RuleEngine, load_rules
from riskwatch.contracts import Measurement, Metric, ReadingRecord
from riskwatch.registry import load_registry
from stream_jobs import state_codec as table_codec
from stream_jobs.detection import engine as detection_engine
from stream_jobs.processing import process_arrival, process_batch, process_reading
from stream_jobs.reorder import ReorderPolicy

S = 1_000_000_000
T0_NS = 1_764_720_000 * S
MIN = 60 * S
REGISTRY = load_registry(
    Path(riskwatch.__file__).with_name("data") / "sample_registry.yaml"
).by_id()
RULES = RuleEngine(load_rules(None), authority="Test Work Safety Office")


def fleet_readings(seed, devices, steps):
    """Readings of a few devices, each with a gauge and a water register, a
    gas spike, a stuck spell, some duplicates and some late arrivals."""
    rng = np.random.default_rng(seed)
    records = []
    for step in range(steps):
        for d in range(devices):
            ts = T0_NS + step * 5 * MIN + d * S
            gas = float(rng.normal(2, 0.3))
            if step == steps - 10 and d == 0:
                gas = 60.0
            if step > steps // 2 and d == 1:
                gas = 2.0
            values = {
                "combustible_gas_lel": gas,
                "water_m3": float(step * 0.05 * (d + 1) + rng.random() * 0.01),
            }
            records.append(
                ReadingRecord(
                    enterprise="HC001",
                    device=f"PT-{d}",
                    ts_ns=ts,
                    metrics=[
                        Measurement(metric=Metric(m), value=v)
                        for m, v in values.items()
                    ],
                    received_ns=ts,
                )
            )
    for i in rng.integers(0, len(records), 5).tolist():
        records.insert(i + 1, records[i])  # a redelivery
    for i in rng.integers(1, len(records) - 1, 3).tolist():
        records[i], records[i + 1] = records[i + 1], records[i]  # late by one
    return records


def one_by_one(records, policy=None):
    states = {}
    outcomes = []
    for record in records:
        state, enterprise = states.get(record.key), REGISTRY.get(record.enterprise)
        outcome = (
            process_reading(record, state, enterprise, RULES)
            if policy is None
            else process_arrival(record, state, enterprise, RULES, policy)
        )
        states[record.key] = outcome.state
        outcomes.append(outcome)
    return states, outcomes


def in_batches(records, cuts, policy=None):
    states = {}
    outcomes = []
    bounds = sorted({0, len(records), *(c % (len(records) + 1) for c in cuts)})
    for first, last in itertools.pairwise(bounds):
        batch = process_batch(
            records[first:last], states.get, REGISTRY.get, RULES, policy
        )
        for record, outcome in zip(records[first:last], batch, strict=True):
            states[record.key] = outcome.state
        outcomes.extend(batch)
    return states, outcomes


def dump(outcome):
    return (
        [o.model_dump() for o in outcome.observations],
        [w.model_dump() for w in outcome.warnings],
        [p.to_line_protocol() for p in outcome.points],
        outcome.duplicates,
        outcome.late,
        outcome.overflow,
        outcome.counter_events,
    )


@given(
    seed=st.integers(0, 2**16),
    cuts=st.lists(st.integers(0, 10_000), max_size=6),
    lateness_s=st.sampled_from([None, 0.0, 600.0]),
)
@settings(max_examples=12, deadline=None)
def test_a_batch_gives_what_its_readings_give_one_by_one(seed, cuts, lateness_s):
    # More devices than a wave needs for numpy, and enough readings for the
    # detectors to score and the rules to open warnings; applied as they come
    # (None) or held by the reorder buffer (which puts the swapped readings
    # back in order with a lateness of 10 minutes).
    policy = None if lateness_s is None else ReorderPolicy.of(lateness_s, 256, 65_536)
    records = fleet_readings(seed, detection_engine.NUMPY_FROM + 2, 70)
    states_once, outcomes_once = one_by_one(records, policy)
    states, outcomes = in_batches(records, cuts, policy)
    assert [dump(o) for o in outcomes] == [dump(o) for o in outcomes_once]
    assert [o.state for o in outcomes] == [o.state for o in outcomes_once]
    assert states == states_once
    assert any(o.warnings for o in outcomes_once)
    assert sum(o.duplicates for o in outcomes_once) >= 5
    for state in states.values():
        assert table_codec.loads(table_codec.dumps(state)) == state


def test_a_batch_leaves_the_stored_states_untouched():
    records = fleet_readings(3, 4, 40)
    states, _ = one_by_one(records[:80])
    before = table_codec.dumps(states)
    process_batch(records[80:], states.get, REGISTRY.get, RULES)
    assert table_codec.dumps(states) == before


def test_the_last_outcome_of_a_device_holds_all_its_readings():
    records = fleet_readings(4, 2, 40)
    outcomes = process_batch(records, {}.get, REGISTRY.get, RULES)
    last = {r.key: o.state for r, o in zip(records, outcomes, strict=True)}
    states_once, _ = one_by_one(records)
    assert last == states_once


@pytest.mark.parametrize("size", [0, 1])
def test_tiny_batches(size):
    records = fleet_readings(5, 1, 1)[:size]
    assert len(process_batch(records, {}.get, REGISTRY.get, RULES)) == size
