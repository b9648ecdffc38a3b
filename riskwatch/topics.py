"""The Kafka topics riskwatch owns, with explicit partition counts.

Partitions are the unit of scale-out: more Faust workers and gateway instances
share the load only up to the partition count of the topic they read. Readings
are keyed by device, so each device's readings stay in order on one partition.
"""

from __future__ import annotations

from dataclasses import dataclass

from riskwatch.settings import KafkaSettings

READINGS = "riskwatch.readings.v1"
DEAD_LETTER = "riskwatch.dead-letter.v1"
ANOMALIES = "riskwatch.anomalies.v1"
WARNINGS = "riskwatch.warnings.v1"
WARNINGS_UNDELIVERED = "riskwatch.warnings.undelivered.v1"
WARNING_COMMANDS = "riskwatch.warnings.commands.v1"
WARNING_STORE = "riskwatch.warnings.store.v1"
WARNING_REFUSALS = "riskwatch.warnings.refused.v1"
SILENCES = "riskwatch.silences.v1"
ENTERPRISES = "riskwatch.registry.enterprises.v1"

_WEEK_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """A topic as riskwatch wants it to exist."""

    name: str
    partitions: int
    compacted: bool = False
    retention_ms: int | None = None

    def configs(self) -> dict[str, str]:
        configs = {"cleanup.policy": "compact" if self.compacted else "delete"}
        if self.retention_ms is not None:
            configs["retention.ms"] = str(self.retention_ms)
        return configs


def topic_specs(kafka: KafkaSettings) -> list[TopicSpec]:
    """Every topic of the pipeline, sized from the settings."""
    default = kafka.default_partitions
    return [
        TopicSpec(READINGS, kafka.readings_partitions, retention_ms=_WEEK_MS),
        # Bad input is kept for a month so that operators can replay it.
        TopicSpec(DEAD_LETTER, default, retention_ms=4 * _WEEK_MS),
        TopicSpec(ANOMALIES, default, retention_ms=4 * _WEEK_MS),
        # Warnings are the office's case records: never expired by Kafka.
        TopicSpec(WARNINGS, default, retention_ms=-1),
        # Warnings the platform never acknowledged, kept until re-delivered
        # by hand: each is a case the office may not know about.
        TopicSpec(WARNINGS_UNDELIVERED, default, retention_ms=-1),
        # Every change asked of a warning, by the engine or an officer, keyed
        # by warning id: the lifecycle agent's input and the requests' record.
        # Its partitions must match the warning-state table's (co-partitioned).
        TopicSpec(WARNING_COMMANDS, default, retention_ms=-1),
        # The latest version of each warning, keyed by warning id: what the
        # officer API reads.
        TopicSpec(WARNING_STORE, default, compacted=True),
        # The commands the lifecycle agent refused (a lost race, a warning
        # that moved on), keyed by warning id: the officer API answers the
        # request that sent one 409 at once. A week, like the readings.
        TopicSpec(WARNING_REFUSALS, default, retention_ms=_WEEK_MS),
        # Silences asked by officers, keyed by silence id.
        TopicSpec(SILENCES, 1, compacted=True),
        # Keyed state: the latest record per enterprise id is the registry.
        TopicSpec(ENTERPRISES, 1, compacted=True),
    ]
