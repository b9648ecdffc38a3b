"""The gateway's work: validate each MQTT message, produce it to Kafka, and
acknowledge it only once Kafka has it.

Two tasks share a bounded FIFO of messages in flight:

* the *intake* validates a message and starts its produce (to the readings
  topic, or to the dead-letter topic with the reason when it is invalid);
* the *acker* waits for the oldest produce to finish and then acknowledges its
  MQTT message, so acknowledgements go out in the order messages came in.

A message whose metrics are valid but some of whose values no working sensor
can report (:func:`riskwatch.contracts.range_error`) is split: one dead
letter per such metric, naming it, then the reading of the others, if any;
it is acknowledged once all of them are in Kafka.

A produce that fails is retried with backoff; after ``produce_attempts`` the
message is dead-lettered with the Kafka error as its reason and acknowledged,
so it is neither lost nor redelivered forever. Only when the dead-letter
produce fails too (Kafka is down) is the message left unacknowledged; the
gateway then keeps retrying and the broker keeps the message.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gateway.mqtt_adapter import Inbound
from gateway.sink import Sink, SinkError
from riskwatch.contracts import (
    DeadLetter,
    Measurement,
    PayloadError,
    ReadingRecord,
    parse_payload,
    parse_status,
    parse_topic,
    range_error,
    to_json_bytes,
)
from riskwatch.settings import GatewaySettings
from riskwatch.topics import DEAD_LETTER, READINGS

log = logging.getLogger(__name__)

Ack = Callable[[Inbound], bool]
# How long a stopping gateway lets the acker settle what is in flight; what
# is left is redelivered by the broker, so a quick stop loses nothing.
ACKER_STOP_S = 5.0


@dataclass
class Counters:
    """What the gateway has done since it started."""

    received: int = 0
    produced: int = 0
    dead_lettered: int = 0
    status_messages: int = 0
    # Empty telemetry bodies: MQTT's way of clearing a retained message.
    cleared_retained: int = 0
    redelivered: int = 0
    retained: int = 0
    produce_retries: int = 0
    acked: int = 0
    ack_skipped: int = 0
    backpressure: int = 0  # messages that arrived while the queue was full
    split: int = 0  # readings forwarded without their out-of-range metrics

    def line(self) -> str:
        return " ".join(f"{k}={v}" for k, v in vars(self).items())


@dataclass
class _Pending:
    message: Inbound
    topic: str
    key: bytes
    value: bytes
    result: Awaitable[None]
    dead_letter: bool
    ack: bool = True  # the message's last produce: acknowledge it once settled
    attempts: int = 1
    errors: list[str] = field(default_factory=list)


class Gateway:
    """Validates and forwards messages handed to :meth:`deliver`."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        topic_root: str,
        sink: Sink,
        ack: Ack,
        clock_ns: Callable[[], int] = time.time_ns,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.topic_root = topic_root
        self.sink = sink
        self._ack = ack
        self._clock_ns = clock_ns
        self._sleep = sleep
        self.counters = Counters()
        self._unsettled = 0  # handed over, not yet acknowledged or given up
        # The broker keeps at most receive_maximum messages in flight to us,
        # so a queue of that size plus slack never fills unless it misbehaves.
        self._incoming: asyncio.Queue[Inbound] = asyncio.Queue(
            settings.receive_maximum + 100
        )
        self._pending: asyncio.Queue[_Pending | None] = asyncio.Queue(
            settings.receive_maximum + 100
        )

    async def deliver(self, message: Inbound) -> None:
        """Hand a message over; waits while the queue is full.

        The MQTT adapter waits for this on paho's thread, so a full queue
        stops paho reading the socket and the broker holds further messages:
        back-pressure, never a dropped message. (Mosquitto 2.0.11 was seen
        sending more unacknowledged messages than our Receive Maximum.)
        """
        if self._incoming.full():
            self.counters.backpressure += 1
            log.warning(
                "gateway queue full, holding the broker back topic=%s queued=%s",
                message.topic,
                self._incoming.qsize(),
            )
        self._unsettled += 1
        await self._incoming.put(message)

    async def run(self) -> None:
        """Run intake and acker until cancelled."""
        acker = asyncio.create_task(self._acker(), name="gateway-acker")
        try:
            while True:
                message = await self._incoming.get()
                for pending in await self._start(message):
                    await self._pending.put(pending)
        finally:
            await self._pending.put(None)
            await asyncio.wait([acker], timeout=ACKER_STOP_S)
            acker.cancel()
            # Produces never waited for: their MQTT messages stay
            # unacknowledged, so the broker redelivers them to the next
            # gateway. Close them, or Python warns of coroutines never awaited.
            while not self._pending.empty():
                left = self._pending.get_nowait()
                if left is not None and inspect.iscoroutine(left.result):
                    left.result.close()

    async def drain(self) -> None:
        """Wait until every message handed over so far has been settled."""
        while self._unsettled:
            await asyncio.sleep(0.01)

    # Intake -----------------------------------------------------------------

    async def _start(self, message: Inbound) -> list[_Pending]:
        """The produces of one message, in order; the last acknowledges it."""
        self.counters.received += 1
        self.counters.redelivered += message.dup
        self.counters.retained += message.retain
        try:
            produces = self._convert(message)
        except PayloadError as error:
            produces = [self._rejection(message, error)]
        except _NothingToForward as nothing:
            setattr(
                self.counters,
                nothing.counter,
                getattr(self.counters, nothing.counter) + 1,
            )
            return [_Pending(message, "", b"", b"", _done(), dead_letter=False)]
        pending = [
            _Pending(
                message,
                topic,
                key,
                value,
                await self._send(topic, key, value),
                dead_letter=topic == DEAD_LETTER,
                ack=False,
            )
            for topic, key, value in produces
        ]
        pending[-1].ack = True
        return pending

    def _rejection(
        self, message: Inbound, error: PayloadError
    ) -> tuple[str, bytes, bytes]:
        log.warning(
            "rejected topic=%s field=%s reason=%s",
            message.topic,
            error.field,
            error.reason,
        )
        return DEAD_LETTER, message.topic.encode(), self._dead_letter(message, error)

    def _convert(self, message: Inbound) -> list[tuple[str, bytes, bytes]]:
        address = parse_topic(message.topic, self.topic_root)
        if address.kind == "status":
            parse_status(message.payload)
            raise _NothingToForward("status_messages")
        if not message.payload:
            # A retained telemetry message being cleared (mosquitto_pub -r
            # -n): it carries no reading and says nothing about the device.
            log.debug("retained message cleared topic=%s", message.topic)
            raise _NothingToForward("cleared_retained")
        payload = parse_payload(
            message.payload,
            now_ns=self._clock_ns(),
            max_skew_s=self.settings.max_future_skew_s,
            max_bytes=self.settings.max_payload_bytes,
            max_age_s=self.settings.max_age_s,
        )
        produces, kept = [], []
        for item in payload.metrics:
            error = range_error(item)
            if error is None:
                kept.append(Measurement(metric=item.metric, value=item.value))
            else:
                produces.append(self._rejection(message, error))
        if not kept:
            return produces
        self.counters.split += bool(produces)
        record = ReadingRecord(
            enterprise=address.enterprise,
            device=address.device,
            ts_ns=payload.ts,
            seq=payload.seq,
            metrics=kept,
            received_ns=message.received_ns,
            retained=message.retain,
        )
        log.debug(
            "accepted enterprise=%s device=%s ts_ns=%s metrics=%d",
            record.enterprise,
            record.device,
            record.ts_ns,
            len(kept),
        )
        return [*produces, (READINGS, record.key, to_json_bytes(record))]

    def _dead_letter(self, message: Inbound, error: PayloadError) -> bytes:
        return to_json_bytes(
            DeadLetter.of(
                source="mqtt",
                topic=message.topic,
                error=error,
                payload=message.payload,
                received_ns=message.received_ns,
                stage="gateway",
            )
        )

    async def _send(self, topic: str, key: bytes, value: bytes) -> Awaitable[None]:
        try:
            return await self.sink.send(topic, key, value)
        except SinkError as error:
            return _failed(error)

    # Acker ------------------------------------------------------------------

    async def _acker(self) -> None:
        while (pending := await self._pending.get()) is not None:
            await self._settle(pending)
            if not pending.ack:  # more produces of its message follow
                continue
            if self._ack(pending.message):
                self.counters.acked += 1
            else:
                self.counters.ack_skipped += 1
            self._unsettled -= 1

    async def _settle(self, pending: _Pending) -> None:
        """Wait until the message's record (or its dead letter) is in Kafka."""
        while True:
            try:
                await pending.result
            except SinkError as error:
                pending.errors.append(str(error))
                await self._retry(pending, error)
                continue
            if pending.topic == READINGS:
                self.counters.produced += 1
            elif pending.topic == DEAD_LETTER:
                self.counters.dead_lettered += 1
            return

    async def _retry(self, pending: _Pending, error: SinkError) -> None:
        self.counters.produce_retries += 1
        attempts = self.settings.produce_attempts
        if not pending.dead_letter and (
            pending.attempts >= attempts or not error.retryable
        ):
            log.error(
                "giving up producing topic=%s after attempts=%s, dead-lettering: %s",
                pending.message.topic,
                pending.attempts,
                error,
            )
            reason = PayloadError(
                "kafka", f"not produced after {pending.attempts} attempt(s): {error}"
            )
            pending.topic, pending.key = DEAD_LETTER, pending.message.topic.encode()
            pending.value = self._dead_letter(pending.message, reason)
            pending.dead_letter = True
            pending.attempts = 0
        backoff = min(
            30.0, self.settings.produce_backoff_s * 2 ** min(pending.attempts, 6)
        )
        if pending.dead_letter and pending.attempts >= attempts:
            log.error(
                "dead-letter topic unavailable, holding message topic=%s: %s",
                pending.message.topic,
                error,
            )
        else:
            log.warning(
                "produce failed topic=%s attempt=%s, retrying in %.1fs: %s",
                pending.message.topic,
                pending.attempts,
                backoff,
                error,
            )
        await self._sleep(backoff)
        pending.attempts += 1
        pending.result = await self._send(pending.topic, pending.key, pending.value)


class _NothingToForward(Exception):
    """A message acknowledged and not forwarded (a device status, an empty
    body clearing a retained message); ``counter`` is the count it adds to."""

    def __init__(self, counter: str) -> None:
        super().__init__(counter)
        self.counter = counter


async def _done() -> None:
    return None


async def _failed(error: SinkError) -> None:
    raise error
