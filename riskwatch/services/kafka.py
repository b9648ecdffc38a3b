"""Apache Kafka, single node in KRaft mode, from Maven Central's jars.

The broker's jars are gathered once by Maven into the cache folder; storage is
formatted once; the broker runs on the machine's JDK with a capped heap.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import uuid
from importlib import resources
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from riskwatch.errors import InstallError, ServiceError
from riskwatch.services.base import Service, port_open, run_step
from riskwatch.topics import TopicSpec, topic_specs

log = logging.getLogger(__name__)

_LOG4J = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
"""


def new_cluster_id() -> str:
    """A random Kafka cluster id: a UUID in unpadded URL-safe base64.

    Like Kafka's own ``random-uuid``, never one that starts with ``-``, which
    a command line would read as an option (one id in 64 does).
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and Path(home, "bin", "java").is_file():
        return str(Path(home, "bin", "java"))
    found = shutil.which("java")
    if found is None:
        raise InstallError(
            "kafka", "no java on PATH or in JAVA_HOME; install a JDK 17 or newer"
        )
    return found


class Kafka(Service):
    name = "kafka"

    @property
    def host(self) -> str:
        return self.settings.kafka.host

    @property
    def port(self) -> int:
        return self.settings.kafka.port

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.settings.kafka.port, self.settings.kafka.controller_port)

    @property
    def libs(self) -> Path:
        return self.settings.cache_dir / f"kafka-{self.settings.kafka.version}" / "libs"

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    def install(self) -> None:
        stamp = self.libs.parent / ".complete"
        if stamp.exists():
            return
        mvn = shutil.which("mvn")
        if mvn is None:
            raise InstallError(self.name, "Maven (mvn) is not on PATH; install it")
        version = self.settings.kafka.version
        self.report(f"kafka: fetching Kafka {version} jars with Maven (once)")
        if self.libs.exists():
            shutil.rmtree(self.libs)
        pom = self.libs.parent / "pom.xml"
        pom.parent.mkdir(parents=True, exist_ok=True)
        pom.write_bytes(
            resources.files("riskwatch.services").joinpath("kafka-pom.xml").read_bytes()
        )
        run_step(
            "kafka",
            [
                mvn,
                "-B",
                "-q",
                "-f",
                str(pom),
                f"-Dkafka.version={version}",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={self.libs}",
                "-DincludeScope=runtime",
            ],
            log_file=self.libs.parent / "install.log",
            report=self.report,
            timeout_s=1800,
        )
        stamp.touch()

    def server_properties(self) -> str:
        k = self.settings.kafka
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{k.host}:{k.controller_port}",
            "listeners": (
                f"PLAINTEXT://{k.host}:{k.port},CONTROLLER://{k.host}:{k.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://{k.host}:{k.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": (
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
            ),
            "log.dirs": str(self.data_dir),
            "num.partitions": str(k.default_partitions),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            # A single member group need not wait for others to join.
            "group.initial.rebalance.delay.ms": "0",
            # Two cores: a few threads each is plenty.
            "num.network.threads": "2",
            "num.io.threads": "4",
            "log.retention.hours": "168",
            # Every topic is declared on purpose: ours by riskwatch with
            # explicit partition counts, Faust's changelogs by Faust. A typo in
            # a topic name must fail, not create a stray topic.
            "auto.create.topics.enable": "false",
        }
        header = "# Generated by riskwatch from its settings; edits are overwritten.\n"
        return header + "".join(f"{key}={value}\n" for key, value in props.items())

    def prepare(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "server.properties").write_text(
            self.server_properties(), encoding="utf-8"
        )
        (self.folder / "log4j.properties").write_text(_LOG4J, encoding="utf-8")
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = new_cluster_id()
        self.report("kafka: formatting storage (first start)")
        run_step(
            "kafka",
            [
                *self._java_argv(heap_mb=256),
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",
                "-c",
                str(self.folder / "server.properties"),
            ],
            log_file=self.log_file,
            report=self.report,
            timeout_s=300,
        )

    def _java_argv(self, heap_mb: int) -> list[str]:
        return [
            _java(),
            f"-Xms{min(heap_mb, 256)}m",
            f"-Xmx{heap_mb}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.folder / 'log4j.properties'}",
            f"-Dkafka.logs.dir={self.folder}",
            "-cp",
            f"{self.libs}/*",
        ]

    def command(self) -> list[str]:
        return [
            *self._java_argv(self.settings.kafka.heap_mb),
            "kafka.Kafka",
            str(self.folder / "server.properties"),
        ]

    def problem(self) -> str | None:
        # aiokafka logs every refused connection at ERROR; a broker that does
        # not listen yet is simply not healthy.
        if not port_open(self.host, self.port):
            return f"not listening on {self.address}"
        try:
            if asyncio.run(self._probe()):
                return None
        except (TimeoutError, KafkaError, OSError) as exc:
            return f"metadata request failed ({exc!r})"
        return "metadata lists no broker yet"

    async def _probe(self) -> bool:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.settings.kafka.bootstrap, request_timeout_ms=3000
        )
        try:
            await asyncio.wait_for(admin.start(), 5)
            cluster = await asyncio.wait_for(admin.describe_cluster(), 5)
            return bool(cluster.get("brokers"))
        finally:
            await admin.close()

    def after_start(self) -> None:
        try:
            created, grown = asyncio.run(
                ensure_topics_at(
                    self.settings.kafka.bootstrap, topic_specs(self.settings.kafka)
                )
            )
        except TopicError as exc:
            raise ServiceError(self.name, str(exc)) from exc
        except (KafkaError, TimeoutError, OSError) as exc:
            raise ServiceError(
                self.name, f"creating topics on {self.address} failed: {exc!r}"
            ) from exc
        if created:
            self.report(f"kafka: created topics {', '.join(created)}")
        if grown:
            self.report(f"kafka: added partitions to {', '.join(grown)}")


class TopicError(Exception):
    """The broker refused to create or grow some topics."""

    def __init__(self, action: str, failures: list[str]) -> None:
        super().__init__(f"{action} failed: {'; '.join(failures)}")
        self.failures = failures


def _topic_failures(response: object) -> list[str]:
    """``topic: ErrorName (message)`` for every failed topic of a response.

    A CreateTopics or CreatePartitions response succeeds as a request even
    when single topics fail; their error codes sit in ``topic_errors``.
    """
    failures = []
    for entry in getattr(response, "topic_errors", ()):
        topic, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 and entry[2] else ""
        # Lost a race with another creator: the topic is there, as wanted.
        if code in (0, TopicAlreadyExistsError.errno):
            continue
        name = for_code(code).__name__
        failures.append(f"{topic}: {name}" + (f" ({message})" if message else ""))
    return failures


async def ensure_topics_at(
    bootstrap: str, specs: list[TopicSpec]
) -> tuple[list[str], list[str]]:
    """:func:`ensure_topics` with an admin client of its own on ``bootstrap``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await asyncio.wait_for(admin.start(), 30)
    try:
        return await asyncio.wait_for(ensure_topics(admin, specs), 120)
    finally:
        await admin.close()


async def ensure_topics(
    admin: AIOKafkaAdminClient, specs: list[TopicSpec]
) -> tuple[list[str], list[str]]:
    """Create missing topics and grow those with fewer partitions than wanted.

    Partitions are never removed (Kafka cannot); a topic with more than
    configured is left as it is with a warning. Growing a topic moves keys to
    other partitions, so per-key order holds only from that moment on.

    Args:
        admin: a started admin client; the caller closes it.

    Returns:
        The names of the topics created and of those that were grown.

    Raises:
        TopicError: the broker refused some topics; names each with its error.
    """
    existing = await _partition_counts(admin)
    missing = [s for s in specs if s.name not in existing]
    if missing:
        response = await admin.create_topics(
            [
                NewTopic(s.name, s.partitions, 1, topic_configs=s.configs())
                for s in missing
            ]
        )
        failures = _topic_failures(response)
        if failures:
            raise TopicError("creating topics", failures)
    grow = {
        s.name: NewPartitions(s.partitions)
        for s in specs
        if s.name in existing and existing[s.name] < s.partitions
    }
    for s in specs:
        if s.name in existing and existing[s.name] > s.partitions:
            log.warning(
                "topic=%s partitions=%s wanted=%s: cannot shrink, left as is",
                s.name,
                existing[s.name],
                s.partitions,
            )
    if grow:
        failures = _topic_failures(await admin.create_partitions(grow))
        if failures:
            raise TopicError("adding partitions", failures)
    return [s.name for s in missing], sorted(grow)


async def _partition_counts(admin: AIOKafkaAdminClient) -> dict[str, int]:
    names = await admin.list_topics()
    if not names:
        return {}
    described = await admin.describe_topics(list(names))
    return {t["topic"]: len(t["partitions"]) for t in described}
