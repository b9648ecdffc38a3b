"""The API's views of the warning store and the silences, and its command sink.

The API never changes a warning itself: it sends a command to the commands
topic and waits until the lifecycle agent's new version reaches the compacted
warning store, which :class:`WarningView` follows, or until the agent's
refusal of it reaches the refusals topic, which :class:`RefusalView` follows.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import Protocol

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from alert_rules.lifecycle import Refusal
from alert_rules.silences import SilenceView
from alert_rules.warning import WarningRecord
from riskwatch.compacted import CompactedView, ModelView
from riskwatch.registry import Enterprise

log = logging.getLogger(__name__)

__all__ = [
    "KafkaSink",
    "RefusalView",
    "Registry",
    "SilenceView",
    "Sink",
    "WarningView",
]

REFUSALS_KEPT = 4096
"""Refusals remembered by command id, for a request that begins waiting only
after its refusal was read (the worker can be that quick)."""


class Sink(Protocol):
    """Produces one record; raises if the broker did not take it."""

    async def send(self, topic: str, key: bytes, value: bytes) -> None: ...

    async def reachable(self, timeout_s: float) -> bool:
        """Whether the brokers answer now, within ``timeout_s``."""
        ...


class Registry(Protocol):
    """The enterprises a silence may name: the worker's own view of the
    registry topic (:class:`stream_jobs.registry_view.RegistryView`).

    ``ready`` is set once the topic has been read to its end; before that a
    missing enterprise may only not have been read yet.
    """

    @property
    def ready(self) -> asyncio.Event: ...

    def get(self, key: str) -> Enterprise | None: ...


class KafkaSink:
    """A :class:`Sink` on an aiokafka producer that waits for all replicas."""

    def __init__(self, bootstrap: str) -> None:
        # A request waits at most this long for Kafka, then answers 503.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", request_timeout_ms=5000
        )

    async def start(self) -> None:
        await self._producer.start()

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        await self._producer.send_and_wait(topic, value=value, key=key)

    async def reachable(self, timeout_s: float) -> bool:
        # A metadata request through the producer's own connections: it tells
        # whether a command would get through, and aiokafka runs one request
        # for every caller asking at the same time.
        try:
            return bool(
                await asyncio.wait_for(
                    self._producer.client.force_metadata_update(), timeout_s
                )
            )
        except TimeoutError:
            return False

    async def stop(self) -> None:
        await self._producer.stop()


class WarningView(ModelView[WarningRecord]):
    """Every warning's latest version, from the warning store topic."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(
            bootstrap,
            topic,
            WarningRecord,
            label="warning store",
            what="warning",
            logger=log,
        )
        # Requests waiting for their command's version or refusal:
        # warning -> command -> future.
        self._waiting: dict[
            str, dict[str, asyncio.Future[WarningRecord | Refusal]]
        ] = {}
        self._refused: OrderedDict[str, Refusal] = OrderedDict()

    def records(self) -> Iterable[WarningRecord]:
        return self._items.values()

    def accept(self, key: str, item: WarningRecord) -> bool:
        # The store is written by one agent in order; an older version can
        # only come from a replay and must not hide the newer one.
        known = self._items.get(key)
        return known is None or item.version >= known.version

    def stored(self, key: str, item: WarningRecord) -> None:
        waiting = self._waiting.get(key, {})
        for entry in item.history:
            future = waiting.get(entry.command or "")
            if future is not None and not future.done():
                future.set_result(item)

    def refused(self, refusal: Refusal) -> None:
        """A command the lifecycle agent refused: the request waiting for it,
        if any, has its answer."""
        self._refused[refusal.command] = refusal
        self._refused.move_to_end(refusal.command)
        while len(self._refused) > REFUSALS_KEPT:
            self._refused.popitem(last=False)
        future = self._waiting.get(refusal.warning, {}).get(refusal.command)
        if future is not None and not future.done():
            future.set_result(refusal)

    async def applied(
        self, warning: str, command: str, timeout_s: float
    ) -> WarningRecord | Refusal | None:
        """The version of ``warning`` that ``command`` made once it is in the
        store, or the lifecycle agent's refusal of it once read; None if
        neither comes within ``timeout_s``."""
        record = self._items.get(warning)
        if record and any(e.command == command for e in record.history):
            return record
        refusal = self._refused.get(command)
        if refusal is not None:
            return refusal
        future: asyncio.Future[WarningRecord | Refusal] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting.setdefault(warning, {})[command] = future
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return None
        finally:
            waiting = self._waiting.get(warning, {})
            waiting.pop(command, None)
            if not waiting:
                self._waiting.pop(warning, None)


class RefusalView(CompactedView):
    """Follows the lifecycle agent's refusals (a topic of a week's records,
    not compacted: each is read once) and hands each to ``warnings``."""

    def __init__(self, bootstrap: str, topic: str, warnings: WarningView) -> None:
        super().__init__(bootstrap, topic)
        self._warnings = warnings
        self._read = 0

    def __len__(self) -> int:
        return self._read

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:
            return
        try:
            refusal = Refusal.model_validate_json(value)
        except ValidationError as exc:
            log.warning(
                "refusal record invalid key=%r: %s",
                key,
                exc.errors(include_url=False)[0]["msg"],
            )
            return
        self._read += 1
        self._warnings.refused(refusal)
