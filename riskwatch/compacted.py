"""A process's view of a compacted Kafka topic: every key's latest value.

The view reads *all* partitions of the topic from the beginning (no consumer
group, nothing committed), then follows it until cancelled, so every process
holding one sees every key. ``ready`` is set once the end offsets seen at the
start have been reached: before that the view is incomplete.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod

from aiokafka import AIOKafkaConsumer, TopicPartition

log = logging.getLogger(__name__)


class CompactedView(ABC):
    """Follows one compacted topic; subclasses keep what :meth:`apply` gets."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self.ready = asyncio.Event()  # set once the topic has been read to its end

    @abstractmethod
    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the topic: a value, or a tombstone (None)."""

    @abstractmethod
    def __len__(self) -> int: ...

    def on_ready(self) -> None:
        """Called once, when the view has caught up; logs by default."""
        log.info("view loaded topic=%s keys=%s", self._topic, len(self))

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
                if not self.ready.is_set() and await _caught_up(
                    consumer, partitions, end
                ):
                    self.ready.set()
                    self.on_ready()
        finally:
            await consumer.stop()


async def _caught_up(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    end: dict[TopicPartition, int],
) -> bool:
    for tp in partitions:
        if await consumer.position(tp) < end[tp]:
            return False
    return True
