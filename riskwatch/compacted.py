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
from typing import Generic, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import BaseModel, ValidationError

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
        # Subscribed without a group: aiokafka then assigns every partition
        # and, with nothing committed, starts each at its beginning. (Assigning
        # by hand needs the partition list, which the consumer's metadata
        # lacks for a topic it is not subscribed to: it saw only partition 0.)
        consumer = AIOKafkaConsumer(
            self._topic,
            bootstrap_servers=self._bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            while not consumer.assignment():
                await asyncio.sleep(0.1)
            partitions = sorted(consumer.assignment())
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


M = TypeVar("M", bound=BaseModel)


class ModelView(CompactedView, Generic[M]):
    """The latest ``model`` per key; a tombstone removes the key.

    Args:
        bootstrap: the Kafka bootstrap address.
        topic: the compacted topic.
        model: what each value parses as; a value that does not is logged
            and skipped (the key keeps its previous value).
        label: names the view in log lines (``registry``).
        what: the log field of the key (``enterprise=``).
        logger: where the lines go (the owner's module logger).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        model: type[M],
        *,
        label: str,
        what: str,
        logger: logging.Logger = log,
    ) -> None:
        super().__init__(bootstrap, topic)
        self._model, self._label, self._what, self._log = model, label, what, logger
        self._items: dict[str, M] = {}

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> M | None:
        return self._items.get(key)

    def values(self) -> list[M]:
        """Every value held, in the order first read."""
        return list(self._items.values())

    def accept(self, key: str, item: M) -> bool:
        """Whether to keep ``item`` under ``key``; a hook, True by default."""
        return True

    def stored(self, key: str, item: M) -> None:
        """Called after ``item`` was kept; a hook."""

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            self._log.warning(
                "%s record without key skipped topic=%s", self._label, self._topic
            )
            return
        ident = key.decode(errors="replace")
        if value is None:
            self._items.pop(ident, None)
            self._log.info("%s removed %s=%s", self._label, self._what, ident)
            return
        try:
            item = self._model.model_validate_json(value)
        except ValidationError as exc:
            self._log.warning(
                "%s record invalid %s=%s: %s",
                self._label,
                self._what,
                ident,
                exc.errors(include_url=False)[0]["msg"],
            )
            return
        if self.accept(ident, item):
            self._items[ident] = item
            self.stored(ident, item)


async def _caught_up(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    end: dict[TopicPartition, int],
) -> bool:
    for tp in partitions:
        if await consumer.position(tp) < end[tp]:
            return False
    return True
