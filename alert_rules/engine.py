"""The rule engine: observations in, warning records out, state kept by the caller.

The engine is pure and deterministic. It does no I/O and reads no clock: every
time it uses comes from the observations (event time) or from the optional
``now`` the caller passes. The caller keeps one state per device (a small
JSON-serialisable dict) and hands it back with the next observation of the
same device, which is what a Faust table keyed by ``<enterprise>/<device>``
does.

Per rule and metric stream the engine runs this state machine, in event time::

    (idle) --when holds--> pending --held `for`--> open  (emits status open)
    open --clear holds--> clearing --held `clear_for`--> (idle) (emits resolved)
    clearing --clear fails--> open

Flap detection (``Rule.flap``) counts the changes of each rule and subject in
event time (``when`` holding, then ``clear`` holding, and back: the opening
and the start of a clear are changes) in a change log that outlives its
warnings. At ``flap.changes`` within
``flap.window`` the open warning is marked flapping (a version of its own)
and resolves only once its clear has held for ``flap.stable_for``.

A run (pending or clearing) is broken, and starts again at the next reading
that qualifies, by a reading that does not qualify, by a reading with no
evidence (a silence for a value rule) or by two qualifying readings more than
``max_gap`` apart: a gap in the data is not evidence.

Escalation steps (``Rule.escalate``) run beside it on the same readings, from
the first reading of the pending run: each step is met once its condition has
held on such an unbroken run for its ``after``, and stops being met once its
``clear`` has held for its ``clear_for``. While the warning is open the level
is the most severe of the rule's and the met steps'; a change emits a new
version of the same warning. A de-escalation waits while the warning is
clearing: if it resolves, the resolution says it all.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alert_rules._base import format_duration, to_ns
from alert_rules.conditions import Context, negate
from alert_rules.rule import EscalationStep, Level, Rule, ScopeKind
from alert_rules.warning import (
    AuditEntry,
    Evidence,
    LevelEntry,
    Officer,
    WarningItem,
    WarningRecord,
    WarningScope,
    WarningStatus,
    warning_id,
)
from riskwatch.contracts import METRICS, NS_PER_S, Observation
from riskwatch.errors import ConfigError
from riskwatch.registry import Enterprise

logger = logging.getLogger(__name__)

ENGINE_ACTOR = "riskwatch-rules"
"""The ``by`` of the audit entries the engine writes."""

_DETAIL_CHARS = 200  # keeps each stored track small whatever detectors write


class _StepRun(BaseModel):
    """Where one escalation step stands: its run, and whether it is met.

    ``start`` is the first reading of the unbroken run meeting the step's
    condition (None: no run), ``last`` the latest reading seen while a run
    or a met step lasts (for the ``max_gap`` check), ``clear_start`` the
    first reading of a run meeting the step's clear condition.
    """

    model_config = ConfigDict(extra="forbid")

    start: int | None = None
    last: int | None = None
    met: bool = False
    clear_start: int | None = None


class _LevelMark(BaseModel):
    """One level of the warning: from which reading (``at``, event time),
    issued when (``issued``: ``now`` or the event time), and why."""

    model_config = ConfigDict(extra="forbid")

    level: Level
    at: int
    issued: int
    reason: str


class _FlapMark(BaseModel):
    """When the warning was marked flapping: from which reading (``at``),
    issued when, after how many of its level marks (0: at the opening), why."""

    model_config = ConfigDict(extra="forbid")

    at: int
    issued: int
    after: int
    reason: str


class _FlapLog(BaseModel):
    """The recent changes of one rule on one metric stream, for flap
    detection: the side the condition is on, and the event times of the last
    ``flap.changes`` changes within ``flap.window``."""

    model_config = ConfigDict(extra="forbid")

    firing: bool = False
    at: list[int] = Field(default_factory=list)


class _Track(BaseModel):
    """Where one rule stands on one metric stream of the device.

    Times are epoch nanoseconds, event time. ``issued`` is the caller's
    ``now`` when one was given, else the detection time. ``steps`` and
    ``levels`` default to empty so that states written before escalation
    existed still read.
    """

    model_config = ConfigDict(extra="forbid")

    phase: Literal["pending", "open", "clearing"]
    start: int
    last: int
    clear_start: int | None = None
    detected: int | None = None
    issued: int | None = None
    observed: float | None = None
    expected: float | None = None
    unit: str = ""
    said: str = ""
    steps: list[_StepRun] = Field(default_factory=list)
    levels: list[_LevelMark] = Field(default_factory=list)
    flap: _FlapMark | None = None


class _DeviceState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    v: Literal[1] = 1
    # Per metric: the last reading's event time (older readings are late) and
    # the latest event time applied, silences included.
    last_seen: dict[str, int] = Field(default_factory=dict)
    clock: dict[str, int] = Field(default_factory=dict)
    tracks: dict[str, _Track] = Field(default_factory=dict)
    # Per track key: its recent changes (flap detection); bounded by
    # Flap.changes each, dropped once they are older than the window.
    flaps: dict[str, _FlapLog] = Field(default_factory=dict)


def _moment(ns: int) -> datetime:
    seconds, rest = divmod(ns, NS_PER_S)
    return datetime.fromtimestamp(seconds, tz=UTC) + timedelta(
        microseconds=rest // 1000
    )


def _ns(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return to_ns(delta)


def subject_of(observation: Observation) -> str:
    """The subject of a device-scope warning: one metric stream of one device."""
    return _subject(
        observation.enterprise, observation.device, observation.metric.value
    )


def _subject(enterprise: str, device: str, metric: str) -> str:
    return f"{enterprise}/{device}/{metric}"


class RuleEngine:
    """Evaluates rules on observations, one device at a time.

    Args:
        rules: the rules, e.g. from :func:`alert_rules.load_rules`. Disabled
            rules are skipped. A grouped rule (scope enterprise, grid or
            district) gives device-scope records like any other: they are
            its members, for :mod:`alert_rules.grouping`, not warnings to
            deliver.
        authority: the issuing authority written on every warning.

    Raises:
        ConfigError: two rules share an id.

    Example:
        >>> from alert_rules import RuleEngine, load_rules
        >>> engine = RuleEngine(load_rules(None), authority="Work Safety Office")
        >>> state: dict[str, object] = {}
        >>> # state, records = engine.evaluate(observation, enterprise, state)
    """

    def __init__(self, rules: Sequence[Rule], authority: str) -> None:
        seen: set[str] = set()
        for rule in rules:
            if rule.id in seen:
                raise ConfigError(f"rule id {rule.id!r} appears twice")
            seen.add(rule.id)
        self.authority = authority
        self.rules = tuple(rules)
        # A grouped rule (enterprise, grid, district) runs the same state
        # machine per device; its records are the group's members, which the
        # caller routes to the grouping stage (alert_rules/grouping.py).
        self._active = tuple(r for r in rules if r.enabled)
        self._ids = frozenset(r.id for r in self._active)

    def evaluate(
        self,
        observation: Observation,
        enterprise: Enterprise | None,
        state: dict[str, Any] | None,
        *,
        now: datetime | None = None,
    ) -> tuple[dict[str, Any], list[WarningRecord]]:
        """Apply one observation of a device.

        Args:
            observation: the scored reading or silence.
            enterprise: its enterprise from the registry, None if unknown.
            state: what this method returned for the same device last time;
                ``{}`` or None for a device never seen. Not modified.
            now: issue time to write on new records; None uses the event time
                of the observation that made the record (fully deterministic).

        Returns:
            The device's new state (JSON-serialisable: it survives
            ``json.loads(json.dumps(state))`` unchanged; bounded by rules x
            metrics) and the warning records to publish: ``open`` when a rule
            fires, ``resolved`` (same id) when its clear condition has held.
            A reading not newer than the last reading of the same device
            and metric changes nothing and yields nothing. A silence is never
            late, and does not count as a reading; an observation dated
            before the latest one applied (a silence dated by a worker clock
            that differs from the device's) is applied at that latest time.
        """
        current = self._load(state, observation.device)
        metric = observation.metric.value
        last = current.last_seen.get(metric)
        if (
            observation.kind == "reading"
            and last is not None
            and observation.ts_ns <= last
        ):
            logger.debug(
                "late observation ignored device=%s metric=%s ts_ns=%d last_ns=%d",
                observation.device,
                metric,
                observation.ts_ns,
                last,
            )
            return current.model_dump(), []
        if observation.kind == "reading":
            current.last_seen[metric] = observation.ts_ns
        observation = _placed(observation, current.clock.get(metric))
        current.clock[metric] = observation.ts_ns
        ctx = Context.of(observation, enterprise)
        records: list[WarningRecord] = []
        for rule in self._active:
            if not rule.select.matches(observation, enterprise):
                continue
            key = f"{rule.id}|{metric}"
            log = current.flaps.pop(key, None) or _FlapLog()
            track, record = self._step(rule, ctx, current.tracks.get(key), now, log)
            if track is None:
                current.tracks.pop(key, None)
            else:
                current.tracks[key] = track
            if log.at:
                current.flaps[key] = log
            if record is not None:
                records.append(record)
        return current.model_dump(), records

    def expire(
        self, state: dict[str, Any] | None, enterprise: str, device: str
    ) -> tuple[dict[str, Any], list[str]]:
        """Forget every warning of a device that stopped reporting for good.

        The caller expires the warnings through the lifecycle; the engine
        drops their tracks (and any pending run), so a device that comes back
        with the condition still met opens a new warning with a new id
        instead of being taken for one still open. The last reading times are
        kept: a late reading stays late.

        Args:
            state: the device's state, as :meth:`evaluate` returned it.
            enterprise: the device's enterprise id.
            device: the device id.

        Returns:
            The new state and the ids of the warnings that were open (or
            clearing), in track order.
        """
        current = self._load(state, device)
        ids = [
            warning_id(rule, _subject(enterprise, device, metric), track.start)
            for key, track in current.tracks.items()
            if track.phase != "pending"
            for rule, metric in [key.split("|", 1)]
        ]
        current.tracks.clear()
        current.flaps.clear()
        return current.model_dump(), ids

    # State ---------------------------------------------------------------

    def _load(self, state: dict[str, Any] | None, device: str) -> _DeviceState:
        try:
            current = _DeviceState.model_validate(state or {})
        except ValidationError as exc:
            # A state this version cannot read is dropped rather than stopping
            # the device's stream; its open warnings are forgotten.
            logger.warning(
                "unreadable rule state reset device=%s errors=%d",
                device,
                exc.error_count(),
            )
            return _DeviceState()
        for key in [k for k in current.flaps if k.split("|")[0] not in self._ids]:
            del current.flaps[key]
        for key in [k for k in current.tracks if k.split("|")[0] not in self._ids]:
            track = current.tracks.pop(key)
            if track.phase != "pending":
                logger.warning(
                    "open warning dropped with its rule device=%s track=%s",
                    device,
                    key,
                )
        return current

    # The state machine ---------------------------------------------------

    def _step(
        self,
        rule: Rule,
        ctx: Context,
        track: _Track | None,
        now: datetime | None,
        log: _FlapLog,
    ) -> tuple[_Track | None, WarningRecord | None]:
        ts = ctx.observation.ts_ns
        gap = to_ns(rule.max_gap)
        fires = rule.when.test(ctx)
        if track is None or track.phase == "pending":
            if fires is not True:
                return None, None
            if track is None or ts - track.last > gap:
                track = _Track(phase="pending", start=ts, last=ts)
            else:
                track.last = ts
            _advance_steps(rule, ctx, track)
            if ts - track.start < to_ns(rule.for_at(ctx.enterprise)):
                return track, None
            if _changed(rule, log, ts, firing=True):
                _mark_flapping(rule, track, log, ts, now, after=0)
            return track, self._open(rule, ctx, track, now)
        _advance_steps(rule, ctx, track)
        clears = rule.clear.test(ctx) if rule.clear is not None else negate(fires)
        if clears is not True:
            track.phase, track.clear_start, track.last = "open", None, ts
            # Only `when` holding again is a change: a value between `clear`
            # and `when` (hysteresis) or no evidence (a silence) is not.
            flips = fires is True and _changed(rule, log, ts, firing=True)
            flaps = flips and track.flap is None
            return track, self._update(rule, ctx, track, log, now, flaps, lower=True)
        if track.phase == "open" or ts - track.last > gap:
            track.phase, track.clear_start = "clearing", ts
        track.last = ts
        # Marked flapping, it is held open: its clear must hold for stable_for.
        flaps = _changed(rule, log, ts, firing=False) and track.flap is None
        clear_time = rule.clear_time(flapping=track.flap is not None or flaps)
        if flaps or ts - (track.clear_start or ts) < to_ns(clear_time):
            return track, self._update(rule, ctx, track, log, now, flaps, lower=False)
        if track.flap is not None:
            log.at.clear()  # it settled: the next episode starts afresh
        record = self._record(rule, ctx, track, resolved_ns=ts, now=now)
        logger.info(
            "warning resolved warning=%s rule=%s level=%s device=%s metric=%s",
            record.id,
            rule.id,
            record.level.value,
            record.device_id,
            record.metric,
        )
        return None, record

    def _update(
        self,
        rule: Rule,
        ctx: Context,
        track: _Track,
        log: _FlapLog,
        now: datetime | None,
        flaps: bool,
        *,
        lower: bool,
    ) -> WarningRecord | None:
        """The version an open warning's reading makes, if any: the flapping
        mark when ``flaps``, else a level change if one is due. A level
        change due at the reading that marks the warning flapping waits for
        the next reading."""
        if not flaps:
            return self._relevel(rule, ctx, track, now, lower=lower)
        ts = ctx.observation.ts_ns
        _mark_flapping(rule, track, log, ts, now, after=len(_marks(rule, track)))
        _observe(rule, ctx, track)
        record = self._record(rule, ctx, track, resolved_ns=None, now=now)
        logger.info(
            "warning flapping warning=%s rule=%s level=%s device=%s metric=%s "
            "changes=%d",
            record.id,
            rule.id,
            record.level.value,
            record.device_id,
            record.metric,
            len(log.at),
        )
        return record

    def _relevel(
        self,
        rule: Rule,
        ctx: Context,
        track: _Track,
        now: datetime | None,
        *,
        lower: bool,
    ) -> WarningRecord | None:
        """The version for a level change of an open warning, if one is due.

        Args:
            lower: whether a de-escalation may be applied now; False while
                the warning is clearing, so that a warning about to resolve
                does not first announce a lower level.
        """
        marks = _marks(rule, track)
        current = marks[-1].level
        target = _justified(rule, track)
        if target == current or (target.severity < current.severity and not lower):
            return None
        ts = ctx.observation.ts_ns
        if target.severity > current.severity:
            reason = (
                f"escalated {current.value} -> {target.value}: "
                f"{_why_up(rule, target, ctx.enterprise)}"
            )
        else:
            reason = (
                f"de-escalated {current.value} -> {target.value}: "
                f"{_why_down(rule, current)}"
            )
        issued = _ns(now) if now is not None else ts
        track.levels = [
            *marks,
            _LevelMark(level=target, at=ts, issued=issued, reason=reason),
        ]
        _observe(rule, ctx, track)
        record = self._record(rule, ctx, track, resolved_ns=None, now=now)
        logger.info(
            "warning level changed warning=%s rule=%s from_level=%s level=%s "
            "device=%s metric=%s reason=%s",
            record.id,
            rule.id,
            current.value,
            target.value,
            record.device_id,
            record.metric,
            reason,
        )
        return record

    def _open(
        self, rule: Rule, ctx: Context, track: _Track, now: datetime | None
    ) -> WarningRecord:
        obs = ctx.observation
        track.phase = "open"
        track.detected = obs.ts_ns
        track.issued = _ns(now) if now is not None else obs.ts_ns
        _observe(rule, ctx, track)
        level = _justified(rule, track)
        reason = f"opened: {rule.when.describe()}"
        if level != rule.level:
            # A step already met when the rule fires (a reading straight past
            # the second threshold): the office hears the higher level first.
            reason += f"; at {level.value}: {_why_up(rule, level, ctx.enterprise)}"
        track.levels = [
            _LevelMark(level=level, at=obs.ts_ns, issued=track.issued, reason=reason)
        ]
        record = self._record(rule, ctx, track, resolved_ns=None, now=now)
        logger.info(
            "warning opened warning=%s rule=%s level=%s device=%s metric=%s start=%s",
            record.id,
            rule.id,
            level.value,
            record.device_id,
            record.metric,
            record.start_time.isoformat(),
        )
        return record

    # Records -------------------------------------------------------------

    def _record(
        self,
        rule: Rule,
        ctx: Context,
        track: _Track,
        *,
        resolved_ns: int | None,
        now: datetime | None,
    ) -> WarningRecord:
        obs, enterprise = ctx.observation, ctx.enterprise
        detected = _moment(track.detected if track.detected is not None else obs.ts_ns)
        issued = _moment(track.issued) if track.issued is not None else detected
        flap = track.flap
        opening = f"rule {rule.id}: {rule.when.describe()}"
        if flap is not None and flap.after == 0:
            opening += f"; {flap.reason}"
        history = [engine_entry(issued, opening, from_status=None)]
        marks = _marks(rule, track)
        for index, (before, mark) in enumerate(itertools.pairwise(marks), start=1):
            if flap is not None and flap.after == index:
                history.append(_flap_entry(flap))
            history.append(
                engine_entry(
                    _moment(mark.issued),
                    mark.reason,
                    from_level=before.level,
                    level=mark.level,
                )
            )
        if flap is not None and flap.after >= len(marks):
            history.append(_flap_entry(flap))
        level = marks[-1].level
        status = WarningStatus.OPEN
        # A level change is issued anew, and valid from then on.
        issued = history[-1].at
        valid_until = issued + rule.valid_for
        resolved: datetime | None = None
        if resolved_ns is not None:
            # The update is issued when the clear was confirmed; it is no
            # longer valid from then on.
            resolved = _moment(resolved_ns)
            status, valid_until = WarningStatus.RESOLVED, now or resolved
            clear = rule.clear.describe() if rule.clear else "condition no longer met"
            history.append(
                engine_entry(valid_until, f"cleared: {clear}", status=status)
            )
        said = track.said
        if flap is not None:
            said += f" [{flap.reason}]"
        item = WarningItem(
            observed=said,
            expected=rule.expected,
            observed_value=track.observed,
            expected_value=track.expected,
            unit=track.unit,
            evidence=Evidence.model_validate(
                {
                    "device": obs.device,
                    "metric": obs.metric,
                    "from": _moment(track.start),
                    "to": resolved or detected,
                }
            ),
            action=_action(rule, level),
        )
        return WarningRecord(
            id=warning_id(rule.id, subject_of(obs), track.start),
            rule_id=rule.id,
            title=rule.title,
            level=level,
            colour=level.colour,
            status=status,
            scope=WarningScope(
                kind=ScopeKind.DEVICE, id=obs.device, name=_device_name(ctx)
            ),
            start_time=_moment(track.start),
            detection_time=detected,
            issue_time=issued if resolved is None else valid_until,
            valid_until=valid_until,
            resolved_time=resolved,
            items=[item],
            enterprise_id=obs.enterprise,
            enterprise_name=enterprise.name if enterprise else None,
            device_id=obs.device,
            metric=obs.metric,
            district=enterprise.district if enterprise else None,
            grid=enterprise.grid if enterprise else None,
            officer=Officer(
                id=enterprise.officer.id,
                name=enterprise.officer.name,
                phone=enterprise.officer.phone,
            )
            if enterprise
            else None,
            authority=self.authority,
            history=history,
            levels=[
                LevelEntry.model_validate(
                    {"level": m.level, "from": _moment(m.at), "reason": m.reason}
                )
                for m in marks
            ],
            flapping=flap is not None,
            finding=rule.finding,
        )


def _changed(rule: Rule, log: _FlapLog, ts: int, *, firing: bool) -> bool:
    """Note the condition on the ``firing`` side at ``ts``; True when the
    changes within the rule's flap window now make a flap.

    The log keeps only the last ``flap.changes`` changes, and none older
    than the window, so its size is bounded whatever the data does.
    """
    if rule.flap is None:
        return False
    window = to_ns(rule.flap.window)
    log.at = [t for t in log.at if ts - t <= window]
    if log.firing == firing:
        return False
    log.firing = firing
    log.at = [*log.at, ts][-rule.flap.changes :]
    return len(log.at) >= rule.flap.changes


def _mark_flapping(
    rule: Rule,
    track: _Track,
    log: _FlapLog,
    ts: int,
    now: datetime | None,
    *,
    after: int,
) -> None:
    if track.flap is not None or rule.flap is None:
        return
    since = _moment(log.at[0]).isoformat().replace("+00:00", "Z")
    reason = (
        f"flapping: {len(log.at)} changes since {since}; held open until its "
        f"clear has held {format_duration(rule.clear_time(flapping=True))}"
    )
    issued = _ns(now) if now is not None else ts
    track.flap = _FlapMark(at=ts, issued=issued, after=after, reason=reason)


def engine_entry(
    at: datetime,
    comment: str,
    *,
    status: WarningStatus = WarningStatus.OPEN,
    from_status: WarningStatus | None = WarningStatus.OPEN,
    from_level: Level | None = None,
    level: Level | None = None,
) -> AuditEntry:
    """An audit entry the engine writes: by default a new version of an open
    warning (a level change when ``from_level`` and ``level`` are given);
    ``from_status=None`` for the opening, ``status=RESOLVED`` for the end."""
    return AuditEntry(
        at=at,
        status=status,
        by=ENGINE_ACTOR,
        comment=comment,
        from_status=from_status,
        from_level=from_level,
        level=level,
    )


def _flap_entry(flap: _FlapMark) -> AuditEntry:
    """The audit entry of the version that marked the warning flapping: the
    status unchanged, no level change."""
    return engine_entry(_moment(flap.issued), flap.reason)


def _placed(observation: Observation, clock_ns: int | None) -> Observation:
    """The observation moved no earlier than the metric's last event time.

    The stream jobs date a silence by the worker's clock and readings by the
    device's. When the two differ, a silence can be dated before the reading
    it follows, or after the reading that ends it. Placing each observation at
    the latest time seen keeps the state machine's time monotonic, so no
    duration is negative and no warning resolves before it started. Readings
    in order are never moved.
    """
    if clock_ns is None or observation.ts_ns >= clock_ns:
        return observation
    return observation.model_copy(update={"ts_ns": clock_ns})


def _device_name(ctx: Context) -> str:
    obs, enterprise = ctx.observation, ctx.enterprise
    if enterprise is None:
        return obs.device
    device = next((d for d in enterprise.devices if d.id == obs.device), None)
    label = device.description if device and device.description else obs.device
    return f"{enterprise.name} / {label}"


def _advance_steps(rule: Rule, ctx: Context, track: _Track) -> None:
    """Apply the observation to the run of every escalation step."""
    count = len(rule.escalate)
    # The rule may have gained or lost steps since the state was written.
    runs = track.steps[:count] + [_StepRun() for _ in range(count - len(track.steps))]
    gap = to_ns(rule.max_gap)
    for step, run in zip(rule.escalate, runs, strict=True):
        _advance(step, run, rule, ctx, gap)
    track.steps = runs


def _advance(
    step: EscalationStep, run: _StepRun, rule: Rule, ctx: Context, gap: int
) -> None:
    ts = ctx.observation.ts_ns
    holds = step.condition(rule.when).test(ctx)
    if not run.met:
        if holds is not True:
            run.start = run.last = None
            return
        # A gap longer than max_gap is not evidence that the condition held
        # through it: the run for `after` starts again at this reading.
        if run.start is None or run.last is None or ts - run.last > gap:
            run.start = ts
        run.last = ts
        if ts - run.start >= to_ns(rule.after_at(step, ctx.enterprise)):
            run.met, run.clear_start = True, None
        return
    clears = step.clear.test(ctx) if step.clear is not None else negate(holds)
    if clears is not True:
        run.clear_start, run.last = None, ts
        return
    if run.clear_start is None or run.last is None or ts - run.last > gap:
        run.clear_start = ts
    run.last = ts
    if ts - run.clear_start >= to_ns(step.clear_for):
        run.met, run.start, run.clear_start = False, None, None


def _justified(rule: Rule, track: _Track) -> Level:
    """The level the met steps justify, never below the rule's."""
    return rule.level_with(i for i, run in enumerate(track.steps) if run.met)


def _step_for(rule: Rule, level: Level) -> EscalationStep | None:
    """The first escalation step that leads to ``level``; None when there is
    none (the rule's own level, or a step removed since the state was written)."""
    return next((step for step in rule.escalate if step.to == level), None)


def _why_up(rule: Rule, level: Level, enterprise: Enterprise | None) -> str:
    step = _step_for(rule, level)
    if step is None:
        return rule.when.describe()
    text = step.describe(rule.when)
    scaled = rule.after_at(step, enterprise)
    if enterprise is not None and scaled != step.after:
        text += f" ({format_duration(scaled)} for risk class {enterprise.risk_class})"
    return text


def _why_down(rule: Rule, level: Level) -> str:
    step = _step_for(rule, level)
    if step is None:
        return f"the rule has no step to {level.value} any more"
    return step.describe_clear(rule.when)


def _marks(rule: Rule, track: _Track) -> list[_LevelMark]:
    """The track's levels; a track from before escalation has the rule's."""
    if track.levels:
        return track.levels
    at = track.detected if track.detected is not None else track.start
    issued = track.issued if track.issued is not None else at
    reason = f"opened: {rule.when.describe()}"
    return [_LevelMark(level=rule.level, at=at, issued=issued, reason=reason)]


def _observe(rule: Rule, ctx: Context, track: _Track) -> None:
    """Write what this observation shows into the track, for the item."""
    obs = ctx.observation
    findings = rule.when.findings(ctx)
    info = METRICS[obs.metric]
    measured = rule.when.measured(ctx)
    if measured is not None:
        # A condition about something else than the value (the clock).
        track.observed, track.unit, said = measured.value, measured.unit, measured.said
        track.expected = rule.when.threshold_at(ctx)
    elif obs.kind == "silence":
        track.observed, track.unit = obs.silent_s, "s"
        silent = f"{obs.silent_s:.0f} s" if obs.silent_s is not None else "a while"
        said = f"device {obs.device} sent no {info.description} data for {silent}"
    elif obs.kind == "stale":
        track.observed, track.unit = obs.stale_s, "s"
        said = (
            f"device {obs.device} sent no {info.description} data for "
            f"{obs.stale_s or 0:.0f} s while still sending its other metrics"
        )
    else:
        track.observed, track.unit = obs.value, obs.unit
        said = (
            f"device {obs.device} measured {obs.value:g} {obs.unit} "
            f"({info.description}{', rate' if obs.rate else ''})"
        )
        threshold = rule.when.threshold_at(ctx)
        if threshold is not None:
            track.expected = threshold
        else:
            expected = [f.expected for f in findings if f.expected is not None]
            track.expected = expected[0] if expected else None
    # A finding that several conditions match (spike-or-drop asks for
    # robust_z twice) is said once, in the order first found.
    details = "; ".join(dict.fromkeys(f.detail for f in findings if f.detail))
    said = f"{rule.title}: {said}" + (f" ({details})" if details else "")
    track.said = said[: _DETAIL_CHARS * 2]


def _action(rule: Rule, level: Level) -> str:
    """The recommended action at ``level``: its step's, else the rule's."""
    step = _step_for(rule, level)
    return step.action if step is not None and step.action else rule.action
