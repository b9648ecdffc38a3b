"""Integration tests run against the real Mosquitto, Kafka and InfluxDB, which a
session fixture starts with ``riskwatch services up``."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from riskwatch.services import Stack
from riskwatch.settings import Settings, load_settings
from riskwatch.timeouts import Deadline

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
RISKWATCH = str(Path(sys.executable).parent / "riskwatch")


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.integration)


def run_riskwatch(
    *args: str, env: dict[str, str] | None = None, timeout: float = 5400
) -> subprocess.CompletedProcess[str]:
    """Run the riskwatch CLI as a user would, whatever its exit status."""
    return subprocess.run(
        [RISKWATCH, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )


def until(check: Callable[[], T], what: str, seconds: float = 90) -> T:
    """Poll ``check`` every 0.5 s until it returns something true, and return
    that; fail the test with ``what`` after ``seconds``."""
    deadline = Deadline(seconds)
    while not (found := check()):
        assert not deadline.expired(), what
        time.sleep(0.5)
    return found


def riskwatch(
    *args: str, env: dict[str, str] | None = None, timeout: float = 5400
) -> subprocess.CompletedProcess[str]:
    """Run the riskwatch CLI as a user would; fail the test on a non-zero exit."""
    result = run_riskwatch(*args, env=env, timeout=timeout)
    assert result.returncode == 0, (
        f"riskwatch {' '.join(args)} exited {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result


@pytest.fixture(scope="session")
def settings() -> Settings:
    # One run folder for the whole session, whatever the working directory.
    os.environ.setdefault("RISKWATCH_RUN_DIR", str(ROOT / ".riskwatch"))
    return load_settings()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[Stack]:
    """The real services, started if needed; those we started are stopped after."""
    stack = Stack(settings)
    running_before = {s.name for s in stack.status() if s.health == "healthy"}
    riskwatch("services", "up")
    yield stack
    started = [s.name for s in stack.status() if s.name not in running_before]
    if started:
        riskwatch("services", "down", *started)


class MqttProbe:
    """A connected paho client that queues what it receives."""

    def __init__(
        self,
        settings: Settings,
        user: str,
        password: str,
        *,
        client_id: str | None = None,
        clean_start: bool = True,
    ) -> None:
        self.received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.acks: queue.Queue[tuple[int, int]] = queue.Queue()
        self.connected: queue.Queue[int] = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(user, password)
        self.client.on_message = lambda c, u, msg: self.received.put(msg)
        self.client.on_publish = lambda c, u, mid, reason, props: self.acks.put(
            (mid, reason.value)
        )
        self.client.on_connect = lambda c, u, f, reason, p: self.connected.put(
            reason.value
        )
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 300 if not clean_start else 0
        self.client.connect(
            settings.mqtt.host,
            settings.mqtt.port,
            clean_start=clean_start,
            properties=props,
        )
        self.client.loop_start()
        self.connect_reason = self.connected.get(timeout=10)

    def subscribe(self, topic: str) -> None:
        done: queue.Queue[object] = queue.Queue()
        self.client.on_subscribe = lambda c, u, mid, codes, p: done.put(codes)
        self.client.subscribe(topic, qos=1)
        codes = done.get(timeout=10)
        assert all(not code.is_failure for code in codes), codes

    def publish(self, topic: str, payload: bytes) -> int:
        """Publish at QoS 1 and return the PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1)
        mid, reason = self.acks.get(timeout=10)
        assert mid == info.mid
        return reason

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mqtt_probe(settings: Settings, stack: Stack) -> Iterator[object]:
    probes: list[MqttProbe] = []

    def make(user: str, **kwargs: object) -> MqttProbe:
        service = stack.mosquitto
        if user == settings.mqtt.gateway_username:
            creds = service.gateway_credentials()
        else:
            creds = service.device_credentials(user)
        probe = MqttProbe(settings, *creds, **kwargs)  # type: ignore[arg-type]
        probes.append(probe)
        return probe

    yield make
    for probe in probes:
        probe.close()
