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
    for key, outage in plan.explained.items():
        if due_for_silence(states[key], wall_ns, POLICY.silent_after_s):
            states[key] = explained(states[key], outage)
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
        assert (plan.opened, plan.resolved, plan.silent) == (None, [], [])
        assert plan.outages == [first.opened]


def test_the_id_is_stable_for_the_same_outage_and_differs_by_feed():
    one = FeedWatch(POLICY, "w").scan(fleet(8, 0).items(), T0 + 61 * S)
    again = FeedWatch(POLICY, "w").scan(fleet(8, 0).items(), T0 + 71 * S)
    other = FeedWatch(POLICY, "w2").scan(fleet(8, 0).items(), T0 + 61 * S)
    assert one.opened.id == again.opened.id != other.opened.id


def test_recovery_resolves_once_and_a_device_still_silent_counts_from_it():
    watch, states = FeedWatch(POLICY, "w"), fleet(8, 0)
    first = scan(watch, states, T0 + 61 * S)
    back = T0 + 600 * S
    for i in range(7):  # data returns from 7 of the 8
        states[f"E/Q{i}".encode()] = state(back)
    plan = scan(watch, states, back + 10 * S)
    assert plan.resolved == [first.opened]
    assert plan.resume == [b"E/Q7"]
    assert plan.silent == []
    # Not again, and the one still quiet is not reported before silent_after_s.
    for t in range(20, 130, 10):
        for i in range(7):  # and keeps coming
            states[f"E/Q{i}".encode()] = state(back + t * S)
        plan = scan(watch, states, back + t * S)
        assert (plan.resolved, plan.opened, plan.silent) == ([], None, [])
    # silent_after_s and settle_s after the recovery.
    plan = scan(watch, states, back + 130 * S)
    assert plan.silent == [b"E/Q7"]
    assert plan.opened is None


def test_devices_falling_silent_within_settle_s_of_the_start_are_explained():
    watch, states = FeedWatch(POLICY, "w"), fleet(8, 2)
    first = scan(watch, states, T0 + 61 * S)
    assert first.opened is not None
    plan = scan(watch, states, T0 + 121 * S)
    assert sorted(plan.explained) == [b"E/T0", b"E/T1"]
    assert plan.silent == []


def talk(states, keys, at):
    for key in keys:
        states[key] = state(at)


@pytest.mark.parametrize(("after_s", "member"), [(60, True), (70, False)])
def test_an_outage_explains_a_device_only_if_it_fell_silent_with_it(after_s, member):
    # 8 quiet at T0 of 12: the outage starts at T0. E/L last read after_s
    # later; settle_s is 60, so it fell silent with the outage only at 60.
    states = fleet(8, 3) | {b"E/L": state(T0 + after_s * S)}
    watch = FeedWatch(POLICY, "w")
    first = scan(watch, states, T0 + 61 * S)
    assert first.opened is not None
    assert first.opened.start_ns == T0
    talk(states, [k for k in states if b"/T" in k], T0 + 200 * S)
    plans = [scan(watch, states, T0 + t * S) for t in range(71, 200, 10)]
    silent = [key for p in plans for key in p.silent]
    explained = [key for p in plans for key in p.explained]
    # Due at after_s + 60 s; alone, reported after settle_s more.
    assert (explained, silent) == (([b"E/L"], []) if member else ([], [b"E/L"]))
    assert all(p.outages == [first.opened] and p.opened is None for p in plans)


def test_a_device_quiet_after_the_outage_began_gets_its_own_silence():
    # Issue 5 (worker): 8 devices stop at T0 and never return; 4 others keep
    # reporting every 10 s. At T0 + 300 one of them (a gas detector) stops.
    states = fleet(8, 4)
    talking = [k for k in states if b"/T" in k]
    watch = FeedWatch(POLICY, "w")
    first = scan(watch, states, T0 + 61 * S)
    assert first.opened is not None
    reported = {}
    for t in range(71, 1200, 10):
        talk(states, talking[1:] if t > 300 else talking, T0 + (t - 1) * S)
        plan = scan(watch, states, T0 + t * S)
        assert plan.opened is None
        assert plan.resolved == []
        assert plan.outages == [first.opened]
        assert plan.explained == {}
        reported |= dict.fromkeys(plan.silent, t)
    # Last reading at T0 + 290; silent_after_s 60 + settle_s 60: at T0 + 410.
    assert reported == {talking[0]: 411}
    # The outage's own devices stay explained, none reported.
    assert sum(s.get(OUTAGE_KEY) == first.opened.id for s in states.values()) == 8


def test_devices_quiet_together_after_the_outage_began_are_a_new_outage():
    # A: 8 of 14 quiet at T0. Then 5 of the 6 still reporting stop at
    # T0 + 300: 5 of the 6 devices the feed still has is an outage of its own.
    states = fleet(8, 6)
    talking = sorted(k for k in states if b"/T" in k)
    watch = FeedWatch(POLICY, "w")
    a = scan(watch, states, T0 + 61 * S).opened
    assert a is not None
    talk(states, talking, T0 + 300 * S)
    plans = {}
    for t in range(311, 500, 10):
        talk(states, talking[5:], T0 + (t - 1) * S)
        plans[t] = scan(watch, states, T0 + t * S)
    b = plans[361].opened  # due at T0 + 360, all five in one scan
    assert b is not None
    assert (b.start_ns, b.devices, b.heard) == (T0 + 300 * S, 5, 6)
    assert b.id != a.id
    assert sorted(plans[361].explained) == talking[:5]
    assert [p.opened for t, p in plans.items() if t != 361] == [None] * 18
    assert all(p.silent == [] and p.resolved == [] for p in plans.values())
    assert plans[491].outages == [a, b]
    # A's devices return: A resolves, once; B stays. Then B's: B resolves.
    quiet = sorted(k for k in states if b"/Q" in k)
    talk(states, quiet, T0 + 600 * S)
    first = scan(watch, states, T0 + 601 * S)
    assert (first.resolved, first.resume, first.outages) == ([a], [], [b])
    talk(states, [*quiet, *talking], T0 + 610 * S)
    then = scan(watch, states, T0 + 611 * S)
    assert (then.resolved, then.resume, then.outages) == ([b], [], [])
    # No storm: with everyone talking again nothing more is sent.
    for t in range(621, 800, 10):
        talk(states, list(states), T0 + (t - 1) * S)
        plan = scan(watch, states, T0 + t * S)
        assert (plan.opened, plan.resolved, plan.silent, plan.explained) == (
            None,
            [],
            [],
            {},
        )


def test_a_member_that_returns_and_goes_quiet_again_is_judged_alone():
    states = fleet(8, 0)
    watch = FeedWatch(POLICY, "w")
    first = scan(watch, states, T0 + 61 * S).opened
    talk(states, [b"E/Q0"], T0 + 300 * S)  # one back; 7 of 8 still an outage
    plans = {t: scan(watch, states, T0 + t * S) for t in range(311, 500, 10)}
    assert [key for p in plans.values() for key in p.silent] == [b"E/Q0"]
    assert plans[421].silent == [b"E/Q0"]  # T0 + 300 + 60 + 60
    assert all(p.outages == [first] for p in plans.values())


def test_the_outage_is_rebuilt_from_the_marks_after_a_restart():
    watch, states = FeedWatch(POLICY, "w"), fleet(8, 0)
    first = scan(watch, states, T0 + 61 * S)
    restarted = FeedWatch(POLICY, "w")
    plan = scan(restarted, states, T0 + 300 * S)
    assert plan.opened is None
    assert [o.id for o in plan.outages] == [first.opened.id]
    for i in range(8):
        states[f"E/Q{i}".encode()] = state(T0 + 400 * S)
    [resolved] = scan(restarted, states, T0 + 410 * S).resolved
    assert resolved.id == first.opened.id


def test_two_open_outages_are_both_rebuilt_after_a_restart():
    states = fleet(8, 6)
    talking = sorted(k for k in states if b"/T" in k)
    watch = FeedWatch(POLICY, "w")
    a = scan(watch, states, T0 + 61 * S).opened
    talk(states, talking, T0 + 300 * S)
    b = scan(watch, states, T0 + 361 * S).opened
    restarted = FeedWatch(POLICY, "w")
    plan = scan(restarted, states, T0 + 371 * S)
    # Each with the feed it was found in: A 14 devices, B the 6 left.
    assert [(o.id, o.start_ns, o.heard) for o in plan.outages] == [
        (a.id, a.start_ns, 14),
        (b.id, b.start_ns, 6),
    ]
    assert (plan.opened, plan.resolved, plan.silent) == (None, [], [])


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
