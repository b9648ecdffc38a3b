"""`up`, `up` again and `down` on a second stack of our own, on other ports, so
the shared stack of the other tests is not disturbed."""

import socket
from pathlib import Path

import pytest

from riskwatch.services import Stack
from riskwatch.settings import load_settings
from tests.integration.conftest import riskwatch


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _our_processes(run_dir: Path) -> list[int]:
    """Pids of live processes whose command line mentions the run folder."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(run_dir).encode() in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture
def other_stack(tmp_path, monkeypatch, stack):
    mqtt, kafka, controller, influx = _free_ports(4)
    env = {
        "RISKWATCH_RUN_DIR": str(tmp_path / "run"),
        "RISKWATCH_MQTT__PORT": str(mqtt),
        "RISKWATCH_KAFKA__PORT": str(kafka),
        "RISKWATCH_KAFKA__CONTROLLER_PORT": str(controller),
        "RISKWATCH_INFLUXDB__PORT": str(influx),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield env, load_settings()
    riskwatch("services", "down", env=env)


def test_up_twice_is_a_no_op_and_down_leaves_nothing_running(other_stack):
    env, settings = other_stack
    first = riskwatch("services", "up", env=env)
    assert "starting on" in first.stdout

    stack = Stack(settings)
    rows = stack.status()
    assert [r.health for r in rows] == ["healthy"] * 3
    pids = {r.name: r.pid for r in rows}

    second = riskwatch("services", "up", env=env)
    for name in ("mosquitto", "kafka", "influxdb"):
        assert f"{name}: already running (pid {pids[name]})" in second.stdout
    assert "starting on" not in second.stdout
    assert {r.name: r.pid for r in stack.status()} == pids

    status = riskwatch("services", "status", env=env)
    table = {
        line.split()[0]: line.split()[2:] for line in status.stdout.splitlines()[1:]
    }
    assert table == {name: [str(pid), "healthy"] for name, pid in pids.items()}

    assert sorted(_our_processes(settings.run_dir)) != []
    down = riskwatch("services", "down", env=env)
    for name in ("mosquitto", "kafka", "influxdb"):
        assert f"{name}: stopped (pid {pids[name]})" in down.stdout
    assert _our_processes(settings.run_dir) == []
    assert [r.health for r in stack.status()] == ["stopped"] * 3
