"""``riskwatch demo``: the whole pipeline on real input, end to end.

1. services up, sample registry published;
2. a warning receiver (the supervision platform stand-in), a gateway and a
   worker started; the worker gets a fresh consumer group and InfluxDB bucket
   of its own, so the figures below count this run only;
3. NAB's machine-temperature series (an industrial machine that failed)
   replayed as device TT-101 of the hazardous-chemicals plant HC001, a
   simulated fleet of other enterprises beside it, and a handful of malformed
   messages;
4. once the worker has caught up: a summary that checks that the messages
   published in all (readings and malformed ones) = readings stored +
   messages dead-lettered, counts warnings by level (each once, at the most
   severe level it reached), and says whether a warning fell inside each
   labelled anomaly window of the replayed series.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.domain.bucket_retention_rules import BucketRetentionRules

from alert_rules.rule import Level, most_severe
from riskwatch.contracts import DeadLetter, Metric, telemetry_topic
from riskwatch.errors import RiskwatchError
from riskwatch.registry import Registry, load_registry
from riskwatch.registry_cli import publish_registry, sample_registry_path
from riskwatch.secrets import SecretStore
from riskwatch.services import Stack
from riskwatch.settings import Settings
from riskwatch.signing import signing_secret
from riskwatch.timeouts import Deadline
from riskwatch.topics import DEAD_LETTER, READINGS, WARNINGS
from simulators.fleet import generate_fleet, select_enterprises, window_ending_now
from simulators.publisher import Progress, connect_simulator, run_fleet
from simulators.receiver import WarningReceiver
from simulators.replay import read_series, run_replay

log = logging.getLogger(__name__)

Echo = Callable[[str], None]
REPLAY_ENTERPRISE, REPLAY_DEVICE = "HC001", "TT-101"
NAB_FILE = "realKnownCause/machine_temperature_system_failure.csv"
GATEWAY_READY = ("mqtt subscribed",)
# Faust says Ready once its partitions are assigned and tables recovered: a
# worker reading from "latest" must be there before anything is published.
WORKER_READY = ("registry loaded", "[^Worker]: Ready", "store ready")


class DemoError(RiskwatchError):
    """The demo could not run, or its figures do not add up."""


@dataclass(frozen=True)
class DemoPlan:
    nab_dir: Path
    enterprises: int = 50
    fleet_days: float = 1.0
    step_s: float = 600.0
    seed: int = 7
    catch_up_timeout_s: float = 600.0


@dataclass
class DemoSummary:
    """What a demo run published and what became of it.

    Attributes:
        published: reading messages published (the replay and the fleet).
        published_bad: malformed messages published, for the gateway to
            dead-letter.
        stored: reading messages found in InfluxDB.
        dead_lettered: messages on the dead-letter topic since the run began.
    """

    published: int = 0
    published_bad: int = 0
    stored: int = 0
    dead_lettered: int = 0
    warnings_by_level: Counter[str] = field(default_factory=Counter)
    """Each warning once, at the most severe level it reached
    (:func:`warnings_by_level`)."""
    windows: list[tuple[datetime, datetime, bool]] = field(default_factory=list)

    @property
    def published_all(self) -> int:
        """Every message published: readings and malformed ones."""
        return self.published + self.published_bad

    @property
    def balanced(self) -> bool:
        return self.published_all == self.stored + self.dead_lettered


def demo_settings(settings: Settings, run_id: str) -> dict[str, str]:
    """Environment overrides that give this run its own consumer group,
    bucket and gateway session; the NAB series is 79 days old, so the demo's
    bucket keeps data for a year and its gateway accepts old readings."""
    return {
        "RISKWATCH_RUN_DIR": str(settings.run_dir),
        "RISKWATCH_WORKER__APP_ID": f"riskwatch-demo-{run_id}",
        "RISKWATCH_WORKER__OFFSET_RESET": "latest",
        "RISKWATCH_WORKER__SILENT_AFTER_S": "3600",
        "RISKWATCH_INFLUXDB__BUCKET": f"demo-{run_id}",
        "RISKWATCH_GATEWAY__CLIENT_ID": f"riskwatch-demo-gateway-{run_id}",
        # A group of its own: this gateway alone gets every message.
        "RISKWATCH_GATEWAY__SHARED_GROUP": f"demo{run_id}",
        "RISKWATCH_GATEWAY__SESSION_EXPIRY_S": "300",
        "RISKWATCH_GATEWAY__MAX_AGE_S": str(400 * 86400),
    }


def run_demo(settings: Settings, plan: DemoPlan, echo: Echo) -> DemoSummary:
    run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    folder = settings.run_dir / f"demo-{run_id}"
    folder.mkdir(parents=True, exist_ok=True)
    echo(f"== riskwatch demo {run_id} (logs in {folder})")
    Stack(settings, report=echo).up()
    registry = load_registry(sample_registry_path())
    count = asyncio.run(publish_registry(registry, settings.kafka.bootstrap))
    echo(f"registry: published {count} enterprises")
    env = demo_settings(settings, run_id)
    demo = settings.model_copy(
        update={
            "influxdb": settings.influxdb.model_copy(
                update={"bucket": env["RISKWATCH_INFLUXDB__BUCKET"]}
            ),
        }
    )
    create_bucket(demo)
    bootstrap = settings.kafka.bootstrap
    dead_start = asyncio.run(end_offsets(bootstrap, DEAD_LETTER))
    summary = DemoSummary()
    with (
        warning_receiver(settings, echo, folder) as receiver,
        background_command("gateway", env, folder, ready=GATEWAY_READY) as _gw,
        background_command("worker", env, folder, ready=WORKER_READY) as _wk,
    ):
        baselines = {
            topic: asyncio.run(end_offsets(bootstrap, topic))
            for topic in (READINGS, WARNINGS)
        }
        summary.published, windows = _publish(settings, plan, registry, echo)
        summary.published_bad = _publish_bad(settings)
        echo(
            f"published {summary.published} readings and "
            f"{summary.published_bad} malformed messages "
            f"({summary.published_all} in all); waiting for the worker"
        )
        wait_caught_up(settings, env["RISKWATCH_WORKER__APP_ID"], baselines, plan, echo)
        summary.stored = _wait_stored(demo, summary.published, echo)
        summary.dead_lettered = len(
            asyncio.run(read_dead_letters(settings.kafka.bootstrap, dead_start))
        )
        warnings = list(receiver.warnings)
    summary.warnings_by_level = warnings_by_level(warnings)
    summary.windows = [
        (start, end, _warned_within(warnings, start, end)) for start, end in windows
    ]
    asyncio.run(
        _drop_internal_topics(settings.kafka.bootstrap, env["RISKWATCH_WORKER__APP_ID"])
    )
    _print_summary(summary, echo)
    return summary


# Publishing -----------------------------------------------------------------


def _publish(
    settings: Settings, plan: DemoPlan, registry: Registry, echo: Echo
) -> tuple[int, list[tuple[datetime, datetime]]]:
    series = read_series(plan.nab_dir / NAB_FILE)
    start, end = window_ending_now(plan.fleet_days)
    fleet = generate_fleet(
        select_enterprises(registry, plan.enterprises + 1),
        start=start,
        end=end,
        step_s=plan.step_s,
        seed=plan.seed,
        exclude=frozenset({(REPLAY_ENTERPRISE, REPLAY_DEVICE)}),
    )
    echo(
        f"fleet: {len(fleet.series)} devices of "
        f"{len({s.enterprise for s in fleet.series})} enterprises, "
        f"{fleet.message_count()} messages over {plan.fleet_days:g} day(s)"
    )
    results: dict[str, Any] = {}

    def replay() -> None:
        results["replay"] = run_replay(
            series,
            settings,
            enterprise=REPLAY_ENTERPRISE,
            device=REPLAY_DEVICE,
            metric=Metric.TEMPERATURE_C,
            progress=_every(5.0, echo, "replay"),
        )

    thread = threading.Thread(target=replay, name="demo-replay")
    thread.start()
    fleet_result = run_fleet(fleet, settings, progress=_every(5.0, echo, "fleet"))
    thread.join()
    if "replay" not in results:
        raise DemoError("the replay failed; see the log above")
    replayed = results["replay"]
    echo(
        f"replay: {replayed.published} readings of {NAB_FILE} as "
        f"{REPLAY_ENTERPRISE}/{REPLAY_DEVICE}, shifted by {replayed.shift}; "
        f"{series.skipped} row(s) skipped where the file's clock went back"
    )
    windows = [
        (replayed.map_time(a), replayed.map_time(b))
        for a, b in _nab_windows(plan.nab_dir)
    ]
    return fleet_result.published + replayed.published, windows


def _publish_bad(settings: Settings) -> int:
    """A few messages of each kind the gateway must reject."""
    root = settings.mqtt.topic_root
    topic = telemetry_topic(root, "HC002", "PT-DEMO")
    now = int(time.time())
    good_ts = b'"ts": %d' % now
    metric = b'{"metric": "pressure_mpa", "value": 1.2, "unit": "MPa"}'
    bad = [
        b'{%s, "metrics": [{"metric": "pressure_mpa", "value": NaN, "unit": "MPa"}]}'
        % good_ts,
        b'{%s, "metrics": [{"metric": "voltage", "value": 230, "unit": "V"}]}'
        % good_ts,
        b'{"metrics": [%s]}' % metric,
        b'{"ts": %d, "metrics": [%s]}' % (now + 86400, metric),
        b"\xff\xfe not utf-8",
        b"{not json",
    ]
    transport = connect_simulator(settings)
    try:
        for payload in bad:
            transport.publish(topic, payload)
        transport.flush(30.0)
    finally:
        transport.close()
    return len(bad)


def _every(seconds: float, echo: Echo, label: str) -> Callable[[Progress], None]:
    last = [0.0]

    def report(progress: Progress) -> None:
        if time.monotonic() - last[0] >= seconds:
            last[0] = time.monotonic()
            echo(f"{label}: {progress.line()}")

    return report


# Waiting for the pipeline ------------------------------------------------------


def wait_caught_up(
    settings: Settings,
    group: str,
    baselines: dict[str, dict[TopicPartition, int]],
    plan: DemoPlan,
    echo: Echo,
) -> None:
    deadline = Deadline(plan.catch_up_timeout_s)
    last_report = 0.0
    bootstrap = settings.kafka.bootstrap
    while not deadline.expired():
        lag = asyncio.run(group_lag(bootstrap, group, READINGS, baselines[READINGS]))
        unstored = asyncio.run(
            group_lag(bootstrap, f"{group}-store", READINGS, baselines[READINGS])
        )
        behind = asyncio.run(group_lag(bootstrap, group, WARNINGS, baselines[WARNINGS]))
        if lag == 0 and unstored == 0 and behind == 0:
            return
        if time.monotonic() - last_report >= 5:
            last_report = time.monotonic()
            echo(
                f"worker: readings not yet scored={lag} not yet stored={unstored} "
                f"warnings not yet delivered={behind}"
            )
        time.sleep(1.0)
    raise DemoError(
        f"the worker did not catch up within {plan.catch_up_timeout_s:.0f}s"
    )


async def group_lag(
    bootstrap: str, group: str, topic: str, baseline: dict[TopicPartition, int]
) -> int:
    """Records on ``topic`` the group has not committed yet. A partition the
    group never committed started at ``baseline`` (its end when the worker
    joined, with offset reset "latest")."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    ends = await end_offsets(bootstrap, topic)
    lag = 0
    for tp, end in ends.items():
        done = committed[tp].offset if tp in committed else -1
        lag += max(0, end - max(done, baseline.get(tp, 0)))
    return lag


async def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [
        TopicPartition(topic, p["partition"]) for p in described["partitions"]
    ]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        consumer.assign(partitions)
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def read_dead_letters(
    bootstrap: str, start: dict[TopicPartition, int], stage: str = "gateway"
) -> list[DeadLetter]:
    """The dead letters of ``stage`` (the gateway's by default) written since
    the offsets ``start``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        end = await consumer.end_offsets(list(start))
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        remaining = {tp for tp in start if end[tp] > start[tp]}
        while remaining:
            batches = await consumer.getmany(timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= end[tp]:
                        continue
                    letter = DeadLetter.model_validate_json(record.value)
                    if letter.stage == stage:
                        letters.append(letter)
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
            if not batches:
                remaining = {
                    tp for tp in remaining if await consumer.position(tp) < end[tp]
                }
    finally:
        await consumer.stop()
    return letters


def _wait_stored(settings: Settings, expected: int, echo: Echo) -> int:
    """Poll InfluxDB until ``expected`` readings are stored, or the count has
    not moved for 20 s (then something was lost, and the summary says so).

    The consumer group's committed offsets alone do not tell: the storage
    agent shares the readings with the scoring agent and can still be
    writing its last batches when the offsets are all committed.
    """
    still, last = 0, -1
    deadline = Deadline(600)
    while not deadline.expired() and still < 20:
        stored = count_stored_messages(settings)
        if stored >= expected:
            last = stored
            break
        still = still + 1 if stored == last else 0
        if stored != last:
            echo(f"influxdb: {stored} of {expected} readings stored")
        last = stored
        time.sleep(1.0)
    echo(f"influxdb: {last} readings stored")
    return last


def count_stored_messages(settings: Settings) -> int:
    """Distinct (enterprise, device, time) in the bucket: stored messages."""
    s = settings.influxdb
    token = SecretStore(settings.run_dir / "secrets").get_or_create(
        "influxdb-operator-token", s.token
    )
    query = (
        f'from(bucket: "{s.bucket}") |> range(start: 0) '
        '|> filter(fn: (r) => r._field == "value") '
        '|> group(columns: ["enterprise", "device"]) '
        '|> unique(column: "_time") |> count()'
    )
    with InfluxDBClient(url=s.url, token=token, org=s.org, timeout=120_000) as client:
        tables = client.query_api().query(query)
    return sum(int(record.get_value()) for table in tables for record in table.records)


def create_bucket(settings: Settings) -> None:
    s = settings.influxdb
    token = SecretStore(settings.run_dir / "secrets").get_or_create(
        "influxdb-operator-token", s.token
    )
    with InfluxDBClient(url=s.url, token=token, org=s.org) as client:
        api = client.buckets_api()
        if api.find_bucket_by_name(s.bucket) is None:
            api.create_bucket(
                bucket_name=s.bucket,
                org=s.org,
                retention_rules=BucketRetentionRules(
                    type="expire", every_seconds=400 * 86400
                ),
            )


async def _drop_internal_topics(bootstrap: str, app_id: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(app_id)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


# Processes -------------------------------------------------------------------


@contextmanager
def background_command(
    command: str, env: dict[str, str], folder: Path, *, ready: tuple[str, ...]
) -> Iterator[subprocess.Popen[bytes]]:
    """``riskwatch <command>`` in the background, until its log holds every
    line of ``ready``."""
    log_file = folder / f"{command}.log"
    argv = [sys.executable, "-m", "riskwatch", "--log-level", "INFO", command]
    with log_file.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )
    try:
        deadline = Deadline(120)
        while not all(line.encode() in log_file.read_bytes() for line in ready):
            if proc.poll() is not None or deadline.expired():
                raise DemoError(f"{command} did not start; see {log_file}")
            time.sleep(0.5)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def warning_receiver(
    settings: Settings, echo: Echo, folder: Path
) -> Iterator[WarningReceiver]:
    """The supervision-platform stand-in, on its own thread and event loop."""
    url = settings.platform.webhook_url or "http://127.0.0.1:8787/warnings"
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    receiver = WarningReceiver(
        host,
        int(port),
        secret=signing_secret(settings),
        out=folder / "warnings.jsonl",
        echo=echo,
    )
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(receiver.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="demo-receiver", daemon=True)
    thread.start()
    if not started.wait(10):
        raise DemoError(f"the warning receiver did not start on {url}")
    try:
        yield receiver
    finally:
        asyncio.run_coroutine_threadsafe(receiver.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# Summary -----------------------------------------------------------------------


def _nab_windows(nab_dir: Path) -> list[tuple[datetime, datetime]]:
    windows = json.loads((nab_dir / "combined_windows.json").read_text())
    return [(_nab_time(a), _nab_time(b)) for a, b in windows.get(NAB_FILE, [])]


def _nab_time(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


_LEVELS = {level.value: level for level in Level}


def warnings_by_level(warnings: Iterable[dict[str, Any]]) -> Counter[str]:
    """How many warnings reached each level: each warning (its ``id``) once,
    at the most severe level any version of it was at (I, then II, III, IV),
    so a warning that opened at II and escalated to I counts as I. A version
    without a known level counts its warning as ``?`` unless another has one.

    >>> warnings_by_level([
    ...     {"id": "W1", "level": "II", "status": "open"},
    ...     {"id": "W1", "level": "I", "status": "open"},
    ...     {"id": "W1", "level": "II", "status": "resolved"},
    ...     {"id": "W2", "level": "III", "status": "open"},
    ... ])
    Counter({'I': 1, 'III': 1})
    """
    reached: dict[str, Level | None] = {}
    for warning in warnings:
        ident = str(warning.get("id"))
        stated = [warning.get("level")]
        stated += [entry.get("level") for entry in warning.get("levels") or ()]
        known = [_LEVELS[level] for level in stated if level in _LEVELS]
        before = reached.get(ident)
        if before is not None:
            known.append(before)
        reached[ident] = most_severe(known) if known else None
    return Counter("?" if level is None else level.value for level in reached.values())


def _warned_within(
    warnings: list[dict[str, Any]], start: datetime, end: datetime
) -> bool:
    for warning in warnings:
        if (
            warning.get("enterprise_id"),
            warning.get("device_id"),
            warning.get("status"),
        ) != (REPLAY_ENTERPRISE, REPLAY_DEVICE, "open"):
            continue
        began = datetime.fromisoformat(str(warning.get("start_time")))
        if start <= began <= end:
            return True
    return False


def _print_summary(summary: DemoSummary, echo: Echo) -> None:
    """The summary; every count of messages published says which it counts
    (readings, malformed, or both: "in all").

    >>> _print_summary(DemoSummary(published=10, published_bad=2, stored=10,
    ...     dead_lettered=2), print)  # doctest: +ELLIPSIS
    == summary
    published readings     10
    published malformed    2
    published in all       12
    stored in InfluxDB     10
    dead-lettered          2
    published in all = stored + dead-lettered: yes (12 = 10 + 2)
    ...
    """
    echo("== summary")
    echo(f"published readings     {summary.published}")
    echo(f"published malformed    {summary.published_bad}")
    echo(f"published in all       {summary.published_all}")
    echo(f"stored in InfluxDB     {summary.stored}")
    echo(f"dead-lettered          {summary.dead_lettered}")
    verdict = "yes" if summary.balanced else "NO"
    echo(
        f"published in all = stored + dead-lettered: {verdict} "
        f"({summary.published_all} = {summary.stored} + {summary.dead_lettered})"
    )
    levels = ", ".join(
        f"{lvl}: {n}" for lvl, n in sorted(summary.warnings_by_level.items())
    )
    if levels:
        levels += " (each warning at the most severe level it reached)"
    echo(f"warnings by level      {levels or 'none'}")
    for start, end, hit in summary.windows:
        echo(
            f"labelled window {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC: "
            f"{'warned' if hit else 'missed'}"
        )


__all__ = [
    "DemoPlan",
    "DemoSummary",
    "count_stored_messages",
    "run_demo",
    "warnings_by_level",
]
