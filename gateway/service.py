"""Run the gateway process: MQTT subscriber -> Gateway -> Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from gateway.core import Gateway
from gateway.mqtt_adapter import MqttSubscriber
from gateway.sink import KafkaSink, Sink
from riskwatch.secrets import SecretStore
from riskwatch.settings import Settings

log = logging.getLogger(__name__)

STATS_EVERY_S = 10.0


def topic_filter(settings: Settings) -> str:
    """Everything under the topic root: malformed topics are dead-lettered,
    not silently ignored. Shared between gateways when a group is set."""
    base = f"{settings.mqtt.topic_root.rstrip('/')}/#"
    group = settings.gateway.shared_group
    return f"$share/{group}/{base}" if group else base


async def run_gateway(
    settings: Settings, *, sink: Sink | None = None, stop: asyncio.Event | None = None
) -> Gateway:
    """Run until SIGTERM/SIGINT (or ``stop`` is set); returns the final state."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    g = settings.gateway
    sink = sink or KafkaSink(settings.kafka.bootstrap, client_id=g.client_id)
    await sink.start()
    user = settings.mqtt.gateway_username
    password = SecretStore(settings.run_dir / "secrets").get_or_create(
        f"mqtt-{user}", settings.mqtt.gateway_password
    )
    subscriber: MqttSubscriber | None = None
    gateway = Gateway(
        g,
        topic_root=settings.mqtt.topic_root,
        sink=sink,
        ack=lambda m: subscriber.ack(m) if subscriber else False,
    )
    subscriber = MqttSubscriber(
        host=settings.mqtt.host,
        port=settings.mqtt.port,
        client_id=g.client_id,
        username=user,
        password=password,
        topic_filter=topic_filter(settings),
        session_expiry_s=g.session_expiry_s,
        receive_maximum=g.receive_maximum,
        deliver=gateway.deliver,
        loop=loop,
    )
    worker = asyncio.create_task(gateway.run(), name="gateway")
    subscriber.start()
    log.info(
        "gateway started client_id=%s filter=%s", g.client_id, topic_filter(settings)
    )
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), STATS_EVERY_S)
            if worker.done():
                worker.result()  # re-raise what killed it
            log.info("gateway stats %s", gateway.counters.line())
    finally:
        # Settle what is in flight while still connected, so its acks reach
        # the broker; anything left is redelivered to the next gateway.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gateway.drain(), 10)
        subscriber.stop()
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        await sink.stop()
        log.info("gateway stopped %s", gateway.counters.line())
    return gateway
