"""Labelled fleet scenarios: the worker's scoring path against ground truth.

A fleet from :mod:`simulators.fleet` (with labelled anomalies) is replayed
offline in device-time order, the readings of each grid time as one batch,
through :func:`stream_jobs.processing.process_batch`, which the Faust scoring
agent runs on its batches; the silence timer is emulated on the device clock with
:func:`stream_jobs.processing.silence` (checked at every grid time, where the
worker checks every ``SILENCE_SCAN_S`` of wall time). The warnings the rules
open are then matched to the ground truth:

* an anomaly event is *detected* when a warning for its enterprise and device
  (and its metric, when the event has one; a dropout silences the whole
  device and has none) is opened between the event's first affected sample
  and its last one plus a grace period; production during a shutdown order
  is an enterprise's event, detected by a warning on any metric production
  drives (power, consumption, process temperature and pressure);
* a warning that matches no event is a *false warning*. Counter resets and
  rollovers are normal meter behaviour, not events, so a warning raised by
  one is false.

Times are device times: a warning is *opened* at its ``detection_time`` (the
reading that opened it), and the detection delay of an event is the
detection time of its earliest matching warning minus the event's start.
Only openings count: a warning already open when an event starts (opened
earlier, for another reason, and not yet resolved) does not detect it. With
the sample registry the ``power-during-shutdown-order`` rule is such a
warning: the simulator's idle load under an order (17 to 59 kW) is above its
5 kW, so it opens at the first readings and stays open through the event,
which is then found by the consumption and spike rules.

The first ``warmup_days`` of the window are the learning period, left out of
the score: by default the fleet's first week (Monday 2026-11-02 to Sunday
2026-11-08), so the detectors have seen each kind of day once (workdays, the
rest days of sites that rest, their first start-up after a rest day) before
the second week, Monday 2026-11-09 to Sunday 2026-11-15, is scored: 7 days of
231 devices (the default 60 enterprises), 1,617 device-days, a weekend
included. (The daily profile settles in about three days of 5-minute
readings; a site's off-shift profile judges a half hour once it has two
days of it that agree, see :mod:`stream_jobs.detectors`: a site resting on
Sundays only has its scored Sunday judged by the level detectors.) Events
starting in the learning period, warnings opened in it, and warnings
matching only an event that started in it are not counted either way.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from alert_rules import WarningRecord
from alert_rules.warning import WarningStatus
from riskwatch.contracts import Measurement, Metric, ReadingRecord
from riskwatch.registry import Enterprise
from simulators.fleet import ANOMALY_KINDS, Fleet, TruthEvent, generate_fleet
from simulators.readings import Reading
from stream_jobs.processing import DeviceState, Rules, process_batch, silence

__all__ = [
    "DEFAULT_START",
    "KindResult",
    "MatchResult",
    "Opened",
    "RuleResult",
    "ScenarioConfig",
    "ScenarioReport",
    "format_report",
    "match_warnings",
    "reading_record",
    "replay_fleet",
    "run_scenarios",
]

# A fixed Monday, so that the same options give the same fleet on every run.
DEFAULT_START = datetime(2026, 11, 2, tzinfo=UTC)
_DAY_S = 86400.0
_NS = 1_000_000_000

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Opened:
    """A warning when it was opened (times in epoch seconds, device time)."""

    rule_id: str
    enterprise: str
    device: str
    metric: Metric
    start_s: float
    detection_s: float

    @classmethod
    def of(cls, record: WarningRecord) -> Opened:
        if record.metric is None:
            # Only the worker's feed warnings have none; the bench runs rules.
            raise ValueError(f"warning {record.id}: a feed warning in the bench")
        return cls(
            rule_id=record.rule_id,
            enterprise=record.enterprise_id,
            device=record.device_id,
            metric=record.metric,
            start_s=record.start_time.timestamp(),
            detection_s=record.detection_time.timestamp(),
        )


@dataclass(frozen=True)
class KindResult:
    """Events of one anomaly kind: how many, how many detected, and the
    detection delays (seconds) of the detected ones."""

    kind: str
    events: int
    detected: int
    delays_s: tuple[float, ...] = ()

    @property
    def recall(self) -> float:
        return self.detected / self.events if self.events else math.nan

    @property
    def median_delay_s(self) -> float:
        return statistics.median(self.delays_s) if self.delays_s else math.nan


@dataclass(frozen=True)
class RuleResult:
    """Warnings opened by one rule and how many of them matched an event."""

    rule_id: str
    warnings: int
    matched: int

    @property
    def precision(self) -> float:
        return self.matched / self.warnings if self.warnings else math.nan


@dataclass(frozen=True)
class MatchResult:
    """Warnings matched against the ground truth of one fleet."""

    kinds: dict[str, KindResult]
    rules: dict[str, RuleResult]
    device_days: float
    # False warnings per (rule, metric): where the noise comes from.
    false_by: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def events(self) -> int:
        return sum(k.events for k in self.kinds.values())

    @property
    def detected(self) -> int:
        return sum(k.detected for k in self.kinds.values())

    @property
    def warnings(self) -> int:
        return sum(r.warnings for r in self.rules.values())

    @property
    def matched_warnings(self) -> int:
        return sum(r.matched for r in self.rules.values())

    @property
    def false_warnings(self) -> int:
        return self.warnings - self.matched_warnings

    @property
    def recall(self) -> float:
        return self.detected / self.events if self.events else math.nan

    @property
    def precision(self) -> float:
        return self.matched_warnings / self.warnings if self.warnings else math.nan

    @property
    def false_per_100_device_days(self) -> float:
        return 100.0 * self.false_warnings / self.device_days


# Production during a shutdown order raises the enterprise's whole
# consumption (the simulator drives every meter from one activity) and its
# process temperatures and pressures (which follow it with a lag), so a
# warning on any of them detects it.
_PRODUCTION_METRICS = frozenset(
    {
        Metric.POWER_KW,
        Metric.ENERGY_KWH,
        Metric.WATER_M3,
        Metric.GAS_M3,
        Metric.TEMPERATURE_C,
        Metric.PRESSURE_MPA,
    }
)


def _matches(event: TruthEvent, warning: Opened, grace_s: float) -> bool:
    if not event.start_s <= warning.detection_s <= event.end_s + grace_s:
        return False
    if warning.enterprise != event.enterprise:
        return False
    if event.kind == "shutdown_production":
        return warning.metric in _PRODUCTION_METRICS
    return warning.device == event.device and (
        event.metric is None or warning.metric is event.metric
    )


def match_warnings(
    truth: Iterable[TruthEvent],
    warnings: Iterable[Opened],
    *,
    device_days: float,
    grace_s: float = 3600.0,
    scored_from_s: float = -math.inf,
) -> MatchResult:
    """Match opened warnings to anomaly events (see the module docstring).

    Args:
        truth: the fleet's ground truth; counter events are not anomalies and
            are ignored.
        warnings: each warning once, as it was opened.
        device_days: devices times scored days, the denominator of the
            false-warning rate.
        grace_s: how long after an event's last sample a warning still
            counts as detecting it.
        scored_from_s: the end of the warm-up (epoch seconds): earlier events
            and warnings are not counted.

    Raises:
        ValueError: ``device_days`` is not positive or ``grace_s`` negative.
    """
    if device_days <= 0:
        raise ValueError(f"device_days must be > 0, got {device_days}")
    if grace_s < 0:
        raise ValueError(f"grace_s must be >= 0, got {grace_s}")
    anomalies = [e for e in truth if e.kind in ANOMALY_KINDS]
    scored = [e for e in anomalies if e.start_s >= scored_from_s]
    warmup = [e for e in anomalies if e.start_s < scored_from_s]
    # Keyed by position: a TruthEvent holds a dict and does not hash.
    delays: dict[int, float] = {}
    rules: dict[str, list[int]] = {}
    false_by: dict[tuple[str, str], int] = {}
    for warning in warnings:
        if warning.detection_s < scored_from_s:
            continue
        hits = [i for i, e in enumerate(scored) if _matches(e, warning, grace_s)]
        if not hits and any(_matches(e, warning, grace_s) for e in warmup):
            continue  # the tail of an event the score leaves out
        counts = rules.setdefault(warning.rule_id, [0, 0])
        counts[0] += 1
        counts[1] += bool(hits)
        if not hits:
            where = (warning.rule_id, warning.metric.value)
            false_by[where] = false_by.get(where, 0) + 1
        for i in hits:
            delay = warning.detection_s - scored[i].start_s
            delays[i] = min(delay, delays.get(i, math.inf))
    kinds: dict[str, KindResult] = {}
    for kind in ANOMALY_KINDS:
        events = [i for i, e in enumerate(scored) if e.kind == kind]
        found = [delays[i] for i in events if i in delays]
        kinds[kind] = KindResult(kind, len(events), len(found), tuple(found))
    return MatchResult(
        kinds=kinds,
        rules={r: RuleResult(r, n, m) for r, (n, m) in sorted(rules.items())},
        device_days=device_days,
        false_by=dict(sorted(false_by.items(), key=lambda item: -item[1])),
    )


def replay_fleet(
    fleet: Fleet,
    enterprises: Sequence[Enterprise],
    rules: Rules,
    *,
    silent_after_s: float,
    progress: Progress | None = None,
) -> tuple[list[Opened], int]:
    """Every reading of ``fleet`` through the worker's scoring path.

    State is kept per device in a dict, as the Faust table keeps it. Before
    the readings of each grid time, devices not heard from for
    ``silent_after_s`` seconds of device time go through the silence path.

    Returns:
        The warnings opened (each once, in the order they were opened) and
        the number of readings replayed.
    """
    registry = {e.id: e for e in enterprises}
    states: dict[tuple[str, str], DeviceState] = {}
    # The device records of grouped rules are members of a group warning
    # (alert_rules/grouping.py), never delivered: not counted here.
    opened = _Opened(
        skip=frozenset(r.id for r in getattr(rules, "rules", ()) if r.scope.grouped)
    )
    total = fleet.message_count()
    done = 0
    clock_s = -math.inf
    report_every = max(1, total // 10)
    batch: list[ReadingRecord] = []

    def score(batch: list[ReadingRecord]) -> None:
        # The readings of one grid time, as the worker takes them: a batch.
        nonlocal done
        owners = {r.key: (r.enterprise, r.device) for r in batch}
        outcomes = process_batch(
            batch, lambda key: states.get(owners[key]), registry.get, rules
        )
        for record, outcome in zip(batch, outcomes, strict=True):
            states[owners[record.key]] = outcome.state
            _collect(outcome.warnings, opened)
            done += 1
            if progress is not None and done % report_every == 0:
                progress(f"  readings={done}/{total} warnings={len(opened)}")

    for reading in fleet.readings():
        if reading.ts_s != clock_s:
            score(batch)
            batch = []
            clock_s = reading.ts_s
            _find_silent(states, clock_s, silent_after_s, registry, rules, opened)
        batch.append(reading_record(reading))
    score(batch)
    return list(opened.values()), done


def reading_record(reading: Reading) -> ReadingRecord:
    """A simulated reading as the gateway would record it, arriving at its
    device time (offline, arrival time is device time)."""
    ts_ns = round(reading.ts_s * _NS)
    return ReadingRecord(
        enterprise=reading.enterprise,
        device=reading.device,
        ts_ns=ts_ns,
        seq=reading.seq,
        metrics=[Measurement(metric=m, value=v) for m, v in reading.values],
        received_ns=ts_ns,
    )


def _find_silent(
    states: dict[tuple[str, str], DeviceState],
    now_s: float,
    silent_after_s: float,
    registry: dict[str, Enterprise],
    rules: Rules,
    opened: _Opened,
) -> None:
    now_ns = round(now_s * _NS)
    for (enterprise, device), state in states.items():
        if state["silent"] or state["last_ts"] is None:
            continue
        if (now_ns - state["last_seen_ns"]) / _NS < silent_after_s:
            continue
        # Offline, arrival time is device time, so the worker's
        # last_ts + (wall - last_seen) is simply now.
        outcome = silence(
            enterprise, device, state, now_ns, registry.get(enterprise), rules
        )
        states[(enterprise, device)] = outcome.state
        _collect(outcome.warnings, opened)


class _Opened(dict[str, Opened]):
    """The warnings opened, by id; those of the rules in ``skip`` left out."""

    def __init__(self, skip: frozenset[str]) -> None:
        super().__init__()
        self.skip = skip


def _collect(records: Iterable[object], opened: _Opened) -> None:
    for record in records:
        if (
            isinstance(record, WarningRecord)
            and record.status is WarningStatus.OPEN
            and record.id not in opened
            and record.rule_id not in opened.skip
        ):
            opened[record.id] = Opened.of(record)


@dataclass(frozen=True)
class ScenarioConfig:
    """What fleet to generate; see ``riskwatch bench scenarios --help``."""

    enterprises: Sequence[Enterprise]
    days: float = 7.0
    warmup_days: float = 7.0
    step_s: float = 300.0
    seed: int = 0
    anomaly_rate: float = 1.0
    grace_s: float = 3600.0
    start: datetime = DEFAULT_START


@dataclass(frozen=True)
class FleetRun:
    """One fleet replayed and scored."""

    name: str
    result: MatchResult
    readings: int
    elapsed_s: float


@dataclass(frozen=True)
class ScenarioReport:
    labelled: FleetRun
    clean: FleetRun
    config: ScenarioConfig
    devices: int = 0


def run_scenarios(
    config: ScenarioConfig,
    rules_factory: Callable[[], Rules],
    *,
    silent_after_s: float,
    progress: Progress | None = None,
) -> ScenarioReport:
    """Replay a labelled fleet and the same fleet without anomalies.

    ``rules_factory`` builds fresh rules for each fleet, so that no rule
    state crosses from one to the other.

    Raises:
        ValueError: a non-positive ``days`` or a negative ``warmup_days``
            (and whatever :func:`simulators.fleet.generate_fleet` refuses).
    """
    if config.days <= 0:
        raise ValueError(f"days must be > 0, got {config.days}")
    if config.warmup_days < 0:
        raise ValueError(f"warmup_days must be >= 0, got {config.warmup_days}")
    scored_from = config.start + timedelta(days=config.warmup_days)
    end = scored_from + timedelta(days=config.days)
    runs = []
    devices = 0
    for name, rate in (("labelled", config.anomaly_rate), ("anomaly-free", 0.0)):
        started = time.monotonic()
        fleet = generate_fleet(
            config.enterprises,
            start=config.start,
            end=end,
            step_s=config.step_s,
            seed=config.seed,
            anomaly_rate=rate,
        )
        devices = len(fleet.series)
        if progress is not None:
            progress(
                f"{name} fleet: devices={devices} readings={fleet.message_count()}"
            )
        opened, readings = replay_fleet(
            fleet,
            config.enterprises,
            rules_factory(),
            silent_after_s=silent_after_s,
            progress=progress,
        )
        result = match_warnings(
            fleet.truth,
            opened,
            device_days=devices * config.days,
            grace_s=config.grace_s,
            scored_from_s=scored_from.timestamp(),
        )
        runs.append(FleetRun(name, result, readings, time.monotonic() - started))
    return ScenarioReport(
        labelled=runs[0], clean=runs[1], config=config, devices=devices
    )


def _ratio(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def _minutes(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds / 60:.1f}"


def format_report(report: ScenarioReport) -> str:
    """The printed tables: per anomaly kind, per rule, and the summary."""
    labelled = report.labelled.result
    clean = report.clean.result
    config = report.config
    learn_end = config.start + timedelta(days=config.warmup_days)
    score_end = learn_end + timedelta(days=config.days)
    lines = [
        f"learning period: {config.warmup_days:g} days from "
        f"{config.start:%a %Y-%m-%d %H:%M} UTC, not scored; scored: "
        f"{config.days:g} days from {learn_end:%a %Y-%m-%d %H:%M} to "
        f"{score_end:%a %Y-%m-%d %H:%M} UTC",
        f"fleet: enterprises={len(config.enterprises)} devices={report.devices} "
        f"step_s={config.step_s:g} seed={config.seed} "
        f"anomaly_rate={config.anomaly_rate:g} warmup_days={config.warmup_days:g} "
        f"scored_days={config.days:g} device_days={labelled.device_days:g} "
        f"grace_s={config.grace_s:g}",
        "delay = warning detection_time - event start (device time), minutes",
        "",
        f"{'kind':<20} {'events':>6} {'detected':>8} {'recall':>7} "
        f"{'median_delay_min':>16}",
    ]
    for kind in labelled.kinds.values():
        lines.append(
            f"{kind.kind:<20} {kind.events:>6} {kind.detected:>8} "
            f"{_ratio(kind.recall):>7} {_minutes(kind.median_delay_s):>16}"
        )
    lines.append(
        f"{'all':<20} {labelled.events:>6} {labelled.detected:>8} "
        f"{_ratio(labelled.recall):>7}"
    )
    lines += [
        "",
        "precision per rule (a false warning has no anomaly kind)",
        f"{'rule':<32} {'warnings':>8} {'matched':>7} {'precision':>9}",
    ]
    for rule in labelled.rules.values():
        lines.append(
            f"{rule.rule_id:<32} {rule.warnings:>8} {rule.matched:>7} "
            f"{_ratio(rule.precision):>9}"
        )
    lines.append(
        f"{'all':<32} {labelled.warnings:>8} {labelled.matched_warnings:>7} "
        f"{_ratio(labelled.precision):>9}"
    )
    lines += [
        "",
        f"{'fleet':<14} {'readings':>9} {'recall':>7} {'precision':>9} "
        f"{'warnings':>8} {'false':>6} {'false/100dd':>11} {'elapsed_s':>9}",
    ]
    for run in (report.labelled, report.clean):
        result = run.result
        lines.append(
            f"{run.name:<14} {run.readings:>9} {_ratio(result.recall):>7} "
            f"{_ratio(result.precision):>9} {result.warnings:>8} "
            f"{result.false_warnings:>6} "
            f"{result.false_per_100_device_days:>11.2f} {run.elapsed_s:>9.1f}"
        )
    lines += [
        "",
        "false warnings on the anomaly-free fleet by rule and metric",
        f"{'rule':<32} {'metric':<20} {'false':>6}",
    ]
    for (rule_id, metric), count in clean.false_by.items():
        lines.append(f"{rule_id:<32} {metric:<20} {count:>6}")
    lines += [
        "",
        "targets (issue 4): recall >= 0.95, precision >= 0.95, "
        "<= 1 false warning per 100 device-days on the anomaly-free fleet",
        f"met: recall={_met(labelled.recall >= 0.95)} "
        f"precision={_met(labelled.precision >= 0.95)} "
        f"false_rate={_met(clean.false_per_100_device_days <= 1.0)}",
    ]
    return "\n".join(lines)


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"
