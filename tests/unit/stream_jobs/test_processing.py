"""The scoring agent's work on one reading, without Kafka or Faust."""

import copy
import logging
from pathlib import Path

import numpy as np
import pytest

import riskwatch
from alert_rules import RuleEngine, WarningRecord, WarningStatus, load_rules
from riskwatch.contracts import Measurement, Metric, Observation, ReadingRecord
from riskwatch.registry import Enterprise, load_registry
from stream_jobs import state_codec as table_codec
from stream_jobs.detectors import LEARNING_READINGS, state_fields
from stream_jobs.processing import new_device_state, process_reading, silence
from tests.unit.conftest import enterprise_entry

S = 1_000_000_000
T0_NS = 1_764_720_000 * S
MIN = 60 * S
SAMPLE_REGISTRY = Path(riskwatch.__file__).with_name("data") / "sample_registry.yaml"


class FakeRules:
    """Records what it is asked and counts calls in its state."""

    def __init__(self):
        self.seen: list[Observation] = []

    def evaluate(self, observation, enterprise, state):
        self.seen.append(observation)
        return {**state, "calls": state.get("calls", 0) + 1}, []


def reading(ts_ns, device="PT-101", enterprise="HC001", **values):
    return ReadingRecord(
        enterprise=enterprise,
        device=device,
        ts_ns=ts_ns,
        metrics=[Measurement(metric=Metric(m), value=v) for m, v in values.items()],
        received_ns=ts_ns,
    )


def feed(records, rules, state=None, enterprise=None):
    outcomes = []
    for record in records:
        outcome = process_reading(record, state, enterprise, rules)
        state = outcome.state
        outcomes.append(outcome)
    return state, outcomes


@pytest.fixture(scope="module")
def hc001():
    return load_registry(SAMPLE_REGISTRY).by_id()["HC001"]


@pytest.fixture(scope="module")
def engine():
    return RuleEngine(load_rules(None), authority="Test Work Safety Office")


# Counters ------------------------------------------------------------------


def test_first_register_reading_gives_no_rate():
    rules = FakeRules()
    state, (outcome,) = feed([reading(T0_NS, energy_kwh=1000.0)], rules)
    assert outcome.observations == []
    assert outcome.points == []
    assert rules.seen == []
    assert state["counters"]["energy_kwh"] == {"value": 1000.0, "ts": T0_NS}


def test_counter_readings_become_rates_per_hour():
    rules = FakeRules()
    registers = [1000.0, 1001.5, 1004.5, 1004.5]  # every 15 min
    records = [
        reading(T0_NS + i * 15 * MIN, energy_kwh=r) for i, r in enumerate(registers)
    ]
    _, _outcomes = feed(records, rules)
    rates = [o.value for o in rules.seen]
    # increase / 0.25 h
    assert rates == pytest.approx([6.0, 12.0, 0.0])
    assert all(o.rate and o.unit == "kWh/h" for o in rules.seen)
    assert all(o.metric == Metric.ENERGY_KWH for o in rules.seen)


def test_uneven_intervals_give_the_rate_over_each_interval():
    rules = FakeRules()
    times = [0, 10, 70]  # minutes
    registers = [5.0, 6.0, 8.0]
    records = [
        reading(T0_NS + t * MIN, water_m3=r)
        for t, r in zip(times, registers, strict=False)
    ]
    feed(records, rules)
    assert [o.value for o in rules.seen] == pytest.approx([6.0, 2.0])
    assert rules.seen[0].unit == "m3/h"


@pytest.mark.parametrize(
    ("registers", "event", "rate"),
    [
        ([99_990.0, 5.0], "rollover", 15.0 * 4),
        ([5234.0, 2.0], "reset", 2.0 * 4),
        ([1000.0, 999.9], None, 0.0),  # jitter: no consumption
    ],
)
def test_reset_and_rollover_never_give_a_negative_rate(registers, event, rate, caplog):
    rules = FakeRules()
    records = [reading(T0_NS + i * 15 * MIN, gas_m3=r) for i, r in enumerate(registers)]
    with caplog.at_level(logging.INFO, logger="stream_jobs.processing"):
        _, outcomes = feed(records, rules)
    assert rules.seen[-1].value == pytest.approx(rate)
    assert rules.seen[-1].value >= 0.0
    assert outcomes[-1].counter_events == ([event] if event else [])
    if event:
        assert f"counter {event} metric=gas_m3" in caplog.text


def test_counter_points_carry_rate_and_score():
    _, outcomes = feed(
        [reading(T0_NS, energy_kwh=10.0), reading(T0_NS + 30 * MIN, energy_kwh=11.0)],
        FakeRules(),
    )
    (point,) = outcomes[-1].points
    line = point.to_line_protocol()
    assert line.startswith("energy_kwh,")
    assert "rate_per_h=2" in line
    assert "score=0" in line
    assert line.endswith(f" {T0_NS + 30 * MIN}")


# Duplicates ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset_min", "values", "duplicates", "conflicts", "late", "logged"),
    [
        (0, (1.1, 11.0), 2, 0, 0, None),
        (0, (9.0, 5.0), 0, 1, 0, "reason=conflict: conflicts with the reading"),
        (-5, (9.0, 5.0), 0, 0, 1, "reason=too late: ts is before the last"),
    ],
)
def test_a_reading_not_newer_is_a_repeat_a_conflict_or_too_late(
    offset_min, values, duplicates, conflicts, late, logged, caplog
):
    rules = FakeRules()
    state, _ = feed(
        [
            reading(T0_NS, pressure_mpa=1.0, energy_kwh=10.0),
            reading(T0_NS + 10 * MIN, pressure_mpa=1.1, energy_kwh=11.0),
        ],
        rules,
    )
    seen = len(rules.seen)
    pressure, energy = values
    older = reading(
        T0_NS + (10 + offset_min) * MIN, pressure_mpa=pressure, energy_kwh=energy
    )
    with caplog.at_level(logging.DEBUG, logger="stream_jobs.processing"):
        outcome = process_reading(older, state, None, rules)
    # The same time and values: a repeat per metric, quiet. Another value at
    # the same time: one conflict, both metrics named. Older: too late, once.
    assert (outcome.duplicates, len(outcome.conflicts), outcome.late) == (
        duplicates,
        conflicts,
        late,
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    if logged is None:
        assert warnings == []
    else:
        # One line per metric: the spell of each starts.
        assert [w.split(" metric=")[1].split()[0] for w in warnings] == [
            "pressure_mpa",
            "energy_kwh",
        ]
        assert all(logged in w for w in warnings)
        assert all("enterprise=HC001 device=PT-101" in w for w in warnings)
    if conflicts:
        [conflict] = outcome.conflicts
        assert conflict.record == older
        assert conflict.metrics == (
            ("pressure_mpa", 1.1, 9.0),
            ("energy_kwh", 11.0, 5.0),
        )
    assert outcome.observations == []
    assert outcome.points == []
    assert len(rules.seen) == seen
    # Neither moved the counter nor the series: the first value stays.
    assert outcome.state["counters"] == state["counters"]
    assert outcome.state["series"] == state["series"]


def test_a_repeated_first_register_reading_is_a_duplicate():
    rules = FakeRules()
    state, _ = feed([reading(T0_NS, water_m3=3.0)], rules)
    outcome = process_reading(reading(T0_NS, water_m3=3.0), state, None, rules)
    assert outcome.duplicates == 1


def test_only_the_stale_metric_of_a_reading_is_dropped():
    rules = FakeRules()
    state, _ = feed([reading(T0_NS + MIN, pressure_mpa=1.0)], rules)
    outcome = process_reading(
        reading(T0_NS + MIN, pressure_mpa=1.0, temperature_c=20.0), state, None, rules
    )
    assert outcome.duplicates == 1
    assert [o.metric for o in outcome.observations] == [Metric.TEMPERATURE_C]


def test_the_callers_state_is_not_changed():
    rules = FakeRules()
    state, _ = feed([reading(T0_NS, pressure_mpa=1.0, energy_kwh=1.0)], rules)
    before = copy.deepcopy(state)
    process_reading(
        reading(T0_NS + MIN, pressure_mpa=2.0, energy_kwh=2.0), state, None, rules
    )
    assert state == before


# Silence -------------------------------------------------------------------


def test_silence_gives_one_observation_per_metric():
    rules = FakeRules()
    state, _ = feed(
        [
            reading(T0_NS, pressure_mpa=1.0, energy_kwh=5.0),
            reading(T0_NS + MIN, pressure_mpa=1.0, energy_kwh=6.0, level_pct=50.0),
        ],
        rules,
    )
    rules.seen.clear()
    now = T0_NS + 31 * MIN
    outcome = silence("HC001", "PT-101", state, now, None, rules)
    metrics = [o.metric for o in outcome.observations]
    assert sorted(metrics) == sorted(
        [Metric.PRESSURE_MPA, Metric.ENERGY_KWH, Metric.LEVEL_PCT]
    )
    assert rules.seen == outcome.observations
    for obs in outcome.observations:
        assert obs.kind == "silence"
        assert obs.value is None
        assert obs.ts_ns == now
        assert obs.silent_s == pytest.approx(30 * 60)
        assert (obs.enterprise, obs.device) == ("HC001", "PT-101")
    assert outcome.state["silent"] is True
    assert state["silent"] is False
    # The next reading ends the silent spell.
    after = process_reading(
        reading(now + MIN, pressure_mpa=1.0), outcome.state, None, rules
    )
    assert after.state["silent"] is False


# With the real rule engine -------------------------------------------------


def spike_series(n=60, spike_at=45):
    values = np.random.default_rng(3).normal(1.0, 0.01, n)
    values[spike_at] = 2.0
    return [
        reading(T0_NS + i * MIN, pressure_mpa=float(v)) for i, v in enumerate(values)
    ]


@pytest.mark.parametrize("registered", [True, False])
def test_spike_yields_a_warning_from_the_default_rules(engine, hc001, registered):
    enterprise = hc001 if registered else None
    records = spike_series()
    _, outcomes = feed(records, engine, enterprise=enterprise)
    warned = [(i, w) for i, o in enumerate(outcomes) for w in o.warnings]
    assert [i for i, _ in warned] == [45]
    warning = warned[0][1]
    assert isinstance(warning, WarningRecord)
    assert warning.rule_id == "spike-or-drop"
    assert warning.status == WarningStatus.OPEN
    assert warning.device_id == "PT-101"
    assert warning.metric == Metric.PRESSURE_MPA
    assert warning.district == (hc001.district if registered else None)
    observation = outcomes[45].observations[0]
    assert observation.score == 1.0
    assert [f.detector for f in observation.findings] == ["robust_z"]


def test_learning_readings_yield_no_warning_even_when_wild(engine):
    values = [1.0, 100.0] * (LEARNING_READINGS // 2)
    records = [reading(T0_NS + i * MIN, pressure_mpa=v) for i, v in enumerate(values)]
    _, outcomes = feed(records, engine)
    assert all(o.observations[0].learning for o in outcomes)
    assert not any(o.warnings for o in outcomes)


def test_silence_yields_a_device_silent_warning(engine, hc001):
    state, _ = feed(spike_series(n=10, spike_at=5), engine, enterprise=hc001)
    outcome = silence("HC001", "PT-101", state, T0_NS + 60 * MIN, hc001, engine)
    rules = sorted(w.rule_id for w in outcome.warnings)
    # 51 minutes silent: the general rule, the hazardous-chemicals one, and
    # the finding of a member for the enterprise rule on its safety sensors.
    assert rules == [
        "device-silent",
        "hazchem-safety-sensors-silent",
        "safety-sensor-silent",
    ]


def test_state_round_trips_through_the_table_codec_and_restores(engine, hc001):
    records = spike_series()
    state_once, outcomes_once = feed(records, engine, enterprise=hc001)
    assert table_codec.loads(table_codec.dumps(state_once)) == state_once

    state = None
    outcomes = []
    for record in records:
        outcome = process_reading(record, state, hc001, engine)
        state = table_codec.loads(table_codec.dumps(outcome.state))
        outcomes.append(outcome)
    assert state == state_once
    assert [o.model_dump() for x in outcomes for o in x.observations] == [
        o.model_dump() for x in outcomes_once for o in x.observations
    ]
    assert [w.model_dump() for x in outcomes for w in x.warnings] == [
        w.model_dump() for x in outcomes_once for w in x.warnings
    ]


def test_state_with_counters_and_silence_round_trips_through_the_table_codec(engine):
    state, _ = feed(
        [
            reading(T0_NS, energy_kwh=99_999.0, power_kw=3.0),
            reading(T0_NS + MIN, energy_kwh=2.0, power_kw=3.0),
        ],
        engine,
    )
    outcome = silence("HC001", "PT-101", state, T0_NS + 30 * MIN, None, engine)
    assert table_codec.loads(table_codec.dumps(outcome.state)) == outcome.state
    assert new_device_state() == table_codec.loads(
        table_codec.dumps(new_device_state())
    )


def test_the_registered_shifts_choose_the_daily_profile_a_reading_teaches():
    # E001 works Mon-Fri 08:00-17:00 Shanghai time (00:00-09:00 UTC). A
    # reading at Saturday 12:00 local is off shift and teaches the off-shift
    # profile; one at Monday 12:00 local, the on-shift profile. Without the
    # enterprise (its hours unknown) every reading is on shift.
    works = Enterprise.model_validate(
        enterprise_entry(
            working_hours=[{"days": [1, 2, 3, 4, 5], "start": "08:00", "end": "17:00"}]
        )
    )
    saturday_noon = 1_797_048_000 * S  # 2026-12-12 04:00 UTC
    monday_noon = saturday_noon + 2 * 86_400 * S
    for ts, enterprise, off, on in (
        (saturday_noon, works, 1, 0),
        (monday_noon, works, 0, 1),
        (saturday_noon, None, 0, 1),
    ):
        record = reading(ts, device="EM-01", enterprise="E001", power_kw=50.0)
        state, _ = feed([record], FakeRules(), enterprise=enterprise)
        fields = state_fields(state["series"]["power_kw"])
        assert (sum(fields["hn_off"]), sum(fields["hn"])) == (off, on)
