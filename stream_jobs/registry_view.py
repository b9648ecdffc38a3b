"""Every worker's view of the enterprise registry, read from its compacted topic.

Each worker reads *all* partitions of the registry topic from the beginning
(no consumer group), then follows it, so a new ``riskwatch registry load``
takes effect within a second and without a restart.

Why not a Faust GlobalTable: with a changelog topic of its own name (our
registry topic), faust-streaming 0.15's partition assignor looks the table up
under its default changelog name, raises KeyError inside the group join and
the worker waits forever without logging it.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from riskwatch.registry import Enterprise
from riskwatch.topics import ENTERPRISES

log = logging.getLogger(__name__)


class RegistryView:
    """Enterprises by id, kept current from the registry topic."""

    def __init__(self, bootstrap: str, topic: str = ENTERPRISES) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._enterprises: dict[str, Enterprise] = {}
        self.ready = asyncio.Event()  # set once the topic has been read to its end

    def get(self, enterprise_id: str) -> Enterprise | None:
        return self._enterprises.get(enterprise_id)

    def __len__(self) -> int:
        return len(self._enterprises)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the registry topic: an enterprise, or a tombstone."""
        if key is None:
            log.warning("registry record without key skipped topic=%s", self._topic)
            return
        ident = key.decode(errors="replace")
        if value is None:
            self._enterprises.pop(ident, None)
            log.info("registry removed enterprise=%s", ident)
            return
        try:
            enterprise = Enterprise.model_validate_json(value)
        except ValidationError as exc:
            log.warning(
                "registry record invalid enterprise=%s: %s",
                ident,
                exc.errors(include_url=False)[0]["msg"],
            )
            return
        if enterprise.id != ident:
            log.warning(
                "registry key %s holds enterprise=%s; skipped", ident, enterprise.id
            )
            return
        self._enterprises[ident] = enterprise

    async def follow(self) -> None:
        """Read the topic from the beginning, then follow it until cancelled."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        try:
            await consumer.topics()  # fetches the cluster metadata
            partitions = [
                TopicPartition(self._topic, p)
                for p in sorted(consumer.partitions_for_topic(self._topic) or {0})
            ]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            end = await consumer.end_offsets(partitions)
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        self.apply(record.key, record.value)
                if not self.ready.is_set() and await self._caught_up(
                    consumer, partitions, end
                ):
                    self.ready.set()
                    log.info("registry loaded enterprises=%s", len(self))
        finally:
            await consumer.stop()

    @staticmethod
    async def _caught_up(
        consumer: AIOKafkaConsumer,
        partitions: list[TopicPartition],
        end: dict[TopicPartition, int],
    ) -> bool:
        for tp in partitions:
            if await consumer.position(tp) < end[tp]:
                return False
        return True
