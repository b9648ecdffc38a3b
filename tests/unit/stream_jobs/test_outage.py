"""The feed-outage decision of the silence scan, on plain device states."""

import logging

import numpy as np
import pytest

from alert_rules import RuleEngine, load_rules
from stream_jobs.outage import (
    OUTAGE_KEY,
    FeedWatch,
    OutagePolicy,
    due_for_silence,
    explained,
    resumed,
)
from stream_jobs.processing import new_device_state, process_reading
from tests.unit.stream_jobs.test_processing import reading

S = 10**9
T0 = 1_800_000_000 * S
POLICY = OutagePolicy(min_devices=5, share=0.5, window_s=3600, silent_after_s=60)


def state(seen_ns, **extra):
    return {**new_device_state(), "last_ts": seen_ns, "last_seen_ns": seen_ns, **extra}


def fleet(quiet, talking, *, at=T0):
    """``quiet`` devices last heard at ``at``, ``talking`` heard 60 s later."""
    states = {f"E/Q{i}".encode(): state(at) for i in range(quiet)}
    states |= {f"E/T{i}".encode(): state(at + 60 * S) for i in range(talking)}
    return states


def apply(states, plan, wall_ns):
    """What the silence agent does with a plan (no rules: 'silent' marks)."""
    for key in plan.silent:
        states[key] = {**states[key], "silent": True}
    for key in plan.explained:
        if due_for_silence(states[key], wall_ns, POLICY.silent_after_s):
            states[key] = explained(states[key], plan.outage)
    for key in plan.resume:
        states[key] = resumed(states[key], wall_ns)


def scan(watch, states, wall_ns):
    plan = watch.scan(states.items(), wall_ns)
    apply(states, plan, wall_ns)
    return plan


@pytest.mark.parametrize(
    ("quiet", "talking", "outage"),
    [
        (5, 5, True),  # both edges met: 5 devices and half of them
        (4, 0, False),  # all of them, but fewer than min_devices
        (5, 6, False),  # 5 of 11: under half
        (8, 0, True),
    ],
)
def test_threshold_edges(quiet, talking, outage):
    watch, states = FeedWatch(POLICY, "w"), fleet(quiet, talking)
    plan = watch.scan(states.items(), T0 + 61 * S)
    assert (plan.opened is not None) is outage
    assert plan.silent == []  # not yet: one alone waits for settle_s
    assert len(plan.explained) == (quiet if outage else 0)
    if not outage:
        states |= {k: state(T0 + 120 * S) for k in states if b"/T" in k}
        plan = watch.scan(states.items(), T0 + 121 * S)
        assert (len(plan.silent), plan.opened) == (quiet, None)


def test_devices_whose_last_readings_are_an_interval_apart_are_one_outage():
    # Reporting every 50 s, each at its own moment: they fall due over 50 s.
    states = {f"E/Q{i}".encode(): state(T0 + i * 7 * S) for i in range(8)}
    watch = FeedWatch(POLICY, "w")
    plans = [scan(watch, states, T0 + t * S) for t in range(61, 200, 10)]
    assert sum(p.opened is not None for p in plans) == 1
    assert all(p.silent == [] for p in plans)


def test_devices_heard_before_the_window_do_not_count():
    states = fleet(5, 0)
    # Long gone devices (2 h) are not the feed any more: 5 of 5, not 5 of 11.
    states |= {f"E/OLD{i}".encode(): state(T0 - 7200 * S) for i in range(6)}
    plan = FeedWatch(POLICY, "w").scan(states.items(), T0 + 61 * S)
    assert plan.opened is not None
    assert plan.opened.heard == 5


def test_one_outage_marked_devices_not_reported_and_start_is_last_heard(caplog):
    watch, states = FeedWatch(POLICY, "w"), fleet(8, 0)
    with caplog.at_level(logging.WARNING, logger="stream_jobs.outage"):
        first = scan(watch, states, T0 + 61 * S)
    assert first.opened is not None
    assert first.opened.start_ns == T0
    assert "feed outage warning=" in caplog.text
    assert "devices=8 heard=8" in caplog.text
    assert all(s[OUTAGE_KEY] == first.opened.id for s in states.values())
    for later in range(2, 30):
        plan = scan(watch, states, T0 + (61 + 10 * later) * S)
        assert (plan.opened, plan.resolved, plan.silent) == (None, None, [])
        assert plan.outage == first.opened


def test_the_id_is_stable_for_the_same_outage_and_differs_by_feed():
    one = FeedWatch(POLICY, "w").scan(fleet(8, 0).items(), T0 + 61 * S)
    again = FeedWatch(POLICY, "w").scan(fleet(8, 0).items(), T0 + 71 * S)
    other = FeedWatch(POLICY, "w2").scan(fleet(8, 0).items(), T0 + 61 * S)
    assert one.opened.id == again.opened.id != other.opened.id


def test_recovery_resolves_once_and_a_device_still_silent_counts_from_it():
    watch, states = FeedWatch(POLICY, "w"), fleet(8, 0)
    scan(watch, states, T0 + 61 * S)
    back = T0 + 600 * S
    for i in range(7):  # data returns from 7 of the 8
        states[f"E/Q{i}".encode()] = state(back)
    plan = scan(watch, states, back + 10 * S)
    assert plan.resolved is not None
    assert plan.resume == [b"E/Q7"]
    assert plan.silent == []
    # Not again, and the one still quiet is not reported before silent_after_s.
    for t in range(20, 130, 10):
        for i in range(7):  # and keeps coming
            states[f"E/Q{i}".encode()] = state(back + t * S)
        plan = scan(watch, states, back + t * S)
        assert (plan.resolved, plan.opened, plan.silent) == (None, None, [])
    # silent_after_s and settle_s after the recovery.
    plan = scan(watch, states, back + 130 * S)
    assert plan.silent == [b"E/Q7"]
    assert plan.opened is None


def test_devices_falling_due_during_the_outage_are_explained_by_it():
    watch, states = FeedWatch(POLICY, "w"), fleet(8, 2)
    first = scan(watch, states, T0 + 61 * S)
    assert first.opened is not None
    plan = scan(watch, states, T0 + 121 * S)
    assert sorted(plan.explained) == [b"E/T0", b"E/T1"]
    assert plan.silent == []


def test_the_outage_is_rebuilt_from_the_marks_after_a_restart():
    watch, states = FeedWatch(POLICY, "w"), fleet(8, 0)
    first = scan(watch, states, T0 + 61 * S)
    restarted = FeedWatch(POLICY, "w")
    plan = scan(restarted, states, T0 + 300 * S)
    assert plan.opened is None
    assert plan.outage is not None
    assert plan.outage.id == first.opened.id
    for i in range(8):
        states[f"E/Q{i}".encode()] = state(T0 + 400 * S)
    assert scan(restarted, states, T0 + 410 * S).resolved.id == first.opened.id


@pytest.mark.parametrize("metric", ["combustible_gas_lel", "pressure_mpa", "power_kw"])
def test_readings_resuming_after_a_long_gap_open_no_warning(metric):
    # What the flood after an outage looks like to the detectors: the usual
    # readings, an hour apart from the last ones. The gap detector reports
    # it; no default rule fires on that alone, and a level unchanged over the
    # gap is no step (the rate of change is per reading, not per second).
    rules = RuleEngine(load_rules(None), authority="Test Work Safety Office")
    rng = np.random.default_rng(7)
    state, findings, warnings = None, set(), []
    times = [*range(0, 3000, 10), *range(6600, 7000, 10)]
    for t in times:
        value = 2.0 + 0.05 * rng.standard_normal()
        outcome = process_reading(
            reading(T0 + t * S, device="D1", **{metric: value}), state, None, rules
        )
        state = outcome.state
        warnings += outcome.warnings
        if t >= 6600:
            findings |= {f.detector for o in outcome.observations for f in o.findings}
    assert "gap" in findings
    assert warnings == []
