"""Pure generation of a fleet's telemetry, with labelled anomalies; no I/O.

Every device of every selected enterprise reports all its metrics on one time
grid (``step_s`` apart, aligned to multiples of ``step_s`` in epoch time).
Values follow the enterprise's working hours: production runs while a shift
covers the moment, no shutdown order is active and the enterprise is not
closed; otherwise meters show an idle baseline (the enterprise's registered
``idle_load`` where the registry records one, else a share of its peak).
Counters (energy, water, gas
registers) integrate their rate and never decrease except at a labelled
``counter_reset`` (register cleared to 0) or ``rollover`` (register of a fixed
number of digits wrapping at 10^k); these are normal meter behaviour, not
anomalies.

The same seed gives the same fleet. Each enterprise and device draws from its
own random stream (seeded by the seed and its ids), so a device's series does
not change when other enterprises are added to or left out of the selection.

Ground truth: one :class:`TruthEvent` per injected anomaly and per counter
event; ``start`` and ``end`` are the first and last affected sample times,
inclusive.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from riskwatch.contracts import METRICS, Metric
from riskwatch.registry import Device, Enterprise, Industry, Registry
from simulators.errors import InjectionError
from simulators.readings import Reading, iso_utc

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

AnomalyKind = Literal[
    "spike",
    "level_shift",
    "drift",
    "stuck",
    "dropout",
    "gas_leak_ramp",
    "shutdown_production",
    "hover",
]
ANOMALY_KINDS: tuple[AnomalyKind, ...] = (
    "spike",
    "level_shift",
    "drift",
    "stuck",
    "dropout",
    "gas_leak_ramp",
    "shutdown_production",
    "hover",
)
COUNTER_EVENT_KINDS = ("counter_reset", "rollover")

_HOUR = 3600.0
_DAY = 86400.0
# Process temperatures and pressures follow production as a first-order lag:
# about two hours from start-up to 95 % of the set point, and never ahead of
# production (a centred average had them rise an hour before a start-up,
# unscheduled ones included).
_PROCESS_TAU_S = 40 * 60.0
# Register sizes: an electricity meter with 6 integer digits of kWh, water and
# gas meters with 5 digits of m3. Readings wrap to 0 at these values.
_CAPACITY = {Metric.ENERGY_KWH: 1e6, Metric.WATER_M3: 1e5, Metric.GAS_M3: 1e5}
_DECIMALS = {Metric.ENERGY_KWH: 2, Metric.WATER_M3: 3, Metric.GAS_M3: 3}
# Production power, kW, drawn uniformly per enterprise.
_POWER_KW = {
    Industry.HAZARDOUS_CHEMICALS: (400.0, 1500.0),
    Industry.SPECIAL_EQUIPMENT: (30.0, 200.0),
    Industry.FOOD: (60.0, 300.0),
    Industry.DRUG: (100.0, 500.0),
    Industry.MANUFACTURING: (80.0, 800.0),
}
_INSTANT_KINDS: tuple[AnomalyKind, ...] = (
    "spike",
    "level_shift",
    "drift",
    "stuck",
    "dropout",
)
_COUNTER_KINDS: tuple[AnomalyKind, ...] = ("level_shift", "stuck", "dropout")
_GAS_KINDS: tuple[AnomalyKind, ...] = ("gas_leak_ramp", "spike", "stuck", "dropout")
# Random anomaly durations, hours (low, high).
_DURATION_H: dict[AnomalyKind, tuple[float, float]] = {
    "spike": (0.0, 0.0),
    "level_shift": (2.0, 8.0),
    "drift": (3.0, 12.0),
    "stuck": (1.0, 6.0),
    "dropout": (0.3, 3.0),
    "gas_leak_ramp": (0.75, 1.5),
    "shutdown_production": (3.0, 8.0),
    "hover": (1.0, 3.0),
}
# A hover's half-cycles above and below its level, in samples (low, high):
# long enough below for some to outlast a rule's clear_for.
_HOVER_SAMPLES = (1, 9)


@dataclass(frozen=True)
class TruthEvent:
    """One labelled event of the ground truth.

    Attributes:
        kind: an anomaly kind (:data:`ANOMALY_KINDS`) or a counter event
            (``counter_reset``, ``rollover``), which is not an anomaly.
        metric: None for ``dropout``, which silences the whole device.
        start_s: first affected sample time, epoch seconds.
        end_s: last affected sample time (inclusive), epoch seconds.
        params: what was injected (magnitudes in the metric's unit, times as
            ISO 8601 UTC).
    """

    kind: str
    enterprise: str
    device: str
    metric: Metric | None
    start_s: float
    end_s: float
    params: Mapping[str, float | str] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """The JSONL form: ``{kind, enterprise, device, metric, start, end,
        params}`` with ISO 8601 UTC times."""
        return {
            "kind": self.kind,
            "enterprise": self.enterprise,
            "device": self.device,
            "metric": self.metric.value if self.metric is not None else None,
            "start": iso_utc(self.start_s),
            "end": iso_utc(self.end_s),
            "params": dict(self.params),
        }


@dataclass(frozen=True)
class Injection:
    """An anomaly asked for explicitly (tests, demo scripts).

    ``hover`` is only ever injected, never drawn at random: a value hovering
    at ``level`` (a rule's threshold), in turns above and below it by up to
    ``spread``, each turn 1 to 8 samples long.

    Attributes:
        duration_s: length of the affected span; a spike lasts one sample
            when this is 0. Spans are cut at the end of the window.
        metric: required except for ``dropout``.
        level: for ``hover`` (required there): the value hovered at.
        spread: for ``hover``: how far above and below ``level`` the value
            goes, > 0; default a tenth of ``level`` (1 if that is 0).
    """

    kind: AnomalyKind
    enterprise: str
    device: str
    start: datetime
    duration_s: float
    metric: Metric | None = None
    level: float | None = None
    spread: float | None = None


@dataclass
class DeviceSeries:
    """All samples of one device on the fleet's time grid.

    Attributes:
        values: per metric, one value per grid time (canonical unit).
        present: False where the device sends nothing (dropout).
    """

    enterprise: str
    device: str
    values: dict[Metric, FloatArray]
    present: BoolArray


@dataclass(frozen=True)
class Fleet:
    """Generated telemetry and its ground truth."""

    times_s: FloatArray
    step_s: float
    series: list[DeviceSeries]
    truth: list[TruthEvent]

    def message_count(self) -> int:
        """Number of telemetry messages :meth:`readings` yields."""
        return int(sum(int(s.present.sum()) for s in self.series))

    def readings(self) -> Iterator[Reading]:
        """Every message in device-time order (devices in registry order at
        equal times); ``seq`` is the sample index, so dropouts leave gaps."""
        columns = [
            (s, [(m, v.tolist()) for m, v in s.values.items()], s.present.tolist())
            for s in self.series
        ]
        for i, ts in enumerate(self.times_s.tolist()):
            ts_iso = iso_utc(ts)
            for s, metrics, present in columns:
                if present[i]:
                    yield Reading(
                        ts,
                        s.enterprise,
                        s.device,
                        i,
                        tuple((m, v[i]) for m, v in metrics),
                        ts_iso,
                    )


@dataclass(frozen=True, slots=True)
class Arrival:
    """A reading and when it reaches the gateway (epoch seconds)."""

    arrival_s: float
    reading: Reading


def arrivals(
    readings: Iterator[Reading] | Sequence[Reading],
    *,
    max_delay_s: float,
    seed: int = 0,
) -> list[Arrival]:
    """The readings as a network with variable delay delivers them.

    Each reading is delayed by its own random time, uniform in ``[0,
    max_delay_s]``, and the list is in arrival order: readings less than
    ``max_delay_s`` apart arrive out of their device-time order, none later
    than ``max_delay_s`` after it was taken. The same seed gives the same
    order.

    >>> from simulators.readings import Reading
    >>> rs = [Reading(float(t), "E1", "D1", t, ()) for t in range(4)]
    >>> [a.reading.seq for a in arrivals(rs, max_delay_s=0)]
    [0, 1, 2, 3]

    Raises:
        ValueError: ``max_delay_s`` is negative.
    """
    if max_delay_s < 0:
        raise ValueError(f"max_delay_s must be >= 0, got {max_delay_s}")
    items = list(readings)
    delays = np.random.default_rng(seed).uniform(0.0, max_delay_s, len(items))
    out = [Arrival(r.ts_s + float(d), r) for r, d in zip(items, delays, strict=True)]
    # Stable: equal arrival times keep device-time order.
    return sorted(out, key=lambda a: a.arrival_s)


def window_ending_now(
    days: float, *, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """The window ``[now - days, now]`` (UTC); device times never pass now."""
    end = now if now is not None else datetime.now(UTC)
    return end - timedelta(days=days), end


def select_enterprises(registry: Registry, count: int | None) -> list[Enterprise]:
    """The first ``count`` enterprises taken in turn from each industry, so a
    small fleet still mixes industries (all of them when ``count`` is None).

    >>> from riskwatch.registry import Registry
    >>> select_enterprises(Registry(), 3)
    []
    """
    by_industry: dict[Industry, list[Enterprise]] = {}
    for enterprise in registry.enterprises:
        by_industry.setdefault(enterprise.industry, []).append(enterprise)
    queues = list(by_industry.values())
    chosen: list[Enterprise] = []
    depth = 0
    total = len(registry.enterprises)
    limit = total if count is None else min(count, total)
    while len(chosen) < limit:
        for queue in queues:
            if depth < len(queue) and len(chosen) < limit:
                chosen.append(queue[depth])
        depth += 1
    return chosen


def generate_fleet(
    enterprises: Sequence[Enterprise],
    *,
    start: datetime,
    end: datetime,
    step_s: float = 60.0,
    seed: int = 0,
    anomaly_rate: float = 0.3,
    counter_event_rate: float = 0.05,
    injections: Sequence[Injection] = (),
    exclude: frozenset[tuple[str, str]] = frozenset(),
) -> Fleet:
    """Generate every device's metrics over ``[start, end]``.

    Args:
        enterprises: whose devices report (see :func:`select_enterprises`).
        start: window start (aware datetime).
        end: window end, inclusive when on the grid.
        step_s: sampling period, seconds.
        seed: the same seed gives the same fleet.
        anomaly_rate: probability, per device, of one random anomaly in the
            window (devices named in ``injections`` get only those).
        counter_event_rate: probability, per counter, of a reset and
            (separately) of a register placed to roll over in the window.
        injections: anomalies asked for explicitly.
        exclude: ``(enterprise, device)`` pairs to leave out, e.g. a device
            another process replays a real series into.

    Raises:
        ValueError: an empty or reversed window, a non-positive step, or a
            rate outside [0, 1].
        InjectionError: an injection names an unknown enterprise, device or
            metric, a kind that does not apply to the metric, or a start
            outside the window.
    """
    if step_s <= 0:
        raise ValueError(f"step_s must be > 0, got {step_s}")
    for name, rate in (
        ("anomaly_rate", anomaly_rate),
        ("counter_event_rate", counter_event_rate),
    ):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be within [0, 1], got {rate}")
    first = np.ceil(start.timestamp() / step_s) * step_s
    times = np.arange(first, end.timestamp() + step_s * 1e-6, step_s)
    if times.size == 0:
        raise ValueError(f"window [{start}, {end}] holds no {step_s}s grid time")
    _check_injections(enterprises, injections, times)
    series: list[DeviceSeries] = []
    truth: list[TruthEvent] = []
    for enterprise in enterprises:
        _Enterprise(
            enterprise,
            times,
            step_s,
            seed,
            anomaly_rate,
            counter_event_rate,
            [i for i in injections if i.enterprise == enterprise.id],
            exclude,
        ).build(series, truth)
    truth.sort(key=lambda e: (e.start_s, e.enterprise, e.device, e.kind))
    return Fleet(times, step_s, series, truth)


def _check_injections(
    enterprises: Sequence[Enterprise],
    injections: Sequence[Injection],
    times: FloatArray,
) -> None:
    known = {e.id: e for e in enterprises}
    for inj in injections:
        enterprise = known.get(inj.enterprise)
        if enterprise is None:
            raise InjectionError(
                f"injection {inj.kind}: enterprise {inj.enterprise!r} is not in "
                "the fleet"
            )
        device = next((d for d in enterprise.devices if d.id == inj.device), None)
        if device is None:
            raise InjectionError(
                f"injection {inj.kind}: {inj.enterprise} has no device "
                f"{inj.device!r}; devices: "
                + ", ".join(d.id for d in enterprise.devices)
            )
        if inj.kind not in ANOMALY_KINDS:
            raise InjectionError(
                f"injection kind {inj.kind!r} is unknown; known: "
                + ", ".join(ANOMALY_KINDS)
            )
        if inj.kind == "hover" and (
            inj.level is None or (inj.spread is not None and not inj.spread > 0)
        ):
            raise InjectionError(
                f"injection hover needs a level (the threshold to hover at) and "
                f"a spread above 0, got level={inj.level!r} spread={inj.spread!r}"
            )
        if inj.kind != "dropout":
            if inj.metric not in device.metrics:
                raise InjectionError(
                    f"injection {inj.kind}: metric {inj.metric!r} is not one of "
                    f"{inj.enterprise}/{inj.device}'s: "
                    + ", ".join(m.value for m in device.metrics)
                )
            allowed = _kinds_for(inj.metric, shutdown_possible=True)
            if inj.kind not in allowed:
                raise InjectionError(
                    f"injection {inj.kind} does not apply to {inj.metric.value}; "
                    "use one of " + ", ".join(allowed)
                )
        ts = inj.start.timestamp()
        if not times[0] <= ts <= times[-1]:
            raise InjectionError(
                f"injection {inj.kind} starts at {inj.start.isoformat()}, outside "
                f"the window {iso_utc(float(times[0]))} .. {iso_utc(float(times[-1]))}"
            )
        if (
            inj.kind == "shutdown_production"
            and enterprise.shutdown_order_at(inj.start) is None
        ):
            raise InjectionError(
                f"injection shutdown_production: {inj.enterprise} has no shutdown "
                f"order active at {inj.start.isoformat()}"
            )


def _kinds_for(metric: Metric, *, shutdown_possible: bool) -> tuple[AnomalyKind, ...]:
    """The kinds an anomaly on ``metric`` may be: drawn at random, or (with
    ``shutdown_possible``) injected, which adds the injected-only ones."""
    if METRICS[metric].counter:
        return _COUNTER_KINDS
    injected: tuple[AnomalyKind, ...] = ("hover",) if shutdown_possible else ()
    if metric is Metric.COMBUSTIBLE_GAS_LEL:
        return (*_GAS_KINDS, *injected)
    if metric is Metric.POWER_KW and shutdown_possible:
        return (*_INSTANT_KINDS, "shutdown_production", *injected)
    return (*_INSTANT_KINDS, *injected)


def _hover(
    values: FloatArray, plan: _Plan, rng: np.random.Generator
) -> dict[str, float | str]:
    """Replace the span by turns above and below the plan's level: each turn
    1 to 8 samples long, its distance from the level a draw between a third
    of the spread and all of it, plus a little noise."""
    level = float(plan.level if plan.level is not None else 0.0)
    spread = plan.spread if plan.spread is not None else abs(level) / 10 or 1.0
    index, above, turns = plan.a, True, 0
    while index < plan.b:
        length = int(rng.integers(*_HOVER_SAMPLES))
        distance = spread * float(rng.uniform(1 / 3, 1.0))
        end = min(plan.b, index + length)
        # A little noise, far too little to cross the level: no sensor
        # reads the same value twice in a row, and a flat one is `stuck`.
        noise = rng.standard_normal(end - index) * spread / 20
        values[index:end] = level + (distance if above else -distance) + noise
        index, above, turns = index + length, not above, turns + 1
    return {"level": level, "spread": round(spread, 3), "turns": turns}


def _stable_hash(text: str) -> int:
    # Python's hash() of a str changes per process; crc32 does not.
    return zlib.crc32(text.encode())


def _smooth(signal: FloatArray, width: int) -> FloatArray:
    """Centred moving average over ``width`` samples, edges held."""
    if width <= 1:
        return signal
    padded = np.pad(signal, (width // 2, width - 1 - width // 2), mode="edge")
    out: FloatArray = np.convolve(padded, np.full(width, 1.0 / width), mode="valid")
    return out


def _lag(signal: FloatArray, step_s: float, tau_s: float) -> FloatArray:
    """First-order lag of ``signal`` (time constant ``tau_s``): a causal
    response, from the first sample's value."""
    alpha = 1.0 - math.exp(-step_s / tau_s)
    out = np.empty_like(signal)
    if signal.size == 0:
        return out
    level = float(signal[0])
    for i, x in enumerate(signal.tolist()):
        level += alpha * (x - level)
        out[i] = level
    return out


def working_mask(enterprise: Enterprise, times: FloatArray) -> BoolArray:
    """True where one of the enterprise's shifts covers the time; the same
    answer as :meth:`Enterprise.working_at`, for a whole grid at once."""
    mask = np.zeros(times.size, dtype=np.bool_)
    if times.size == 0:
        return mask
    zone = ZoneInfo(enterprise.timezone)
    day = datetime.fromtimestamp(float(times[0]), zone).date() - timedelta(days=1)
    last = datetime.fromtimestamp(float(times[-1]), zone).date()
    while day <= last:
        for begin, finish in enterprise.shifts_starting(day):
            mask |= (times >= begin) & (times < finish)
        day += timedelta(days=1)
    return mask


def order_mask(enterprise: Enterprise, times: FloatArray) -> BoolArray:
    """True where a shutdown order of the enterprise is active."""
    mask = np.zeros(times.size, dtype=np.bool_)
    for order in enterprise.shutdown_orders:
        after = times >= order.start.timestamp()
        if order.end is not None:
            after &= times < order.end.timestamp()
        mask |= after
    return mask


@dataclass
class _Plan:
    kind: AnomalyKind
    metric: Metric | None
    a: int  # first affected index
    b: int  # one past the last affected index
    level: float | None = None  # hover only
    spread: float | None = None  # hover only


@dataclass
class _Enterprise:
    """Builds one enterprise's devices; state shared by its devices."""

    enterprise: Enterprise
    times: FloatArray
    step_s: float
    seed: int
    anomaly_rate: float
    counter_event_rate: float
    injections: list[Injection]
    exclude: frozenset[tuple[str, str]]
    closed: bool = False
    order: BoolArray = field(init=False)
    activity: FloatArray = field(init=False)
    slow_activity: FloatArray = field(init=False)
    power_kw: float = field(init=False)
    idle_share: float = field(init=False)

    def rng(self, *parts: str | int) -> np.random.Generator:
        words = [self.seed, _stable_hash(self.enterprise.id)]
        words += [p if isinstance(p, int) else _stable_hash(p) for p in parts]
        return np.random.default_rng(words)

    def build(self, series: list[DeviceSeries], truth: list[TruthEvent]) -> None:
        ent = self.enterprise
        n = self.times.size
        closed = ent.status == "closed"
        working = (
            np.zeros(n, dtype=np.bool_) if closed else working_mask(ent, self.times)
        )
        self.closed = closed
        self.order = order_mask(ent, self.times)
        devices = [d for d in ent.devices if (ent.id, d.id) not in self.exclude]
        plans = {d.id: self._plans(d) for d in devices}
        production = working & ~self.order
        steps = max(1, round(1800 / self.step_s))
        for device_id, device_plans in plans.items():
            for i, plan in enumerate(device_plans):
                if plan.kind == "shutdown_production":
                    production[plan.a : plan.b] = True
                    # The centred smoothing below moves the load from half
                    # its width before the production starts to half after
                    # it ends: the label covers every affected sample.
                    device_plans[i] = replace(
                        plan,
                        a=max(0, plan.a - steps // 2),
                        b=min(n, plan.b + steps - 1 - steps // 2),
                    )
            plans[device_id] = device_plans
        prod = production.astype(np.float64)
        self.activity = np.clip(_smooth(prod, steps), 0.0, 1.0)
        self.slow_activity = np.clip(_lag(prod, self.step_s, _PROCESS_TAU_S), 0.0, 1.0)
        rng = self.rng("profile")
        low, high = _POWER_KW[ent.industry]
        self.power_kw = float(rng.uniform(low, high))
        self.idle_share = 0.01 if closed else float(rng.uniform(0.06, 0.15))
        # The idle load the registry records, where it records one.
        registered = ent.idle_load.get(Metric.POWER_KW)
        if registered is not None:
            self.idle_share = min(1.0, registered / self.power_kw)
        for device in devices:
            series.append(self._device(device, plans[device.id], truth))

    # Anomaly plans ----------------------------------------------------------

    def _plans(self, device: Device) -> list[_Plan]:
        n = self.times.size
        explicit = [i for i in self.injections if i.device == device.id]
        if explicit:
            return [self._explicit(i) for i in explicit]
        rng = self.rng(device.id, "anomaly")
        if n < 20 or rng.random() >= self.anomaly_rate:
            return []
        metric = device.metrics[int(rng.integers(len(device.metrics)))]
        kind: AnomalyKind
        if Metric.POWER_KW in device.metrics and self.order.any() and not self.closed:
            # The anomaly that matters most for an enterprise under an order.
            metric, kind = Metric.POWER_KW, "shutdown_production"
        else:
            kinds = _kinds_for(metric, shutdown_possible=False)
            kind = kinds[int(rng.integers(len(kinds)))]
        low_h, high_h = _DURATION_H[kind]
        length = max(1, round(rng.uniform(low_h, high_h) * _HOUR / self.step_s))
        if kind == "shutdown_production":
            active = np.flatnonzero(self.order)
            a = int(active[int(rng.integers(active.size))])
        else:
            a = int(rng.integers(int(0.1 * n), int(0.8 * n)))
        b = min(n, a + length)
        if kind == "shutdown_production":
            stop = np.flatnonzero(~self.order[a:])
            b = min(b, a + int(stop[0])) if stop.size else b
        return [_Plan(kind, None if kind == "dropout" else metric, a, b)]

    def _explicit(self, inj: Injection) -> _Plan:
        ts = inj.start.timestamp()
        a = int(np.searchsorted(self.times, ts))
        length = max(1, round(inj.duration_s / self.step_s))
        b = min(self.times.size, a + length)
        metric = None if inj.kind == "dropout" else inj.metric
        return _Plan(inj.kind, metric, a, b, inj.level, inj.spread)

    # Series -----------------------------------------------------------------

    def _device(
        self, device: Device, plans: list[_Plan], truth: list[TruthEvent]
    ) -> DeviceSeries:
        n = self.times.size
        present = np.ones(n, dtype=np.bool_)
        values: dict[Metric, FloatArray] = {}
        for metric in device.metrics:
            rng = self.rng(device.id, metric.value)
            mine = [p for p in plans if p.metric is metric]
            if METRICS[metric].counter:
                values[metric] = self._counter(device, metric, rng, mine, truth)
            else:
                values[metric] = self._instant(device, metric, rng, mine, truth)
        for plan in plans:
            if plan.kind == "dropout":
                present[plan.a : plan.b] = False
                self._label(
                    truth, plan, device, {"samples": plan.b - plan.a}, metric=None
                )
        return DeviceSeries(self.enterprise.id, device.id, values, present)

    def _label(
        self,
        truth: list[TruthEvent],
        plan: _Plan,
        device: Device,
        params: Mapping[str, float | str],
        *,
        metric: Metric | None,
    ) -> None:
        truth.append(
            TruthEvent(
                plan.kind,
                self.enterprise.id,
                device.id,
                metric,
                float(self.times[plan.a]),
                float(self.times[plan.b - 1]),
                params,
            )
        )

    def _base(
        self, metric: Metric, rng: np.random.Generator
    ) -> tuple[FloatArray, float]:
        """The undisturbed series of an instant metric and its typical scale."""
        n = self.times.size
        act, slow, t = self.activity, self.slow_activity, self.times
        noise = rng.standard_normal(n)
        phase = float(rng.uniform(0, 2 * np.pi))
        if metric is Metric.POWER_KW:
            peak = self.power_kw
            idle = peak * self.idle_share
            # Shorter, slower wander of the load while producing.
            period = float(rng.uniform(3, 9)) * _HOUR
            wander = 0.04 * np.sin(2 * np.pi * t / period + phase)
            level = idle + (peak - idle) * act * (1.0 + wander)
            return level + noise * 0.012 * peak * (0.2 + act), peak
        if metric is Metric.TEMPERATURE_C:
            ambient = 18.0 + 5.0 * np.sin(2 * np.pi * t / _DAY + phase)
            # A hazardous-chemicals plant runs below the 150 degC limit the
            # shipped rule watches (hazchem-temperature-limit); others up to 180.
            hottest = 130.0 if self.enterprise.hazardous_chemicals else 180.0
            setpoint = float(rng.uniform(60.0, hottest))
            return ambient + (setpoint - ambient) * slow + noise * 0.4, 0.3 * setpoint
        if metric is Metric.PRESSURE_MPA:
            # Likewise below the 1.6 MPa limit of hazchem-pressure-limit: a
            # set point drawn up to 1.6 crossed it with its noise every day
            # (HC012 of seed 0's anomaly-free fleet, 6 false warnings a week).
            highest = 1.4 if self.enterprise.hazardous_chemicals else 1.6
            setpoint = float(rng.uniform(0.4, highest))
            idle = 0.05 * setpoint
            level = idle + (setpoint - idle) * slow
            return level + noise * 0.008 * setpoint, 0.5 * setpoint
        if metric is Metric.COMBUSTIBLE_GAS_LEL:
            base = float(rng.uniform(0.0, 1.5))
            return base + np.abs(noise) * 0.3, 30.0
        if metric is Metric.TOXIC_GAS_PPM:
            base = float(rng.uniform(0.0, 2.0))
            return base + np.abs(noise) * 0.3, 20.0
        # Tank level: filled and drawn down over a few hours.
        period = float(rng.uniform(6, 14)) * _HOUR
        middle = float(rng.uniform(40, 60))
        return middle + 25.0 * np.sin(
            2 * np.pi * t / period + phase
        ) + noise * 0.3, 30.0

    def _instant(
        self,
        device: Device,
        metric: Metric,
        rng: np.random.Generator,
        plans: list[_Plan],
        truth: list[TruthEvent],
    ) -> FloatArray:
        values, scale = self._base(metric, rng)
        arng = self.rng(device.id, metric.value, "inject")
        # Stuck last: a frozen sensor hides whatever else happens under it.
        labels: list[tuple[_Plan, dict[str, float | str]]] = []
        for plan in sorted(plans, key=lambda p: p.kind == "stuck"):
            span = slice(plan.a, plan.b)
            length = plan.b - plan.a
            params: dict[str, float | str] = {}
            if plan.kind == "spike":
                delta = scale * float(arng.uniform(0.6, 1.2))
                values[span] += delta
                params = {"delta": round(delta, 3)}
            elif plan.kind == "level_shift":
                delta = scale * float(arng.uniform(0.3, 0.6))
                values[span] += delta
                params = {"delta": round(delta, 3)}
            elif plan.kind == "drift":
                total = scale * float(arng.uniform(0.3, 0.6))
                values[span] += total * (np.arange(1, length + 1) / length)
                hours = length * self.step_s / _HOUR
                params = {"total": round(total, 3), "per_h": round(total / hours, 4)}
            elif plan.kind == "gas_leak_ramp":
                params = self._gas_leak(values, plan, arng)
            elif plan.kind == "shutdown_production":
                params = self._shutdown_params(plan)
            elif plan.kind == "hover":
                params = _hover(values, plan, arng)
            elif plan.kind == "stuck":
                values[span] = values[plan.a]
            labels.append((plan, params))
        bounded = metric in (Metric.COMBUSTIBLE_GAS_LEL, Metric.LEVEL_PCT)
        upper = 100.0 if bounded else None
        values = np.asarray(np.round(np.clip(values, 0.0, upper), 3), np.float64)
        for plan, params in labels:
            if plan.kind == "stuck":
                params["value"] = float(values[plan.a])
            self._label(truth, plan, device, params, metric=metric)
        return values

    def _shutdown_params(self, plan: _Plan) -> dict[str, float | str]:
        # The middle of the span: its label starts before the order may.
        middle = (plan.a + plan.b) // 2
        moment = datetime.fromtimestamp(float(self.times[middle]), UTC)
        order = self.enterprise.shutdown_order_at(moment)
        return {
            "order_id": order.order_id if order is not None else "",
            "level_kw": round(self.power_kw, 1),
        }

    def _gas_leak(
        self, values: FloatArray, plan: _Plan, rng: np.random.Generator
    ) -> dict[str, float | str]:
        """Ramp up to a peak past 50 %LEL, hold, fall back; 45/25/30 % of the
        span."""
        length = plan.b - plan.a
        rise = max(1, int(0.45 * length))
        hold = int(0.25 * length)
        fall = length - rise - hold
        peak = float(rng.uniform(55.0, 85.0))
        shape = np.concatenate(
            [
                peak * np.arange(1, rise + 1) / rise,
                np.full(hold, peak),
                peak * (1.0 - np.arange(1, fall + 1) / (fall + 1)),
            ]
        )
        span = slice(plan.a, plan.b)
        values[span] = np.maximum(values[span], shape)
        params: dict[str, float | str] = {"peak": round(peak, 2)}
        for level in (25, 50):
            above = np.flatnonzero(values[span] >= level)
            if above.size:
                params[f"crosses_{level}"] = iso_utc(
                    float(self.times[plan.a + int(above[0])])
                )
        return params

    def _rate(self, metric: Metric, rng: np.random.Generator) -> FloatArray:
        """Consumption per hour of a counter metric (kWh/h or m3/h), >= 0."""
        n = self.times.size
        noise = rng.standard_normal(n)
        act = self.activity
        if metric is Metric.ENERGY_KWH:
            # The register integrates the real load, which anomalies of the
            # power_kw reading (a sensor fault) do not change.
            peak = self.power_kw
            idle = peak * self.idle_share
            level = idle + (peak - idle) * act
            rate = level + noise * 0.01 * peak * (0.2 + act)
        else:
            scale = self.power_kw / (40.0 if metric is Metric.WATER_M3 else 120.0)
            registered = self.enterprise.idle_load.get(metric)
            if registered is not None:
                idle = registered
            else:
                idle = 0.0 if self.closed else 0.03 * scale
            rate = idle + scale * act * (1.0 + 0.15 * noise)
        clipped: FloatArray = np.clip(rate, 0.0, None)
        return clipped

    def _counter(
        self,
        device: Device,
        metric: Metric,
        rng: np.random.Generator,
        plans: list[_Plan],
        truth: list[TruthEvent],
    ) -> FloatArray:
        increments = self._rate(metric, rng) * self.step_s / _HOUR
        arng = self.rng(device.id, metric.value, "inject")
        stuck = np.zeros(self.times.size, dtype=np.bool_)
        for plan in plans:
            span = slice(plan.a, plan.b)
            if not increments[span].any():
                # Nothing flows (a closed site's water or gas): a shift or a
                # frozen register changes no reading, so it is no anomaly
                # and gets no label.
                continue
            if plan.kind == "level_shift":
                factor = float(arng.uniform(2.0, 4.0))
                increments[span] *= factor
                self._label(
                    truth, plan, device, {"factor": round(factor, 3)}, metric=metric
                )
            elif plan.kind == "stuck":
                # A frozen register: what flowed meanwhile is never counted.
                increments[span] = 0.0
                stuck[span] = True
                self._label(truth, plan, device, {}, metric=metric)
        capacity = _CAPACITY[metric]
        decimals = _DECIMALS[metric]
        erng = self.rng(device.id, metric.value, "counter")
        consumed = float(increments.sum())
        if erng.random() < self.counter_event_rate and 0 < consumed < capacity:
            initial = capacity - consumed * float(erng.uniform(0.2, 0.8))
        else:
            initial = capacity * float(erng.uniform(0.01, 0.6))
        total = initial + np.cumsum(increments)
        n = self.times.size
        reset = -1
        if n >= 20 and erng.random() < self.counter_event_rate:
            candidate = int(erng.integers(int(0.05 * n), int(0.95 * n)))
            if not stuck[candidate]:
                reset = candidate
                total[reset:] -= total[reset]
        reading = np.mod(np.round(total, decimals), capacity)
        reading = np.asarray(np.round(reading, decimals), np.float64)
        reading[reading >= capacity] -= capacity
        for i in np.flatnonzero(np.diff(reading) < 0) + 1:
            before, after = float(reading[i - 1]), float(reading[i])
            kind = "counter_reset" if i == reset else "rollover"
            params: dict[str, float | str] = {"before": before, "after": after}
            if kind == "rollover":
                params["capacity"] = capacity
            self._counter_event(
                truth=truth,
                device=device,
                metric=metric,
                kind=kind,
                index=int(i),
                params=params,
            )
        if reset > 0 and not reading[reset] < reading[reset - 1]:
            params = {"before": float(reading[reset - 1]), "after": 0.0}
            self._counter_event(
                truth=truth,
                device=device,
                metric=metric,
                kind="counter_reset",
                index=reset,
                params=params,
            )
        return reading

    def _counter_event(
        self,
        *,
        truth: list[TruthEvent],
        device: Device,
        metric: Metric,
        kind: str,
        index: int,
        params: Mapping[str, float | str],
    ) -> None:
        ts = float(self.times[index])
        truth.append(
            TruthEvent(kind, self.enterprise.id, device.id, metric, ts, ts, params)
        )
