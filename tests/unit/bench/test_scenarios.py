"""``riskwatch bench scenarios``: matching warnings to the ground truth."""

import math

import pytest
from click.testing import CliRunner

from riskwatch.cli import cli
from riskwatch.contracts import Metric
from simulators.fleet import TruthEvent
from stream_jobs.bench.scenarios import Opened, match_warnings

T0 = 1_700_000_000.0
HOUR = 3600.0


def event(kind, device, start_h, end_h, metric=Metric.TEMPERATURE_C):
    return TruthEvent(
        kind, "e1", device, metric, T0 + start_h * HOUR, T0 + end_h * HOUR
    )


def warning(device, at_h, metric=Metric.TEMPERATURE_C, rule="spike-or-drop"):
    at = T0 + at_h * HOUR
    return Opened(rule, "e1", device, metric, at, at)


# Worked by hand (grace 1 h):
#   spike on d1 at 1 h           <- warning d1 at 1.25 h: detected, delay 15 min
#   level_shift on d2, 2 h-4 h   <- warnings d2 at 4.5 h (45 min after end,
#                                   inside the grace: delay 2.5 h) and at 3 h
#                                   (delay 1 h, the earliest wins); both true
#   stuck on d3, 5 h-6 h         <- warning on d3 but another metric: missed,
#                                   and that warning is false
#   dropout on d4, 7 h-8 h       <- no metric on the event: a warning on any
#                                   metric of d4 at 7.5 h detects it (30 min)
#   drift on d5, 1 h-2 h         <- warning at 3.5 h, 1.5 h after the end:
#                                   outside the grace, missed and false
#   counter_reset on d1 at 9 h   <- not an anomaly: the warning at 9 h is false
#   warning on d6 at 0.5 h       <- no event on d6: false
# events 5, detected 3: recall 0.6; warnings 8, matched 4: precision 0.5;
# false warnings 4 over 2 device-days: 200 per 100 device-days.
TRUTH = [
    event("spike", "d1", 1, 1),
    event("level_shift", "d2", 2, 4),
    event("stuck", "d3", 5, 6),
    event("dropout", "d4", 7, 8, metric=None),
    event("drift", "d5", 1, 2),
    event("counter_reset", "d1", 9, 9, metric=Metric.ENERGY_KWH),
]
WARNINGS = [
    warning("d1", 1.25),
    warning("d2", 4.5, rule="level"),
    warning("d2", 3, rule="level"),
    warning("d3", 5.5, metric=Metric.PRESSURE_MPA, rule="stuck-sensor"),
    warning("d4", 7.5, metric=Metric.PRESSURE_MPA, rule="device-silent"),
    warning("d5", 3.5),
    warning("d1", 9, metric=Metric.ENERGY_KWH),
    warning("d6", 0.5),
]


def test_match_worked_example():
    result = match_warnings(TRUTH, WARNINGS, device_days=2.0)
    assert (result.events, result.detected) == (5, 3)
    assert result.recall == pytest.approx(0.6)
    assert (result.warnings, result.matched_warnings) == (8, 4)
    assert result.precision == pytest.approx(0.5)
    assert result.false_warnings == 4
    assert result.false_per_100_device_days == pytest.approx(200.0)
    kinds = result.kinds
    assert kinds["spike"].delays_s == (0.25 * HOUR,)
    assert kinds["level_shift"].median_delay_s == pytest.approx(HOUR)
    assert kinds["dropout"].delays_s == (0.5 * HOUR,)
    assert (kinds["stuck"].detected, kinds["drift"].detected) == (0, 0)
    assert kinds["gas_leak_ramp"].events == 0
    assert math.isnan(kinds["gas_leak_ramp"].recall)
    assert math.isnan(kinds["stuck"].median_delay_s)
    rules = result.rules
    assert (rules["level"].warnings, rules["level"].matched) == (2, 2)
    assert (rules["spike-or-drop"].warnings, rules["spike-or-drop"].matched) == (
        4,
        1,
    )
    assert rules["stuck-sensor"].precision == 0.0
    assert result.false_by == {
        ("spike-or-drop", "temperature_c"): 2,
        ("spike-or-drop", "energy_kwh"): 1,
        ("stuck-sensor", "pressure_mpa"): 1,
    }


def test_grace_zero_misses_a_warning_after_the_end():
    result = match_warnings(
        [event("level_shift", "d2", 2, 4)],
        [warning("d2", 4.5)],
        device_days=1.0,
        grace_s=0.0,
    )
    assert (result.detected, result.false_warnings) == (0, 1)


def test_production_in_a_shutdown_is_detected_on_what_production_drives():
    production = TruthEvent(
        "shutdown_production", "e1", "EM-01", Metric.POWER_KW, T0, T0 + 2 * HOUR
    )
    warnings = [
        warning("WM-01", 0.5, metric=Metric.WATER_M3, rule="consumption-jump"),
        warning("TT-101", 0.5, metric=Metric.TEMPERATURE_C),
        warning("PT-101", 0.5, metric=Metric.PRESSURE_MPA),
        warning("GD-101", 0.5, metric=Metric.COMBUSTIBLE_GAS_LEL),
        warning("LT-101", 0.5, metric=Metric.LEVEL_PCT),
    ]
    result = match_warnings([production], warnings, device_days=1.0)
    assert result.kinds["shutdown_production"].detected == 1
    # The consumption and the process temperature and pressure follow
    # production; a gas detector and a tank level do not: those are false.
    assert result.false_warnings == 2


def test_warning_before_the_event_starts_is_false():
    result = match_warnings(
        [event("spike", "d1", 2, 2)], [warning("d1", 1.9)], device_days=1.0
    )
    assert (result.detected, result.false_warnings) == (0, 1)


def test_warmup_leaves_out_early_events_and_their_warnings():
    # Score from 3 h: the level shift (2-4 h) started in the warm-up, so its
    # warning at 3.5 h counts neither way; the warning at 1 h is in the
    # warm-up; the spike at 5 h and its warning count.
    result = match_warnings(
        [event("level_shift", "d2", 2, 4), event("spike", "d1", 5, 5)],
        [warning("d2", 3.5), warning("d1", 1), warning("d1", 5)],
        device_days=1.0,
        scored_from_s=T0 + 3 * HOUR,
    )
    assert (result.events, result.detected) == (1, 1)
    assert (result.warnings, result.false_warnings) == (1, 0)


def test_no_warnings_gives_undefined_precision():
    result = match_warnings([event("spike", "d1", 1, 1)], [], device_days=1.0)
    assert result.recall == 0.0
    assert math.isnan(result.precision)
    assert result.false_per_100_device_days == 0.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"device_days": 0.0}, "device_days"), ({"grace_s": -1.0}, "grace_s")],
)
def test_bad_arguments_name_the_parameter(kwargs, field):
    arguments = {"device_days": 1.0, **kwargs}
    with pytest.raises(ValueError, match=field):
        match_warnings(TRUTH, WARNINGS, **arguments)


def test_scenarios_command_on_a_tiny_fleet():
    result = CliRunner().invoke(
        cli,
        [
            "bench",
            "scenarios",
            "--enterprises",
            "2",
            "--days",
            "0.25",
            "--warmup-days",
            "0.25",
            "--step",
            "600",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "median_delay_min" in result.stdout
    assert "anomaly-free" in result.stdout
    assert "false/100dd" in result.stdout
    assert "by rule and metric" in result.stdout
    assert "labelled fleet: devices=" in result.stderr
