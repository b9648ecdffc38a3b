"""The fence around paho-mqtt: its network thread only hands messages over.

paho runs its callbacks on its own thread. Here they do no work and never
raise: ``on_message`` copies the message into an :class:`Inbound` and passes it
to the asyncio loop with ``call_soon_threadsafe``; everything else (validation,
Kafka, acknowledgement) happens on the loop.

Acknowledgements are manual (``manual_ack=True``): a QoS 1 message is
acknowledged only after Kafka has acknowledged its record, so a gateway that
dies loses nothing; the broker redelivers what was not acknowledged when the
persistent session reconnects. The broker keeps at most ``receive_maximum``
unacknowledged messages in flight to us (MQTT v5 flow control), which bounds
the gateway's queue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inbound:
    """One received MQTT message, detached from paho's objects."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool
    dup: bool
    received_ns: int
    # Which connection delivered it: a message id is only meaningful on the
    # connection it came on (see MqttSubscriber.ack).
    generation: int


class MqttSubscriber:
    """A persistent-session MQTT v5 subscriber with manual acknowledgement."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        username: str,
        password: str,
        topic_filter: str,
        session_expiry_s: int,
        receive_maximum: int,
        deliver: Callable[[Inbound], Coroutine[Any, Any, None]],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._host, self._port = host, port
        self._filter = topic_filter
        self._deliver = deliver
        self._stopping = False
        self._loop = loop
        self._generation = 0
        self._lock = threading.Lock()
        self.connected = asyncio.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._props = Properties(PacketTypes.CONNECT)
        self._props.SessionExpiryInterval = session_expiry_s
        self._props.ReceiveMaximum = receive_maximum

    def start(self) -> None:
        self._client.connect_async(
            self._host,
            self._port,
            keepalive=30,
            clean_start=False,
            properties=self._props,
        )
        self._client.loop_start()

    def stop(self) -> None:
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()

    def ack(self, message: Inbound) -> bool:
        """Acknowledge a QoS 1 message on the connection that delivered it.

        Returns False (and sends nothing) when that connection is gone: the
        broker will redeliver the message on the new one, and acknowledging
        its old id there could acknowledge a different message.
        """
        if message.qos == 0:
            return True
        with self._lock:
            if message.generation != self._generation:
                return False
            self._client.ack(message.mid, message.qos)
            return True

    # paho callbacks: on paho's thread; no work, never raise ------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        try:
            if reason.is_failure:
                log.error("mqtt connect refused reason=%s", reason)
                return
            with self._lock:
                self._generation += 1
            log.info(
                "mqtt connected host=%s port=%s session_present=%s",
                self._host,
                self._port,
                flags.session_present,
            )
            client.subscribe(self._filter, qos=1)
            self._loop.call_soon_threadsafe(self.connected.set)
        except Exception:  # a raising callback would kill paho's thread
            log.exception("mqtt on_connect failed")

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        try:
            for reason in reasons:
                if reason.is_failure:
                    log.error(
                        "mqtt subscribe refused filter=%s reason=%s",
                        self._filter,
                        reason,
                    )
                else:
                    log.info("mqtt subscribed filter=%s", self._filter)
        except Exception:
            log.exception("mqtt on_subscribe failed")

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        try:
            log.warning("mqtt disconnected reason=%s; paho reconnects", reason)
            self._loop.call_soon_threadsafe(self.connected.clear)
        except Exception:
            log.exception("mqtt on_disconnect failed")

    def _on_message(
        self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage
    ) -> None:
        try:
            inbound = Inbound(
                topic=msg.topic,
                payload=bytes(msg.payload),
                mid=msg.mid,
                qos=msg.qos,
                retain=bool(msg.retain),
                dup=bool(msg.dup),
                received_ns=time.time_ns(),
                generation=self._generation,
            )
            # Blocking paho's thread here is the back-pressure: while the
            # gateway's queue is full, paho stops reading and the broker keeps
            # the messages. Waits in short steps so that stop() is not held up.
            future = asyncio.run_coroutine_threadsafe(
                self._deliver(inbound), self._loop
            )
            while not self._stopping:
                try:
                    future.result(timeout=1.0)
                    break
                except concurrent.futures.TimeoutError:
                    continue
        except Exception:
            log.exception("mqtt on_message failed topic=%s", getattr(msg, "topic", "?"))
