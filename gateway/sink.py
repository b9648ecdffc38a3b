"""Where the gateway sends records: Kafka in production, memory in tests.

A sink's ``send`` starts a produce and returns an awaitable that completes when
the broker has acknowledged the record (``acks=all``), so the caller can keep
many records in flight and still acknowledge MQTT messages in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from riskwatch.errors import RiskwatchError

log = logging.getLogger(__name__)


class SinkError(RiskwatchError):
    """A record could not be produced; ``retryable`` says whether to try again."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Sink(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, topic: str, key: bytes, value: bytes) -> Awaitable[None]:
        """Enqueue a record; await the result for the broker's acknowledgement.

        Raises:
            SinkError: from the returned awaitable when the record failed.
        """
        ...


class KafkaSink:
    """An idempotent aiokafka producer with ``acks=all``."""

    def __init__(self, bootstrap: str, *, client_id: str) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            acks="all",
            # Idempotence keeps each partition's order and drops the broker's
            # duplicates when aiokafka retries a batch internally.
            enable_idempotence=True,
            linger_ms=5,
            request_timeout_ms=15000,
        )

    async def start(self) -> None:
        try:
            await self._producer.start()
        except KafkaError as exc:
            raise SinkError(f"cannot connect to Kafka: {exc!r}") from exc

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, topic: str, key: bytes, value: bytes) -> Awaitable[None]:
        try:
            future = await self._producer.send(topic, value, key=key)
        except KafkaError as exc:
            raise SinkError(
                f"produce to {topic} failed: {exc!r}", retryable=exc.retriable
            ) from exc
        return _acknowledged(topic, future)


async def _acknowledged(topic: str, future: asyncio.Future[object]) -> None:
    try:
        await future
    except KafkaError as exc:
        raise SinkError(
            f"produce to {topic} failed: {exc!r}", retryable=exc.retriable
        ) from exc


# aiokafka's default max_request_size: a larger record fails at once, and no
# retry helps (MessageSizeTooLargeError is not retriable).
KAFKA_MAX_RECORD_BYTES = 1_048_576


class MemorySink:
    """Records kept in a list; can be told to fail, for tests.

    Like the Kafka producer, it refuses a record larger than
    ``max_record_bytes`` with a non-retryable error.
    """

    def __init__(self, max_record_bytes: int = KAFKA_MAX_RECORD_BYTES) -> None:
        self.max_record_bytes = max_record_bytes
        self.records: list[tuple[str, bytes, bytes]] = []
        self.fail_next: list[SinkError] = []
        self.fail_topics: dict[str, SinkError] = {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, topic: str, key: bytes, value: bytes) -> Awaitable[None]:
        error = self.fail_topics.get(topic) or (
            self.fail_next.pop(0) if self.fail_next else None
        )
        if error is None and len(key) + len(value) > self.max_record_bytes:
            error = SinkError(
                f"produce to {topic} failed: record of {len(key) + len(value)} "
                f"bytes exceeds max_request_size {self.max_record_bytes}",
                retryable=False,
            )

        async def result() -> None:
            await asyncio.sleep(0)
            if error is not None:
                raise error
            self.records.append((topic, key, value))

        return result()
