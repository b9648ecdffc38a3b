"""The Faust worker: agents over the readings topic, state in tables.

Agents:

* storage (not an agent, see stream_jobs/store.py): readings -> InfluxDB in
  batches, in a consumer group of its own that commits only after the write.
* ``score``: readings, in batches of up to ``worker.score_batch`` taken
  within ``worker.score_wait_s`` -> per-device statistics (changelog-backed
  table ``device-state``, stored with :mod:`stream_jobs.state_codec`), counter
  rates, detector scores (the batch's devices together), rules (one reading
  at a time) -> observations on the anomalies topic, warnings on the warnings
  topic. Faust acks a batch's offsets only when the next batch is taken, so
  they are committed after the batch's results are published.
* ``silence``: a timer finds devices not heard from for
  ``worker.silent_after_s`` of wall time and sends their keys to an internal
  topic co-partitioned with the table; this agent then evaluates the rules on
  the silence, so the table is only written on the partition that owns it.
  When many devices fall due in the same scan (a broker, gateway or network
  outage), the timer sends them marked as explained by one feed warning
  instead (stream_jobs/outage.py), and this agent only marks them.
* ``expire``: the same timer finds devices not heard from for
  ``worker.expire_after_s`` (default 7 days) and sends them to a second
  internal topic; this agent has the rule engine forget their warnings and
  sends an ``expire`` command for each to the lifecycle agent.
* ``lifecycle``: the commands topic (the engine's warning versions and the
  officers' acknowledge/dispose/close, keyed by warning id) -> transitions
  applied in order to the changelog-backed table ``warning-state`` ->
  each new version to the warnings topic and the warning store. It is the
  only writer of a warning's status (see :mod:`alert_rules.lifecycle`).
* ``deliver``: warnings -> InfluxDB and the supervision platform's webhook;
  a version ``held`` by a silence or an inhibition is stored but not posted.
* ``group``: the device findings of grouped rules (scope enterprise, grid,
  district), which ``score`` and ``silence`` send to an internal topic keyed
  by the group (``<rule>|<kind>/<id>``, :mod:`alert_rules.grouping`), so the
  members of one enterprise or grid meet on one partition whichever
  partitions their devices are on -> the changelog-backed table
  ``group-state`` (co-partitioned) -> the group warning's versions to the
  lifecycle agent like the engine's.

Silences (:mod:`alert_rules.silences`) are followed from their compacted topic
by every worker (all partitions, like the registry). An opening whose device,
enterprise or rule a silence covers at that moment (wall clock) is marked
``silenced_by``/``held`` before it goes to the lifecycle agent, so the agent
stays deterministic; a timer releases held warnings that are still active
once no silence covers them (docs/rules.md, "Silences and maintenance
windows").

Inhibition (:mod:`alert_rules.inhibition`) is judged the same way: every
worker follows the active warnings that carry a ``finding`` from the warning
store, and an opening that a more severe active warning of the same finding
covers is marked ``inhibited_by``/``held``; the same timer releases it once
the inhibitor is no longer active.

Every agent keeps Faust's default concurrency of 1: with more, faust can
commit an offset past a message still in flight (faust-streaming #606).

Event time: the ``score`` agent holds each device's readings in a reorder
buffer in its ``device-state`` entry until the device's watermark (its latest
device time, as far as the gateway's clock confirms it, minus
``worker.lateness_s``) passes them, and scores and evaluates them in
timestamp order (stream_jobs/reorder.py, which also re-bases the event time
of a device whose clock steps back). The silence timer releases the readings
of a device from which nothing has arrived for ``worker.lateness_s`` of wall
time, up to the device time its clock has reached (a ``flush`` note to the
silence agent), and the silence agent releases them all before it judges a
silence. A reading with another value at a device time already taken is
dead-lettered (field ``ts``).

Silence is a matter of arrival, not of device time: a device is silent when
nothing from it has reached the gateway for ``worker.silent_after_s``. The
silence observation is dated in the device's own time (its last reading plus
the time waited), so a device replaying old data, or one whose clock is off,
is neither reported silent because others are ahead of it nor pushed past its
own later readings. A gap *within* a device's readings is the detectors' job.

Scale-out: more workers with the same ``app_id`` share the readings
partitions, and the table partitions with them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import faust
from faust.exceptions import ConsumerNotStarted
from faust.types.transports import ConsumerT
from pydantic import BaseModel, ValidationError

from alert_rules import Level, Rule, RuleEngine, WarningRecord, load_rules
from alert_rules.grouping import (
    ExpiredDevice,
    GroupNote,
    group_for_device,
    group_info,
    split_members,
)
from alert_rules.grouping import apply as apply_to_group
from alert_rules.inhibition import ActiveFindings
from alert_rules.lifecycle import (
    ACTIVE,
    Action,
    Command,
    Refusal,
    latest,
    step,
    worker_command,
)
from alert_rules.silences import SilenceView
from alert_rules.warning import WarningStatus
from riskwatch.contracts import (
    DeadLetter,
    Observation,
    PayloadError,
    ReadingRecord,
    to_json_bytes,
)
from riskwatch.secrets import SecretStore
from riskwatch.settings import Settings
from riskwatch.signing import signing_secret
from riskwatch.topics import (
    ANOMALIES,
    DEAD_LETTER,
    READINGS,
    SILENCES,
    WARNING_COMMANDS,
    WARNING_REFUSALS,
    WARNING_STORE,
    WARNINGS,
    WARNINGS_UNDELIVERED,
    TopicSpec,
)
from stream_jobs import state_codec
from stream_jobs.delivery import WebhookClient
from stream_jobs.outage import (
    FeedWatch,
    Outage,
    OutagePolicy,
    due_for_silence,
    explained,
    feed_warning,
    resumed,
)
from stream_jobs.processing import (
    Outcome,
    Rules,
    expire,
    flush,
    process_batch,
    silence,
)
from stream_jobs.progress import Offsets, ProgressWatch
from stream_jobs.registry_view import RegistryView
from stream_jobs.reorder import ReorderPolicy, due, held
from stream_jobs.storage import (
    InfluxWriter,
    PointsRefused,
    PointWriter,
    warning_point,
)
from stream_jobs.store import ReadingStore

log = logging.getLogger(__name__)

SILENCE_SCAN_S = 10.0
DERIVED_FLUSH_S = 1.0
DERIVED_BUFFER_MAX = 50_000
# Points per write: a flush stays well inside its one-second period.
DERIVED_WRITE_MAX = 5_000
STATS_S = 30.0

_M = TypeVar("_M", bound=BaseModel)


def parse_record(value: bytes) -> ReadingRecord | PayloadError:
    return parse_as(ReadingRecord, value)


def parse_as(model: type[_M], value: bytes) -> _M | PayloadError:
    """Parse a record of ``model``; its first problem as a PayloadError."""
    try:
        return model.model_validate_json(value)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        return PayloadError(".".join(map(str, err["loc"])) or "record", err["msg"])


class StreamWorker:
    """The Faust app of one worker process and what its agents share."""

    def __init__(
        self,
        settings: Settings,
        *,
        rules: Rules | None = None,
        writer_factory: Callable[[], PointWriter] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        # Wall clock of the administrative acts: silences, releases, expiry.
        self.clock = clock
        w = settings.worker
        self.rules: Rules = rules or RuleEngine(
            load_rules(w.rules_dir, silent_after_s=w.silent_after_s),
            authority=w.authority,
        )
        self.handling_limits = {
            Level(level): timedelta(hours=hours)
            for level, hours in w.handling_hours.items()
        }
        token = SecretStore(settings.run_dir / "secrets").get_or_create(
            "influxdb-operator-token", settings.influxdb.token
        )
        self._make_writer = writer_factory or (
            lambda: InfluxWriter(
                settings.influxdb.url,
                token,
                settings.influxdb.org,
                settings.influxdb.bucket,
            )
        )
        self._writer: PointWriter | None = None
        self.registry = RegistryView(settings.kafka.bootstrap)
        self.silence_view = SilenceView(settings.kafka.bootstrap, SILENCES)
        self.findings = ActiveFindings(settings.kafka.bootstrap, WARNING_STORE)
        # Grouped rules by id: their records are members, for the group agent.
        self.grouped: dict[str, Rule] = {
            r.id: r
            for r in getattr(self.rules, "rules", ())
            if r.enabled and r.scope.grouped
        }
        self.feed = FeedWatch(
            OutagePolicy(
                min_devices=w.outage_min_devices,
                share=w.outage_share,
                window_s=w.outage_window_s,
                silent_after_s=w.silent_after_s,
                settle_s=w.outage_settle_s,
                scan_s=SILENCE_SCAN_S,
            ),
            feed=w.app_id,
        )
        self.reorder = ReorderPolicy.of(
            w.lateness_s, w.reorder_max_readings, w.reorder_max_bytes
        )
        # Held warnings whose release was sent and not yet seen applied.
        self._releasing: set[str] = set()
        # Readings partitions whose committed offset stays put (stats timer).
        self.progress = ProgressWatch()
        self.store = ReadingStore(
            bootstrap=settings.kafka.bootstrap,
            topic=READINGS,
            group_id=f"{w.app_id}-store",
            writer=lambda: self.writer,
            enterprise=self.registry.get,
            batch=w.influx_batch,
            linger_s=w.influx_flush_s,
            offset_reset=w.offset_reset,
        )
        self.webhook = WebhookClient(
            settings.platform,
            secret=signing_secret(settings),
            fallback=settings.run_dir / settings.platform.fallback_file,
            dead_letter=self._send_undelivered,
        )
        self.derived: list[Any] = []
        self.counters = {
            "scored": 0,
            "batches": 0,
            "duplicates": 0,
            "late": 0,
            "reorder_overflow": 0,
            "conflicts": 0,
            "flushed": 0,
            "warnings": 0,
            "rejected": 0,
            "derived_dropped": 0,
            "derived_refused": 0,
            "delivered": 0,
            "receipts": 0,
            "undelivered": 0,
            "transitions": 0,
            "commands_refused": 0,
            "silenced": 0,
            "held": 0,
            "expired": 0,
            "outages": 0,
            "explained": 0,
            "members": 0,
            "inhibited": 0,
        }
        self.app = self._build_app()

    def internal_topics(self) -> list[TopicSpec]:
        """The agents' internal topics, for creating them before Faust
        subscribes (see stream_jobs/cli.py)."""
        return [
            TopicSpec(t.get_topic_name(), t.partitions or 1)
            for t in (self.silences, self.expiries, self.groups)
        ]

    @property
    def writer(self) -> PointWriter:
        # Created on first use, inside the worker's event loop.
        if self._writer is None:
            self._writer = self._make_writer()
        return self._writer

    def _build_app(self) -> faust.App:
        s, w = self.settings, self.settings.worker
        partitions = s.kafka.readings_partitions
        app = faust.App(
            w.app_id,
            broker=f"kafka://{s.kafka.bootstrap}",
            store="memory://",
            web_enabled=False,
            topic_replication_factor=1,
            topic_partitions=partitions,
            consumer_auto_offset_reset=w.offset_reset,
            producer_acks=-1,
            table_standby_replicas=0,
        )

        def topic(
            name: str, *, partitions: int | None = None, internal: bool = False
        ) -> faust.TopicT:
            # Keys and values stay bytes: riskwatch's pydantic models parse
            # them, so one bad record is dead-lettered, not an agent crash.
            return app.topic(
                name,
                key_type=bytes,
                value_type=bytes,
                key_serializer="raw",
                value_serializer="raw",
                partitions=partitions,
                internal=internal,
            )

        readings = topic(READINGS, partitions=partitions)
        self.anomalies = topic(ANOMALIES)
        self.warnings = topic(WARNINGS)
        self.dead_letter = topic(DEAD_LETTER)
        self.undelivered = topic(WARNINGS_UNDELIVERED)
        self.commands = topic(WARNING_COMMANDS, partitions=s.kafka.default_partitions)
        self.warning_store = topic(WARNING_STORE)
        self.refusals = topic(WARNING_REFUSALS)
        self.silences = topic(
            f"{w.app_id}-silence", partitions=partitions, internal=True
        )
        self.expiries = topic(
            f"{w.app_id}-expire", partitions=partitions, internal=True
        )
        self.group_topic = f"{w.app_id}-group"
        self.groups = topic(
            self.group_topic, partitions=s.kafka.default_partitions, internal=True
        )
        # key_type=bytes makes faust read the changelog keys back raw, as
        # they were written (it derives the changelog codec from key_type).
        # A batch's states are written after it, not while its reading is
        # faust's current event: the producer's partitioner picks the
        # changelog partition from the key, as the gateway's did for the
        # reading (the same default partitioner, the same partition count).
        self.device_state = app.Table(
            "device-state",
            partitions=partitions,
            key_type=bytes,
            use_partitioner=True,
        )
        # Faust derives a table's codec from value_type (a Record's, else
        # JSON) and gives it to the changelog topic, which decodes what the
        # table recovers. The detector states are bytes: msgpack, not JSON.
        # (TableT does not declare the attribute Collection has.)
        self.device_state.value_serializer = state_codec.NAME  # type: ignore[attr-defined]
        # derive() turns acks back on (it neither copies nor passes them): a
        # changelog with acks counts as a stream the worker must ack, and
        # faust then logs an ERROR "Stream has not started processing" for
        # each of its partitions every few seconds.
        changelog = self.device_state.changelog_topic
        derived = cast(
            faust.TopicT, changelog.derive(value_serializer=state_codec.NAME)
        )
        derived.acks = changelog.acks
        self.device_state.changelog_topic = derived
        # Co-partitioned with the commands topic: the table partition that
        # holds a warning is read by the worker that consumes its commands.
        self.warning_state = app.Table(
            "warning-state",
            partitions=s.kafka.default_partitions,
            key_type=bytes,
        )
        # Co-partitioned with the group topic: one group's members and state
        # are on one worker.
        self.group_state = app.Table(
            "group-state",
            partitions=s.kafka.default_partitions,
            key_type=bytes,
        )
        app.task(self._run_store)
        app.agent(readings, name="score")(self._score)
        app.agent(self.silences, name="silence")(self._on_silence)
        app.agent(self.expiries, name="expire")(self._on_expiry)
        app.agent(self.commands, name="lifecycle")(self._lifecycle)
        app.agent(self.warnings, name="deliver")(self._deliver)
        app.agent(self.groups, name="group")(self._group)
        app.task(self._follow_registry)
        app.task(self._follow_silences)
        app.task(self._follow_findings)
        app.timer(SILENCE_SCAN_S)(self._find_silent)
        app.timer(SILENCE_SCAN_S)(self._release_held)
        app.timer(DERIVED_FLUSH_S)(self._flush_derived)
        app.timer(STATS_S)(self._stats)
        # faust types its receivers with a keyword-only `signal` argument that
        # it passes in **kwargs; ours takes it there.
        app.on_before_shutdown.connect(self._close)  # type: ignore[arg-type]
        # Until faust has sought back after a recovery (faust-streaming #596).
        app.on_rebalance_complete.connect(hold_streams_for_seek)  # type: ignore[arg-type]
        return app

    async def _close(self, app: faust.App, **kwargs: object) -> None:
        """Close the HTTP sessions (webhook, InfluxDB) before the loop ends."""
        await self.webhook.close()
        if self._writer is not None:
            await self._writer.close()
        log.info(
            "worker closed %s", " ".join(f"{k}={v}" for k, v in self.counters.items())
        )

    # Agents ---------------------------------------------------------------

    async def _follow_registry(self) -> None:
        await self.registry.follow()

    async def _follow_silences(self) -> None:
        await self.silence_view.follow()

    async def _follow_findings(self) -> None:
        await self.findings.follow()

    async def _run_store(self) -> None:
        await self.registry.ready.wait()
        await self.store.run()

    async def _score(self, stream: faust.StreamT[bytes]) -> None:
        await self.registry.ready.wait()
        await track_in_producer_metadata(
            self.app, self.device_state.changelog_topic.get_topic_name()
        )
        w = self.settings.worker
        async for values in stream.take(w.score_batch, within=w.score_wait_s):
            await self.score_batch(values)

    async def score_batch(self, values: Sequence[bytes]) -> None:
        """Score one batch of the readings topic and publish what it gave.

        A record that does not parse is dead-lettered and the others taken
        together (:meth:`on_readings`).
        """
        parsed: list[tuple[bytes, ReadingRecord]] = []
        for value in values:
            record = parse_record(value)
            if isinstance(record, PayloadError):
                await self._reject(value, record)
            else:
                parsed.append((value, record))
        await self.on_readings(parsed)

    async def on_reading(self, record: ReadingRecord) -> None:
        """Hold one reading in its device's reorder buffer and apply, score
        and evaluate what the watermark releases: a batch of one."""
        await self.on_readings([(to_json_bytes(record), record)])

    async def on_readings(self, parsed: Sequence[tuple[bytes, ReadingRecord]]) -> None:
        """Readings as they arrived (with the bytes they came as), in order:
        each held in its device's reorder buffer, what the watermarks release
        applied, the detectors scoring the devices together.

        Should the batch fail as a whole, its readings are taken one at a
        time and only one that fails is dead-lettered. The table is written
        once per device, after the batch's results are published: a crash
        before that leaves the readings to come again (their offsets are not
        committed) onto the states they were scored from.
        """
        records = [record for _, record in parsed]
        try:
            outcomes = process_batch(
                records,
                self.device_state.get,
                self.registry.get,
                self.rules,
                self.reorder,
            )
        except Exception as exc:  # noqa: BLE001 - one bad reading must not cost the rest
            log.warning(
                "batch not scored records=%d, scoring them one by one: %r",
                len(records),
                exc,
            )
            records, outcomes = await self._one_by_one(parsed)
        stored: dict[bytes, dict[str, Any]] = {}
        for record, outcome in zip(records, outcomes, strict=True):
            stored[record.key] = outcome.state
            self.counters["scored"] += 1
            await self._applied(outcome)
        for key, state in stored.items():
            self.device_state[key] = state
        self.counters["batches"] += 1
        log.debug("batch scored records=%d devices=%d", len(records), len(stored))

    async def _one_by_one(
        self, parsed: Sequence[tuple[bytes, ReadingRecord]]
    ) -> tuple[list[ReadingRecord], list[Outcome]]:
        states: dict[bytes, dict[str, Any]] = {}

        def state_of(key: bytes) -> dict[str, Any] | None:
            return states[key] if key in states else self.device_state.get(key)

        records, outcomes = [], []
        for value, record in parsed:
            try:
                [outcome] = process_batch(
                    [record], state_of, self.registry.get, self.rules, self.reorder
                )
            except Exception as exc:  # noqa: BLE001 - dead-lettered with its reason
                await self._reject(
                    value, PayloadError("record", f"not scored: {exc!r}")
                )
                continue
            states[record.key] = outcome.state
            records.append(record)
            outcomes.append(outcome)
        return records, outcomes

    async def _applied(self, outcome: Outcome) -> None:
        """Count, buffer the derived points of, and publish applied readings."""
        self.counters["duplicates"] += outcome.duplicates
        self.counters["late"] += outcome.late
        self.counters["reorder_overflow"] += outcome.overflow
        for conflict in outcome.conflicts:
            # Logged (rate-limited per device) where it was found.
            self.counters["conflicts"] += 1
            await self._dead_letter(
                to_json_bytes(conflict.record), PayloadError("ts", conflict.reason)
            )
        if len(self.derived) + len(outcome.points) <= DERIVED_BUFFER_MAX:
            self.derived.extend(outcome.points)
        else:
            self.counters["derived_dropped"] += len(outcome.points)
        await self._publish(outcome.warnings, outcome.observations)

    async def _on_silence(self, stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await self.on_silence(event.key, event.value)

    async def on_silence(self, key: bytes, value: bytes) -> None:
        """Act on one device the silence timer found (see :func:`silence_note`).

        ``<wall_ns>``: evaluate the rules on its silence; ``<wall_ns> outage
        <id> <start_ns>``: mark it explained by that feed outage, no rules;
        ``<wall_ns> resume``: the outage that explained it ended, its silence
        counts again from ``wall_ns``; ``<wall_ns> flush``: nothing arrived
        from it for ``worker.lateness_s``, apply the readings it holds. The
        first two also apply them first.
        """
        wall_ns, note = parse_silence_note(value)
        state = self.device_state.get(key)
        if note and note[0] == "resume":
            if state is not None and state["silent"] and state.get("outage"):
                self.device_state[key] = resumed(state, wall_ns)
            return
        if note and note[0] == "flush":
            if state is not None and _quiet(state, wall_ns, self.reorder):
                await self._flush(key, state, wall_ns)
            return
        if not due_for_silence(state, wall_ns, self.settings.worker.silent_after_s):
            return  # it spoke again since the timer looked, or already marked
        assert state is not None  # noqa: S101 - checked just above
        if held(state):
            await self._flush(key, state)
            # Read again: a reading may have come in while the flush published.
            state = self.device_state.get(key)
            if not due_for_silence(state, wall_ns, self.settings.worker.silent_after_s):
                return
            assert state is not None  # noqa: S101 - checked just above
        if note:
            outage = Outage(
                id=note[1], start_ns=int(note[2]), devices=0, heard=0, found_ns=0
            )
            self.device_state[key] = explained(state, outage)
            self.counters["explained"] += 1
            log.debug("device silence explained device=%s outage=%s", key, note[1])
            return
        await self._silent(key, state, wall_ns)

    async def _flush(
        self, key: bytes, state: dict[str, Any], wall_ns: int | None = None
    ) -> dict[str, Any]:
        """Apply the readings the device's reorder buffer holds (with
        ``wall_ns``, those its clock has passed by then); its new state."""
        count = held(state) if wall_ns is None else due(state, wall_ns)
        if not count:
            return state
        enterprise_id = key.decode().split("/", 1)[0]
        outcome = flush(state, self.registry.get(enterprise_id), self.rules, wall_ns)
        self.device_state[key] = outcome.state
        self.counters["flushed"] += count
        log.debug("reorder buffer flushed device=%s readings=%d", key, count)
        await self._applied(outcome)
        return outcome.state

    async def _silent(self, key: bytes, state: dict[str, Any], wall_ns: int) -> None:
        silent_s = (wall_ns - state["last_seen_ns"]) / 1e9
        enterprise_id, device = key.decode().split("/", 1)
        outcome = silence(
            enterprise_id,
            device,
            state,
            state["last_ts"] + (wall_ns - state["last_seen_ns"]),
            self.registry.get(enterprise_id),
            self.rules,
        )
        self.device_state[key] = outcome.state
        log.info(
            "device silent enterprise=%s device=%s silent_s=%.0f",
            enterprise_id,
            device,
            silent_s,
        )
        await self._publish(outcome.warnings, outcome.observations)

    async def _on_expiry(self, stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await self.on_expiry(event.key, int(event.value))

    async def on_expiry(self, key: bytes, wall_ns: int) -> None:
        """Expire the warnings of a device not heard from for too long.

        One ``expire`` command per warning goes out before the table is
        written: after a crash in between, the timer finds the device again
        and sends the same commands (same ids), which the lifecycle agent
        applies once.
        """
        state = self.device_state.get(key)
        limit = self.settings.worker.expire_after_s
        if not _due_for_expiry(state, wall_ns, limit):
            return  # it spoke again since the timer looked, or already done
        assert state is not None  # noqa: S101 - checked just above
        enterprise_id, device = key.decode().split("/", 1)
        new_state, ids = expire(enterprise_id, device, state, self.rules)
        silent_s = (wall_ns - state["last_seen_ns"]) / 1e9
        at = datetime.fromtimestamp(wall_ns / 1e9, tz=UTC)
        comment = (
            f"no reading from device {device} for {silent_s:.0f} s "
            f"(worker.expire_after_s {limit:.0f} s): the condition can no "
            "longer be judged"
        )
        for ident in ids:
            command = worker_command(ident, Action.EXPIRE, at, comment)
            await self.commands.send(key=ident.encode(), value=to_json_bytes(command))
        # Its findings leave the groups of grouped rules too (the expire
        # command above is refused for them: they were members, not warnings).
        for rule in self.grouped.values():
            group = group_for_device(
                rule, enterprise_id, self.registry.get(enterprise_id)
            )
            if group is not None:
                note = GroupNote(
                    rule=rule.id,
                    group=group,
                    expire=ExpiredDevice(
                        enterprise=enterprise_id, device=device, at=at
                    ),
                )
                await self.groups.send(key=note.key, value=to_json_bytes(note))
        self.device_state[key] = new_state
        self.counters["expired"] += len(ids)
        log.info(
            "device expired enterprise=%s device=%s silent_s=%.0f warnings=%d",
            enterprise_id,
            device,
            silent_s,
            len(ids),
        )

    async def _lifecycle(self, stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await self.on_command(event.key, event.value)

    async def on_command(self, key: bytes | None, value: bytes) -> None:
        """Apply one command to its warning and publish the new version.

        The version is published before the table is written: after a crash
        in between, the command comes again (its offset was not committed),
        is applied again to the old state and gives the same version with the
        same id, which the store overwrites and the platform deduplicates.
        """
        command = parse_as(Command, value)
        if isinstance(command, PayloadError):
            await self._reject(value, command, topic=WARNING_COMMANDS)
            return
        if key is not None and key != command.warning.encode():
            await self._reject(
                value,
                PayloadError("warning", f"differs from the key {key!r}"),
                topic=WARNING_COMMANDS,
            )
            return
        state_key = command.warning.encode()
        state, version, error = step(
            self.warning_state.get(state_key), command, self.handling_limits
        )
        if error is not None:
            self.counters["commands_refused"] += 1
            log.warning(
                "command refused warning=%s command=%s action=%s by=%s reason=%s",
                command.warning,
                command.id,
                command.action.value,
                command.by,
                error,
            )
            # The officer API waits for each of its commands: this answers
            # it (409) at once, rather than after api.apply_timeout_s.
            refusal = to_json_bytes(Refusal.of(command, error))
            await self.refusals.send(key=state_key, value=refusal)
        elif version is None:
            log.info(
                "command already applied warning=%s command=%s",
                command.warning,
                command.id,
            )
        if version is not None:
            self.counters["transitions"] += 1
            body = to_json_bytes(version)
            await self.warnings.send(key=state_key, value=body)
            await self.warning_store.send(key=state_key, value=body)
            log.info(
                "warning transition warning=%s command=%s action=%s status=%s "
                "version=%d by=%s enterprise=%s device=%s",
                version.id,
                command.id,
                command.action.value,
                version.status.value,
                version.version,
                command.by,
                version.enterprise_id,
                version.device_id,
            )
        if state is not None:
            self.warning_state[state_key] = state

    async def _group(self, stream: faust.StreamT[bytes]) -> None:
        await self.registry.ready.wait()
        async for event in stream.events():
            await self.on_group_note(event.key, event.value)

    async def on_group_note(self, key: bytes | None, value: bytes) -> None:
        """Fold one member record (or expired device) into its group and
        publish the group warning's new version, if any.

        As in the lifecycle agent, the version is published before the table
        is written: a note applied again after a crash gives the same version
        with the same id, which the lifecycle agent applies once.
        """
        topic = self.group_topic
        note = parse_as(GroupNote, value)
        if isinstance(note, PayloadError):
            await self._reject(value, note, topic=topic)
            return
        if key is not None and key != note.key:
            error = PayloadError("group", f"differs from the key {key!r}")
            await self._reject(value, error, topic=topic)
            return
        rule = self.grouped.get(note.rule)
        if rule is None:
            # The rule was removed or changed scope since the note was sent.
            log.warning(
                "group note skipped rule=%s group=%s reason=%s",
                note.rule,
                note.group,
                "not a grouped rule of this worker",
            )
            return
        state, records = apply_to_group(
            rule,
            self.group_state.get(note.key),
            note,
            group_info(note.group, self.registry.values()),
            authority=self.settings.worker.authority,
        )
        await self._publish(list(records), [])
        self.group_state[note.key] = state

    async def _deliver(self, stream: faust.StreamT[bytes]) -> None:
        async for value in stream:
            record = parse_as(WarningRecord, value)
            if isinstance(record, PayloadError):
                await self._reject(value, record, topic=WARNINGS)
                continue
            data = record.model_dump(mode="json")
            await self._store_warning_point(record, data)
            if record.held:
                # Recorded (store, InfluxDB), not sent: the release timer
                # sends this version later if the warning outlives the silence.
                self.counters["held"] += 1
                log.debug(
                    "warning held warning=%s version=%d silence=%s",
                    record.id,
                    record.version,
                    record.silenced_by,
                )
                continue
            receipt = await self.webhook.post(record)
            if receipt is None:
                if self.settings.platform.webhook_url:
                    self.counters["undelivered"] += 1
                continue
            self.counters["delivered"] += 1
            if receipt.reference is None:
                continue
            self.counters["receipts"] += 1
            # The same point again with the platform's reference: InfluxDB
            # merges it into the one written above (same tags and time).
            try:
                await self.writer.write(
                    [warning_point({**data, "platform_reference": receipt.reference})]
                )
            except Exception as exc:  # noqa: BLE001 - delivered; only the note is lost
                log.warning(
                    "platform reference not stored warning=%s reference=%s: %r",
                    record.id,
                    receipt.reference,
                    exc,
                )

    async def _store_warning_point(
        self, record: WarningRecord, data: dict[str, Any]
    ) -> None:
        """The version's point in InfluxDB. A failure there (a point older
        than the bucket's retention, InfluxDB down) is logged and never keeps
        the version from the platform: raising here would crash the delivery
        agent, and the version it was on would never be posted."""
        try:
            await self.writer.write([warning_point(data)])
        except Exception as exc:  # noqa: BLE001 - delivery goes on; the record is on Kafka
            log.error(  # noqa: TRY400 - expected outage, no traceback
                "warning point not stored warning=%s version=%d: %r",
                record.id,
                record.version,
                exc,
            )

    async def _send_undelivered(self, key: bytes, value: bytes) -> None:
        await self.undelivered.send(key=key, value=value)

    # Timers ---------------------------------------------------------------

    async def _find_silent(self) -> None:
        await self.find_silent(time.time_ns())

    async def find_silent(self, wall_ns: int) -> None:
        """One scan of this worker's devices for silence and expiry.

        The feed watch decides first whether the devices due for silence are
        a feed outage (stream_jobs/outage.py); the table is written by the
        silence agent, on the partition that owns each device.
        """
        w = self.settings.worker
        items = list(self.device_state.items())
        plan = self.feed.scan(items, wall_ns)
        notes = [(key, silence_note(wall_ns)) for key in plan.silent]
        notes += [
            (key, silence_note(wall_ns, outage))
            for key, outage in plan.explained.items()
        ]
        notes += [(key, silence_note(wall_ns, resume=True)) for key in plan.resume]
        # A quiet device's held readings: nothing is coming to go before them.
        judged = {*plan.silent, *plan.explained}
        notes += [
            (key, silence_note(wall_ns, flush=True))
            for key, state in items
            if key not in judged and _quiet(state, wall_ns, self.reorder)
        ]
        for key, note in notes:
            await self.silences.send(key=key, value=note)
        now = datetime.fromtimestamp(wall_ns / 1e9, tz=UTC)
        ends = [(outage, True) for outage in plan.resolved]
        for outage, resolved in [(plan.opened, False), *ends]:
            if outage is None:
                continue
            self.counters["outages"] += not resolved
            record = feed_warning(
                outage,
                feed=w.app_id,
                authority=w.authority,
                silent_after_s=w.silent_after_s,
                now=now,
                resolved=resolved,
            )
            await self._publish([record], [])
        for key, state in items:
            if _due_for_expiry(state, wall_ns, w.expire_after_s):
                await self.expiries.send(key=key, value=str(wall_ns).encode())

    async def _release_held(self) -> None:
        """Send ``release`` for held warnings no silence covers any more.

        Only the table partitions this worker holds are scanned; the command
        goes through the lifecycle agent like any other change.
        """
        if not self.findings.ready.is_set():
            return  # an inhibitor not read yet would look ended
        now = self.clock()
        held: set[str] = set()
        for key, state in list(self.warning_state.items()):
            record = latest(state)
            if record is None or not record.held:
                continue
            if record.status not in ACTIVE and not record.held_from:
                continue
            held.add(record.id)
            if record.id in self._releasing or self._silence_of(record, now):
                continue
            if record.inhibited_by and self.findings.active(record.inhibited_by):
                continue
            ended = [
                f"silence {record.silenced_by}" if record.silenced_by else "",
                f"inhibiting warning {record.inhibited_by}"
                if record.inhibited_by
                else "",
            ]
            command = worker_command(
                record.id,
                Action.RELEASE,
                now,
                f"{' and '.join(e for e in ended if e)} ended with the warning "
                f"{record.status.value}",
            )
            await self.commands.send(key=key, value=to_json_bytes(command))
            self._releasing.add(record.id)
            log.info(
                "warning release sent warning=%s silence=%s inhibitor=%s "
                "status=%s enterprise=%s device=%s",
                record.id,
                record.silenced_by,
                record.inhibited_by,
                record.status.value,
                record.enterprise_id,
                record.device_id,
            )
        self._releasing &= held

    async def _flush_derived(self) -> None:
        """Write the scores and rates buffered since the last flush.

        A write InfluxDB refuses for good is dropped and counted; any other
        failure keeps the points for the next flush.
        """
        while self.derived:
            batch = self.derived[:DERIVED_WRITE_MAX]
            try:
                await self.writer.write(batch)
            except PointsRefused as exc:
                self.counters["derived_refused"] += exc.points
                log.error(  # noqa: TRY400 - a refusal, not a crash: no traceback
                    "influxdb refused derived points=%s status=%s: %s",
                    exc.points,
                    exc.status,
                    exc,
                )
            except Exception as exc:  # noqa: BLE001 - kept for the next flush
                log.warning(
                    "derived points write failed points=%s, kept for the next "
                    "flush: %r",
                    len(batch),
                    exc,
                )
                return
            del self.derived[: len(batch)]

    async def _stats(self) -> None:
        self.progress.check(readings_offsets(self.app.consumer), time.monotonic())
        log.info(
            "worker stats %s stored_points=%s refused_points=%s registry=%s",
            " ".join(f"{k}={v}" for k, v in self.counters.items()),
            self.store.stored,
            self.store.refused,
            len(self.registry),
        )

    # Helpers --------------------------------------------------------------

    async def _reject(
        self, value: bytes, error: PayloadError, *, topic: str = READINGS
    ) -> None:
        self.counters["rejected"] += 1
        log.warning(
            "record rejected topic=%s field=%s reason=%s",
            topic,
            error.field,
            error.reason,
        )
        await self._dead_letter(value, error, topic=topic)

    async def _dead_letter(
        self, value: bytes, error: PayloadError, *, topic: str = READINGS
    ) -> None:
        letter = DeadLetter.of(
            source=f"kafka:{topic}",
            topic=topic,
            error=error,
            payload=value,
            received_ns=time.time_ns(),
            stage="worker",
        )
        await self.dead_letter.send(key=b"worker", value=to_json_bytes(letter))

    def _silence_of(self, record: WarningRecord, now: datetime) -> str | None:
        silence = self.silence_view.covering(
            enterprise=record.enterprise_id,
            device=record.device_id,
            rule=record.rule_id,
            now=now,
        )
        return silence.id if silence is not None else None

    def _held_if_silenced(self, record: WarningRecord) -> WarningRecord:
        """The engine's version marked held when a silence covers it now.

        The lifecycle agent keeps the opening's ``held`` on every later
        version; a later version marked here holds a warning that opened
        before the silence, from that version on.
        """
        silence = self._silence_of(record, self.clock())
        if silence is None:
            return record
        self.counters["silenced"] += 1
        log.info(
            "warning silenced warning=%s silence=%s rule=%s enterprise=%s device=%s",
            record.id,
            silence,
            record.rule_id,
            record.enterprise_id,
            record.device_id,
        )
        return record.model_copy(update={"silenced_by": silence, "held": True})

    def _held_if_inhibited(
        self, record: WarningRecord, batch: list[WarningRecord]
    ) -> WarningRecord:
        """The opening marked held when a more severe active warning of the
        same finding covers it (:mod:`alert_rules.inhibition`); ``batch``:
        the other versions published with it, not yet in the view."""
        if record.status != WarningStatus.OPEN or record.version != 1:
            return record
        inhibitor = self.findings.inhibitor_of(record, batch)
        if inhibitor is None:
            return record
        self.counters["inhibited"] += 1
        log.info(
            "warning inhibited warning=%s inhibitor=%s finding=%s level=%s "
            "inhibitor_level=%s rule=%s enterprise=%s device=%s",
            record.id,
            inhibitor.id,
            record.finding,
            record.level.value,
            inhibitor.level.value,
            record.rule_id,
            record.enterprise_id,
            record.device_id,
        )
        return record.model_copy(update={"inhibited_by": inhibitor.id, "held": True})

    async def _publish(
        self, warnings: list[BaseModel], observations: list[Observation]
    ) -> None:
        await self.silence_view.ready.wait()
        await self.findings.ready.wait()
        for observation in observations:
            if observation.findings or observation.kind == "silence":
                await self.anomalies.send(
                    key=f"{observation.enterprise}/{observation.device}".encode(),
                    value=to_json_bytes(observation),
                )
        records = [
            w
            if isinstance(w, WarningRecord)
            else WarningRecord.model_validate(w.model_dump(mode="json"))
            for w in warnings
        ]
        notes, batch = split_members(self.grouped, records)
        for warning in batch:
            self.counters["warnings"] += 1
            data = warning.model_dump(mode="json")
            # Through the lifecycle agent, which numbers the versions and
            # merges the engine's news with what the officers did.
            record = self._held_if_inhibited(self._held_if_silenced(warning), batch)
            self.findings.note(record)
            value = to_json_bytes(Command.of_engine(record))
            log.info(
                "warning id=%s rule=%s level=%s status=%s enterprise=%s device=%s",
                data.get("id"),
                data.get("rule_id"),
                data.get("level"),
                data.get("status"),
                data.get("enterprise_id"),
                data.get("device_id"),
            )
            await self.commands.send(key=str(data.get("id")).encode(), value=value)
        # After the device warnings of the same observation: those were
        # judged for inhibition before any group they complete can open.
        for note in notes:
            self.counters["members"] += 1
            await self.groups.send(key=note.key, value=to_json_bytes(note))


async def track_in_producer_metadata(app: faust.App, topic: str) -> None:
    """Have the producer keep ``topic`` in its cluster metadata for good.

    The device-state table picks each state's changelog partition with the
    producer's partitioner (``use_partitioner``), which reads the producer's
    metadata without asking for the topic. aiokafka's client fetches
    metadata for every topic until something is sent, and from then on only
    for the topics sent to, replacing what it knew: if a refresh for the
    worker's other topics landed before the first changelog send, the
    changelog was gone from the metadata, the partitioner's lookup returned
    None, and the score agent crashed on the batch's table write before
    that first send, at every restart of the agent (seen once in an
    integration run under load: TypeError from aiokafka's ``_partition``,
    readings no longer scored). Tracking the topic from the start keeps it
    in every refresh.
    """
    producer = cast(Any, app.producer)._ensure_producer()
    await producer.client.add_topic(topic)
    log.debug("producer metadata tracks topic=%s", topic)


async def hold_streams_for_seek(app: faust.App, **kwargs: object) -> None:
    """Stop the consumer's flow when a rebalance's recovery completes, until
    faust has sought the agents' partitions back to their committed offsets.

    Works around a race in faust-streaming 0.15 (its issue #596, still open;
    #216/#217 fixed the same ordering only for apps without tables). When a
    worker has table state to recover, the recovery turns the consumer's flow
    on to read the changelogs. ``Recovery.on_recovery_completed`` then
    resumes the agents' partitions, awaits the seek to the committed offsets
    and only then calls ``flow_control.resume()``, which empties every
    agent's queue. A fetch that returns during that seek delivers records
    that the clear then discards: they are never processed or acked, and
    never fetched again, because their partition was sought before the fetch
    returned and the consumer's position is past them. A worker restarted
    with a backlog lost the readings that had arrived while it was down, and
    its committed offset stopped there for good: nothing at all was acked, or
    only records after the lost ones, a gap faust never commits past (issue
    5's restart defect, seen in about half the restarts). This receiver runs
    first in ``on_recovery_completed`` (faust sends ``on_rebalance_complete``
    there, and in ``_resume_streams`` before its seek). With the flow
    stopped, a fetch that returns during the seek is sought back to the
    committed offsets rather than delivered (``Consumer.getmany``), and
    faust's own ``resume_flow()`` after the clear lets the agents read from
    there.
    """
    app.consumer.stop_flow()
    log.debug("consumer flow held until the seek to the committed offsets")


def readings_offsets(consumer: ConsumerT) -> dict[int, Offsets]:
    """The committed and end offsets of the readings partitions assigned to
    ``consumer`` (faust's), as it knows them: no request to Kafka. Empty
    before the consumer has started."""
    try:
        assigned = consumer.assignment()
    except ConsumerNotStarted:
        return {}
    # faust keeps the offsets it sought to at assignment, and each it
    # committed since, in this mapping; it has no public accessor for them.
    committed = getattr(consumer, "_committed_offset", {})
    return {
        tp.partition: Offsets(committed.get(tp), consumer.highwater(tp))
        for tp in assigned
        if tp.topic == READINGS
    }


def silence_note(
    wall_ns: int,
    outage: Outage | None = None,
    *,
    resume: bool = False,
    flush: bool = False,
) -> bytes:
    """The value of a message to the silence agent (see
    :meth:`StreamWorker.on_silence`).

    >>> silence_note(7), silence_note(7, resume=True), silence_note(7, flush=True)
    (b'7', b'7 resume', b'7 flush')
    """
    if resume:
        return f"{wall_ns} resume".encode()
    if flush:
        return f"{wall_ns} flush".encode()
    if outage is not None:
        return f"{wall_ns} outage {outage.id} {outage.start_ns}".encode()
    return str(wall_ns).encode()


def parse_silence_note(value: bytes) -> tuple[int, list[str]]:
    """The wall time and the rest of a :func:`silence_note`.

    >>> parse_silence_note(b"7 outage rw-1 5")
    (7, ['outage', 'rw-1', '5'])
    """
    wall, *note = value.decode().split()
    return int(wall), note


def _quiet(state: dict[str, Any] | None, wall_ns: int, policy: ReorderPolicy) -> bool:
    """True if the device's reorder buffer holds readings its clock has
    passed by ``wall_ns`` and nothing has arrived from it for the lateness
    (wall time)."""
    if not state or not due(state, wall_ns) or state.get("last_seen_ns") is None:
        return False
    return bool(wall_ns - state["last_seen_ns"] >= policy.lateness_ns)


def _due_for_expiry(state: dict[str, Any] | None, wall_ns: int, limit_s: float) -> bool:
    """True if the device has been heard from, its warnings were not expired
    since its last reading, and nothing has arrived from it for ``limit_s``."""
    return bool(
        state
        and not state.get("expired", False)
        and state.get("last_seen_ns") is not None
        and (wall_ns - state["last_seen_ns"]) / 1e9 >= limit_s
    )
