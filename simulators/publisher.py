"""Publishing simulated readings over MQTT, paced by device time.

Everything paho-specific is fenced in :class:`PahoTransport`; the pacing
logic (:func:`publish_readings`) talks to the small :class:`Transport`
protocol, so unit tests run it against an in-memory fake with an injected
clock.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from riskwatch.contracts import OFFLINE, ONLINE, status_topic
from riskwatch.errors import ConfigError
from riskwatch.services.mosquitto import Mosquitto
from riskwatch.settings import Settings
from riskwatch.timeouts import Deadline
from simulators.errors import BrokerUnavailable, PublishError, SimulatorError
from simulators.fleet import Fleet
from simulators.readings import Reading, iso_utc

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class Transport(Protocol):
    """Where published messages go: the broker, or a fake in tests."""

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Send one QoS 1 message; may block while the in-flight window is full.

        Raises:
            PublishError: the message could not be handed over.
        """

    def flush(self, timeout_s: float) -> bool:
        """Wait until every message sent so far is acknowledged; False on
        timeout."""

    def close(self) -> None:
        """Disconnect cleanly (the broker then does not send the will)."""


@dataclass(frozen=True)
class Progress:
    """A snapshot for progress reports."""

    published: int
    total: int | None
    elapsed_s: float
    device_ts_s: float

    @property
    def rate(self) -> float:
        """Messages per second of wall time so far."""
        return self.published / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def line(self) -> str:
        of = f"/{self.total}" if self.total is not None else ""
        return (
            f"published={self.published}{of} rate={self.rate:.0f}/s "
            f"device_time={iso_utc(self.device_ts_s)} elapsed_s={self.elapsed_s:.1f}"
        )


@dataclass(frozen=True)
class PublishResult:
    """What a run published.

    Attributes:
        published: telemetry messages handed to the broker (status messages
            are not counted).
        elapsed_s: wall time of the run, seconds.
    """

    published: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        return self.published / self.elapsed_s if self.elapsed_s > 0 else 0.0


def publish_readings(
    readings: Iterable[Reading],
    transport: Transport,
    *,
    topic_root: str,
    speedup: float = 0.0,
    total: int | None = None,
    progress: Callable[[Progress], None] | None = None,
    progress_every_s: float = 2.0,
    flush_timeout_s: float = 30.0,
    clock: Clock = time.monotonic,
    wall: Clock = time.time,
    sleep: Sleep = time.sleep,
) -> PublishResult:
    """Publish readings in the order given, paced by their device time.

    Args:
        readings: in device-time order.
        speedup: device time runs this many times faster than wall time
            (1 = real time); 0 publishes as fast as the broker acknowledges.
        total: expected count, for progress lines only.
        progress: called about every ``progress_every_s`` and at the end.
        flush_timeout_s: how long to wait for the last acknowledgements.
        clock: monotonic clock for pacing; ``wall``: the UTC wall clock.

    Whatever the speed-up, a reading is never sent before the wall clock has
    reached its device time, since the gateway rejects readings from the
    future.

    Raises:
        ValueError: a negative speed-up.
        PublishError: from the transport, or acknowledgements still missing
            after ``flush_timeout_s``.
    """
    if speedup < 0:
        raise ValueError(f"speedup must be >= 0, got {speedup}")
    started = clock()
    last_report = started
    first_ts: float | None = None
    count = 0
    device_ts = 0.0
    for reading in readings:
        device_ts = reading.ts_s
        if first_ts is None:
            first_ts = reading.ts_s
        wait = reading.ts_s - wall()
        if speedup > 0:
            wait = max(wait, started + (reading.ts_s - first_ts) / speedup - clock())
        if wait > 0:
            sleep(wait)
        transport.publish(reading.topic(topic_root), reading.payload())
        count += 1
        if progress is not None and clock() - last_report >= progress_every_s:
            last_report = clock()
            progress(Progress(count, total, last_report - started, device_ts))
    if not transport.flush(flush_timeout_s):
        raise PublishError(
            f"acknowledgements still missing {flush_timeout_s:.0f}s after the "
            f"last of {count} messages"
        )
    elapsed = clock() - started
    if progress is not None:
        progress(Progress(count, total, elapsed, device_ts))
    logger.info(
        "published records=%d elapsed_s=%.2f rate=%.0f",
        count,
        elapsed,
        count / elapsed if elapsed > 0 else 0.0,
    )
    return PublishResult(count, elapsed)


def publish_status(
    transport: Transport,
    devices: Sequence[tuple[str, str]],
    payload: bytes,
    *,
    topic_root: str,
) -> None:
    """Publish a retained status (``online``/``offline``) for each device."""
    for enterprise, device in devices:
        transport.publish(
            status_topic(topic_root, enterprise, device), payload, retain=True
        )


class PahoTransport:
    """One paho-mqtt 2.x client (MQTT v5), QoS 1, bounded in-flight window.

    paho's network thread runs the callbacks; they only count
    acknowledgements and release window slots, never raise, and log what they
    catch. The window is a semaphore: :meth:`publish` takes a slot, the PUBACK
    gives it back, so at most ``window`` messages are unacknowledged.

    MQTT carries one will per connection, so a single client for a whole fleet
    can leave only one ``offline`` will (``will_topic``); the other devices
    are marked ``offline`` explicitly when the run ends.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        client_id: str | None = None,
        window: int = 200,
        will_topic: str | None = None,
        connect_timeout_s: float = 10.0,
        publish_timeout_s: float = 30.0,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self._window = threading.BoundedSemaphore(window)
        self._size = window
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._connect_reason: int | None = None
        self.acked = 0
        self.failed = 0
        self.sent = 0
        self._publish_timeout_s = publish_timeout_s
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"riskwatch-sim-{uuid.uuid4().hex[:10]}",
            protocol=mqtt.MQTTv5,
        )
        self._client.username_pw_set(username, password)
        self._client.max_inflight_messages_set(window)
        if will_topic is not None:
            self._client.will_set(will_topic, OFFLINE, qos=1, retain=True)
        self._client.on_connect = self._on_connect
        self._client.on_publish = self._on_publish
        self._client.on_disconnect = self._on_disconnect
        self._connect(host, port, connect_timeout_s)

    def _connect(self, host: str, port: int, timeout_s: float) -> None:
        # MQTT v5 without a Session Expiry Interval: the session ends with the
        # connection, so a later run does not inherit unacknowledged messages.
        try:
            self._client.connect(host, port, clean_start=True)
        except OSError as exc:
            raise BrokerUnavailable(f"cannot reach {host}:{port}: {exc}") from exc
        self._client.loop_start()
        if not self._connected.wait(timeout_s) or self._connect_reason != 0:
            reason = self._connect_reason
            self._client.loop_stop()
            raise BrokerUnavailable(
                f"{host}:{port} did not accept the login within {timeout_s:.0f}s"
                + (f" (reason code {reason})" if reason is not None else ""),
                reason,
            )
        logger.info("connected host=%s port=%d window=%d", host, port, self._size)

    # paho callbacks: network thread; count, release, never raise. ----------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        try:
            self._connect_reason = int(reason.value)
        except Exception:  # a callback must never raise into paho
            logger.exception("on_connect failed")
            self._connect_reason = -1
        self._connected.set()

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        try:
            with self._lock:
                self.acked += 1
                if reason.is_failure:
                    self.failed += 1
            if reason.is_failure:
                logger.warning("publish refused mid=%d reason=%s", mid, reason)
            self._window.release()
        except Exception:  # a callback must never raise into paho
            logger.exception("on_publish failed mid=%d", mid)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        # paho reconnects by itself under loop_start(); unacknowledged QoS 1
        # messages are sent again after the reconnect.
        if reason.value != 0:
            logger.warning("disconnected reason=%s", reason)

    # Transport --------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        if not self._window.acquire(timeout=self._publish_timeout_s):
            raise PublishError(
                f"in-flight window of {self._size} still full after "
                f"{self._publish_timeout_s:.0f}s (is the broker acknowledging?)"
            )
        # Counted before the call: the PUBACK may arrive before publish()
        # returns, and in_flight() must never see more acks than sends.
        with self._lock:
            self.sent += 1
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            with self._lock:
                self.sent -= 1
            self._window.release()
            raise PublishError(
                f"publish to {topic} failed: {mqtt.error_string(info.rc)}"
            )
        logger.debug("publish topic=%s bytes=%d", topic, len(payload))

    def in_flight(self) -> int:
        with self._lock:
            return self.sent - self.acked

    def flush(self, timeout_s: float) -> bool:
        deadline = Deadline(timeout_s)
        while self.in_flight() > 0:
            if deadline.expired():
                return False
            time.sleep(min(0.01, deadline.remaining()))
        return True

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        logger.info(
            "closed sent=%d acked=%d refused=%d", self.sent, self.acked, self.failed
        )


def connect_simulator(
    settings: Settings, *, will_topic: str | None = None, window: int = 200
) -> PahoTransport:
    """A :class:`PahoTransport` logged in with the simulator account.

    Raises:
        ConfigError: the settings disable the simulator account.
        BrokerUnavailable: the broker cannot be reached or refuses the login.
    """
    try:
        user, password = Mosquitto(settings, lambda _: None).simulator_credentials()
    except KeyError as exc:
        raise ConfigError(
            "mqtt.simulator_username is null: no account may publish simulated "
            "telemetry"
        ) from exc
    return PahoTransport(
        settings.mqtt.host,
        settings.mqtt.port,
        user,
        password,
        window=window,
        will_topic=will_topic,
    )


def publish_fleet(
    fleet: Fleet,
    transport: Transport,
    *,
    topic_root: str,
    speedup: float = 0.0,
    progress: Callable[[Progress], None] | None = None,
    clock: Clock = time.monotonic,
    wall: Clock = time.time,
    sleep: Sleep = time.sleep,
) -> PublishResult:
    """Mark every device ``online``, publish the fleet's readings in device-time
    order (see :func:`publish_readings`), then mark them ``offline``.

    Returns:
        The count of telemetry messages published (equal to
        ``fleet.message_count()`` on success) and the wall time taken.
    """
    devices = [(s.enterprise, s.device) for s in fleet.series]
    publish_status(transport, devices, ONLINE, topic_root=topic_root)
    try:
        result = publish_readings(
            fleet.readings(),
            transport,
            topic_root=topic_root,
            speedup=speedup,
            total=fleet.message_count(),
            progress=progress,
            clock=clock,
            wall=wall,
            sleep=sleep,
        )
    except BaseException:
        # Best effort: the transport may be what failed.
        try:
            publish_status(transport, devices, OFFLINE, topic_root=topic_root)
        except SimulatorError:
            logger.warning("could not mark devices offline devices=%d", len(devices))
        raise
    publish_status(transport, devices, OFFLINE, topic_root=topic_root)
    transport.flush(10.0)
    return result


def run_fleet(
    fleet: Fleet,
    settings: Settings,
    *,
    speedup: float = 0.0,
    window: int = 200,
    progress: Callable[[Progress], None] | None = None,
) -> PublishResult:
    """Connect with the simulator account, :func:`publish_fleet`, disconnect.

    The connection's will marks the fleet's first device ``offline`` should
    the process die (one will per connection; see :class:`PahoTransport`).

    Raises:
        ConfigError, BrokerUnavailable, PublishError.
    """
    root = settings.mqtt.topic_root
    will = (
        status_topic(root, fleet.series[0].enterprise, fleet.series[0].device)
        if fleet.series
        else None
    )
    transport = connect_simulator(settings, will_topic=will, window=window)
    try:
        return publish_fleet(
            fleet, transport, topic_root=root, speedup=speedup, progress=progress
        )
    finally:
        transport.close()
