"""Pure fleet generation: determinism, profiles, anomalies and counters."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from riskwatch.contracts import METRICS, Metric, parse_payload
from riskwatch.registry import load_registry
from simulators.cli import sample_registry_path
from simulators.errors import InjectionError
from simulators.fleet import (
    Injection,
    generate_fleet,
    select_enterprises,
    working_mask,
)

END = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)  # a Thursday
START = END - timedelta(days=2)


@pytest.fixture(scope="module")
def registry():
    return load_registry(sample_registry_path())


def _series(fleet, enterprise, device):
    return next(
        s for s in fleet.series if s.enterprise == enterprise and s.device == device
    )


def _index(fleet, moment):
    return int(np.searchsorted(fleet.times_s, moment.timestamp()))


def test_sample_registry_has_what_the_demo_needs(registry):
    ents = registry.by_id()
    assert len(ents) == 60
    assert sum(e.hazardous_chemicals for e in ents.values()) >= 15
    assert len({e.district for e in ents.values()}) == 4
    assert len({e.grid for e in ents.values()}) >= 10
    moment = datetime(2026, 12, 1, tzinfo=UTC)
    assert sum(e.shutdown_order_at(moment) is not None for e in ents.values()) >= 3
    assert sum(e.status == "closed" for e in ents.values()) == 2
    assert sum(not e.licensed for e in ents.values()) == 2
    tt = next(d for d in ents["HC001"].devices if d.id == "TT-101")
    assert tt.metrics == [Metric.TEMPERATURE_C]
    for enterprise in ents.values():
        meter = next(d for d in enterprise.devices if d.id == "EM-01")
        assert meter.metrics == [Metric.POWER_KW, Metric.ENERGY_KWH]


def test_select_enterprises_mixes_industries(registry):
    chosen = select_enterprises(registry, 5)
    assert [e.id for e in chosen] == ["HC001", "SE001", "FD001", "DR001", "MF001"]
    assert len(select_enterprises(registry, None)) == 60


def test_same_seed_same_fleet_other_seed_differs(registry):
    ents = select_enterprises(registry, 6)
    a = generate_fleet(ents, start=START, end=END, seed=7, anomaly_rate=0.5)
    b = generate_fleet(ents, start=START, end=END, seed=7, anomaly_rate=0.5)
    c = generate_fleet(ents, start=START, end=END, seed=8, anomaly_rate=0.5)
    assert [e.to_json() for e in a.truth] == [e.to_json() for e in b.truth]
    for sa, sb in zip(a.series, b.series, strict=True):
        for metric in sa.values:
            np.testing.assert_array_equal(sa.values[metric], sb.values[metric])
    assert any(
        not np.array_equal(sa.values[m], sc.values[m])
        for sa, sc in zip(a.series, c.series, strict=True)
        for m in sa.values
    )


def test_a_device_does_not_depend_on_the_rest_of_the_fleet(registry):
    small = generate_fleet(select_enterprises(registry, 2), start=START, end=END)
    large = generate_fleet(select_enterprises(registry, 10), start=START, end=END)
    for metric, values in _series(small, "SE001", "EM-01").values.items():
        np.testing.assert_array_equal(
            values, _series(large, "SE001", "EM-01").values[metric]
        )


def test_working_mask_agrees_with_the_registry(registry):
    fleet = generate_fleet(select_enterprises(registry, 1), start=START, end=END)
    for enterprise in registry.enterprises[::7]:
        mask = working_mask(enterprise, fleet.times_s[::17])
        expected = [
            enterprise.working_at(datetime.fromtimestamp(t, UTC))
            for t in fleet.times_s[::17]
        ]
        assert mask.tolist() == expected, enterprise.id


def test_power_follows_working_hours(registry):
    # MF001 works a day shift (Mon-Fri) or days plus Saturday; compare the
    # middle of shifts with the middle of nights.
    ent = registry.by_id()["MF001"]
    fleet = generate_fleet([ent], start=START, end=END, anomaly_rate=0.0)
    power = _series(fleet, "MF001", "EM-01").values[Metric.POWER_KW]
    working = working_mask(ent, fleet.times_s)
    # Leave out the ramps around shift changes.
    core = np.convolve(working, np.ones(90), mode="same") == 90
    idle = np.convolve(~working, np.ones(90), mode="same") == 90
    assert power[core].mean() > 4 * power[idle].mean()
    assert power[idle].std() < 0.2 * power[core].mean()


def test_24_7_plant_runs_at_night(registry):
    ent = registry.by_id()["HC001"]
    fleet = generate_fleet([ent], start=START, end=END, anomaly_rate=0.0)
    power = _series(fleet, "HC001", "EM-01").values[Metric.POWER_KW]
    assert power.min() > 0.7 * power.max()


def test_closed_and_shut_down_enterprises_idle(registry):
    ents = registry.by_id()
    fleet = generate_fleet(
        [ents["MF013"], ents["HC007"], ents["HC001"]],
        start=START,
        end=END,
        anomaly_rate=0.0,
    )
    running = _series(fleet, "HC001", "EM-01").values[Metric.POWER_KW].mean()
    for enterprise in ("MF013", "HC007"):
        power = _series(fleet, enterprise, "EM-01").values[Metric.POWER_KW]
        assert power.max() < 0.3 * running, enterprise


def _inject(registry, injections, enterprises=("HC001", "HC007")):
    ents = [registry.by_id()[e] for e in enterprises]
    return generate_fleet(
        ents,
        start=START,
        end=END,
        anomaly_rate=0.0,
        counter_event_rate=0.0,
        injections=injections,
    )


def _event(fleet, kind):
    events = [e for e in fleet.truth if e.kind == kind]
    assert len(events) == 1, [e.to_json() for e in fleet.truth]
    return events[0]


AT = START + timedelta(hours=20)


@pytest.mark.parametrize(
    ("device", "metric"),
    [("TT-101", Metric.TEMPERATURE_C), ("LT-101", Metric.LEVEL_PCT)],
)
def test_stuck_is_identical_values_over_the_labelled_span(registry, device, metric):
    fleet = _inject(
        registry, [Injection("stuck", "HC001", device, AT, 3 * 3600, metric)]
    )
    event = _event(fleet, "stuck")
    values = _series(fleet, "HC001", device).values[metric]
    a = _index(fleet, datetime.fromtimestamp(event.start_s, UTC))
    b = _index(fleet, datetime.fromtimestamp(event.end_s, UTC))
    assert b - a + 1 == 180
    assert np.unique(values[a : b + 1]).size == 1
    assert event.params["value"] == values[a]
    assert np.unique(values[b + 1 : b + 30]).size > 1


def test_stuck_counter_holds_its_reading(registry):
    fleet = _inject(
        registry,
        [Injection("stuck", "HC001", "WM-01", AT, 3600, Metric.WATER_M3)],
    )
    event = _event(fleet, "stuck")
    values = _series(fleet, "HC001", "WM-01").values[Metric.WATER_M3]
    a = _index(fleet, datetime.fromtimestamp(event.start_s, UTC))
    b = _index(fleet, datetime.fromtimestamp(event.end_s, UTC))
    assert np.unique(values[a : b + 1]).size == 1


@pytest.mark.parametrize("kind", ["level_shift", "stuck"])
def test_a_meter_anomaly_where_nothing_flows_is_no_labelled_event(registry, kind):
    # MF013 is registered closed: its water meter never moves, so a shift
    # of its (zero) consumption or a frozen register changes no reading.
    fleet = _inject(
        registry,
        [Injection(kind, "MF013", "WM-01", AT, 3 * 3600, Metric.WATER_M3)],
        enterprises=("MF013",),
    )
    values = _series(fleet, "MF013", "WM-01").values[Metric.WATER_M3]
    assert np.unique(values).size == 1
    assert [e for e in fleet.truth if e.kind == kind] == []
    # The same anomaly where water flows is labelled.
    fleet = _inject(
        registry, [Injection(kind, "HC001", "WM-01", AT, 3 * 3600, Metric.WATER_M3)]
    )
    assert _event(fleet, kind).device == "WM-01"


def test_dropout_leaves_no_samples_in_the_span(registry):
    fleet = _inject(registry, [Injection("dropout", "HC001", "GD-102", AT, 1800)])
    event = _event(fleet, "dropout")
    assert event.metric is None
    sent = [
        r.ts_s
        for r in fleet.readings()
        if r.enterprise == "HC001" and r.device == "GD-102"
    ]
    assert not [t for t in sent if event.start_s <= t <= event.end_s]
    assert len(sent) == fleet.times_s.size - 30
    assert fleet.message_count() == len(list(fleet.readings()))


@pytest.mark.parametrize(
    ("kind", "device", "metric"),
    [
        ("spike", "PT-101", Metric.PRESSURE_MPA),
        ("level_shift", "TT-101", Metric.TEMPERATURE_C),
        ("drift", "TT-101", Metric.TEMPERATURE_C),
    ],
)
def test_disturbances_show_in_the_series(registry, kind, device, metric):
    clean = _inject(registry, [])
    fleet = _inject(registry, [Injection(kind, "HC001", device, AT, 2 * 3600, metric)])
    event = _event(fleet, kind)
    a = _index(fleet, datetime.fromtimestamp(event.start_s, UTC))
    b = _index(fleet, datetime.fromtimestamp(event.end_s, UTC)) + 1
    diff = (
        _series(fleet, "HC001", device).values[metric]
        - _series(clean, "HC001", device).values[metric]
    )
    assert np.all(np.abs(diff[:a]) < 1e-9)
    assert np.all(np.abs(diff[b:]) < 1e-9)
    if kind == "spike":
        assert b - a == 120
        assert np.allclose(diff[a:b], event.params["delta"], atol=1e-3)
    elif kind == "level_shift":
        assert np.allclose(diff[a:b], event.params["delta"], atol=1e-3)
    else:
        assert np.all(np.diff(diff[a:b]) > 0)
        assert diff[b - 1] == pytest.approx(event.params["total"], abs=1e-3)


def test_gas_leak_ramps_past_25_and_50_lel(registry):
    fleet = _inject(
        registry,
        [
            Injection(
                "gas_leak_ramp", "HC001", "GD-101", AT, 3600, Metric.COMBUSTIBLE_GAS_LEL
            )
        ],
    )
    event = _event(fleet, "gas_leak_ramp")
    lel = _series(fleet, "HC001", "GD-101").values[Metric.COMBUSTIBLE_GAS_LEL]
    a = _index(fleet, datetime.fromtimestamp(event.start_s, UTC))
    b = _index(fleet, datetime.fromtimestamp(event.end_s, UTC)) + 1
    assert lel[:a].max() < 10
    assert lel[a:b].max() >= 50
    assert np.all(np.diff(lel[a : a + 20]) > 0)  # rising
    t25 = datetime.fromisoformat(str(event.params["crosses_25"])).timestamp()
    t50 = datetime.fromisoformat(str(event.params["crosses_50"])).timestamp()
    assert event.start_s <= t25 < t50 <= event.end_s
    assert lel[int(np.searchsorted(fleet.times_s, t50))] >= 50


def test_a_hover_turns_above_and_below_its_level(registry):
    injection = Injection(
        "hover", "HC001", "GD-101", AT, 2 * 3600, Metric.COMBUSTIBLE_GAS_LEL, 25, 6
    )
    fleet = _inject(registry, [injection])
    event = _event(fleet, "hover")
    assert (event.params["level"], event.params["spread"]) == (25, 6)
    lel = _series(fleet, "HC001", "GD-101").values[Metric.COMBUSTIBLE_GAS_LEL]
    a = _index(fleet, AT)
    span = lel[a : a + 120]
    assert lel[: a - 1].max() < 10
    assert np.all(np.abs(span - 25) >= 6 / 3 - 0.5)  # never on the level
    assert np.all(np.abs(span - 25) <= 6 + 1.5)
    above = span > 25
    turns = 1 + int(np.count_nonzero(above[1:] != above[:-1]))
    assert turns == event.params["turns"] > 10
    runs = np.diff(np.flatnonzero(np.diff(np.r_[-1, above.astype(int), -1])))
    assert runs.max() <= 8
    # The same injection gives the same hover.
    again = _series(_inject(registry, [injection]), "HC001", "GD-101")
    assert np.array_equal(again.values[Metric.COMBUSTIBLE_GAS_LEL], lel)


def test_shutdown_production_runs_power_during_the_order(registry):
    fleet = _inject(
        registry,
        [
            Injection(
                "shutdown_production", "HC007", "EM-01", AT, 4 * 3600, Metric.POWER_KW
            )
        ],
    )
    event = _event(fleet, "shutdown_production")
    assert event.params["order_id"] == "SO-2026-HC007"
    power = _series(fleet, "HC007", "EM-01").values[Metric.POWER_KW]
    a = _index(fleet, datetime.fromtimestamp(event.start_s, UTC))
    b = _index(fleet, datetime.fromtimestamp(event.end_s, UTC)) + 1
    level = float(event.params["level_kw"])
    assert np.median(power[a + 30 : b - 30]) > 0.8 * level
    assert power[: a - 30].max() < 0.3 * level


def test_nothing_changes_before_a_labelled_event_starts(registry):
    # The production ramp follows the event's first sample; readings before
    # it are those of the same fleet without the event: the load, and the
    # process temperature and pressure, which follow production with a lag
    # and do not move before it starts.
    injection = Injection(
        "shutdown_production", "HC007", "EM-01", AT, 4 * 3600, Metric.POWER_KW
    )
    with_event = _inject(registry, [injection])
    without = _inject(registry, [])
    event = _event(with_event, "shutdown_production")
    a = _index(with_event, datetime.fromtimestamp(event.start_s, UTC))
    for device, metric in (
        ("EM-01", Metric.POWER_KW),
        ("EM-01", Metric.ENERGY_KWH),
        ("TT-101", Metric.TEMPERATURE_C),
        ("PT-101", Metric.PRESSURE_MPA),
    ):
        changed = _series(with_event, "HC007", device).values[metric]
        base = _series(without, "HC007", device).values[metric]
        assert np.array_equal(changed[:a], base[:a]), metric
        # and does within its first hour (one-minute readings).
        assert not np.array_equal(changed[a : a + 60], base[a : a + 60]), metric


def test_random_anomalies_are_all_labelled_kinds(registry):
    fleet = generate_fleet(
        select_enterprises(registry, 60), start=START, end=END, anomaly_rate=1.0
    )
    kinds = {e.kind for e in fleet.truth}
    assert {"spike", "level_shift", "drift", "stuck", "dropout"} <= kinds
    assert {"gas_leak_ramp", "shutdown_production"} <= kinds
    for event in fleet.truth:
        assert event.start_s <= event.end_s
        assert fleet.times_s[0] <= event.start_s <= fleet.times_s[-1]


def test_counters_decrease_only_at_labelled_resets_and_rollovers(registry):
    fleet = generate_fleet(
        select_enterprises(registry, 30),
        start=START,
        end=END,
        anomaly_rate=0.5,
        counter_event_rate=0.5,
    )
    labelled = {
        (e.enterprise, e.device, e.metric, e.start_s)
        for e in fleet.truth
        if e.kind in ("counter_reset", "rollover")
    }
    kinds = {e.kind for e in fleet.truth}
    assert {"counter_reset", "rollover"} <= kinds
    drops = 0
    for s in fleet.series:
        for metric, values in s.values.items():
            if not METRICS[metric].counter:
                continue
            for i in np.flatnonzero(np.diff(values) < 0) + 1:
                drops += 1
                key = (s.enterprise, s.device, metric, float(fleet.times_s[i]))
                assert key in labelled, key
    assert drops > 0
    for e in fleet.truth:
        if e.kind == "rollover":
            assert e.params["after"] < e.params["before"]
            assert e.params["capacity"] in (1e5, 1e6)


def test_every_reading_is_a_valid_payload_in_time_order(registry):
    fleet = generate_fleet(
        select_enterprises(registry, 8), start=END - timedelta(hours=3), end=END
    )
    now_ns = int(END.timestamp() * 1e9)
    last = 0.0
    for reading in fleet.readings():
        assert reading.ts_s >= last
        last = reading.ts_s
        payload = parse_payload(
            reading.payload(), now_ns=now_ns, max_skew_s=0, max_bytes=65536
        )
        assert payload.seq == reading.seq
        assert len(payload.metrics) == len(reading.values)
    assert last <= END.timestamp()


@pytest.mark.parametrize(
    ("injection", "message"),
    [
        (Injection("stuck", "XX999", "EM-01", AT, 60, Metric.POWER_KW), "XX999"),
        (Injection("stuck", "HC001", "NOPE", AT, 60, Metric.POWER_KW), "NOPE"),
        (Injection("stuck", "HC001", "EM-01", AT, 60, Metric.WATER_M3), "water_m3"),
        (
            Injection("gas_leak_ramp", "HC001", "EM-01", AT, 60, Metric.POWER_KW),
            "does not apply",
        ),
        (
            Injection("shutdown_production", "HC001", "EM-01", AT, 60, Metric.POWER_KW),
            "no shutdown order",
        ),
        (
            Injection(
                "spike",
                "HC001",
                "TT-101",
                END + timedelta(days=1),
                60,
                Metric.TEMPERATURE_C,
            ),
            "outside the window",
        ),
        (
            Injection("hover", "HC001", "GD-101", AT, 60, Metric.COMBUSTIBLE_GAS_LEL),
            "needs a level",
        ),
        (
            Injection(
                "hover", "HC001", "GD-101", AT, 60, Metric.COMBUSTIBLE_GAS_LEL, 25, 0
            ),
            "spread above 0",
        ),
        (
            Injection("hover", "HC001", "EM-01", AT, 60, Metric.ENERGY_KWH, 25),
            "does not apply",
        ),
    ],
)
def test_bad_injections_are_refused(registry, injection, message):
    with pytest.raises(InjectionError, match=message):
        _inject(registry, [injection])


def test_bad_arguments(registry):
    ents = select_enterprises(registry, 1)
    with pytest.raises(ValueError, match="step_s"):
        generate_fleet(ents, start=START, end=END, step_s=0)
    with pytest.raises(ValueError, match="anomaly_rate"):
        generate_fleet(ents, start=START, end=END, anomaly_rate=2)
    with pytest.raises(ValueError, match="holds no"):
        generate_fleet(ents, start=END, end=START)


def test_sample_registry_path_exists():
    assert Path(sample_registry_path()).is_file()
