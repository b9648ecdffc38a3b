"""`up`, `up` again and `down` on a second stack of our own, on other ports, so
the shared stack of the other tests is not disturbed."""

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from influxdb_client.client.influxdb_client import InfluxDBClient

from riskwatch.services import Stack
from riskwatch.services.mosquitto import mqtt_login_ok
from riskwatch.settings import load_settings
from tests.integration.conftest import RISKWATCH, riskwatch


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
    install = riskwatch("services", "install", env=env)
    for name in ("mosquitto", "kafka", "influxdb"):
        assert f"{name}: installed" in install.stdout
    assert _our_processes(settings.run_dir) == []

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


# Findings of the lifecycle review: each on a run folder of its own -----------


def _run(*args, env):
    """The riskwatch CLI, without asserting success."""
    return subprocess.run(
        [RISKWATCH, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=600,
        check=False,
    )


@pytest.fixture
def own_env(tmp_path):
    """Settings for a run folder of our own on free ports; stopped afterwards."""
    envs = []

    def make(run_dir=None):
        mqtt, kafka, controller, influx, web = _free_ports(5)
        env = {
            "RISKWATCH_RUN_DIR": str(run_dir or tmp_path / "run"),
            "RISKWATCH_MQTT__PORT": str(mqtt),
            "RISKWATCH_KAFKA__PORT": str(kafka),
            "RISKWATCH_KAFKA__CONTROLLER_PORT": str(controller),
            "RISKWATCH_INFLUXDB__PORT": str(influx),
            "RISKWATCH_WORKER__WEB_PORT": str(web),
        }
        envs.append(env)
        return env

    yield make
    for env in envs:
        _run("services", "down", env=env)


def _health(env, name):
    result = _run("services", "status", name, env=env)
    return result.stdout.splitlines()[1].split(None, 3)[3]


def test_two_concurrent_ups_start_one_tracked_server(own_env, tmp_path):
    env = own_env()
    run_dir = Path(env["RISKWATCH_RUN_DIR"])
    procs = [
        subprocess.Popen(
            [RISKWATCH, "services", "up", "mosquitto"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **env},
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    joined = "\n".join(outputs)
    assert joined.count("mosquitto: starting on") == 1, joined
    assert joined.count("mosquitto: already running") == 1, joined
    pid = int((run_dir / "mosquitto" / "mosquitto.pid").read_text().split()[0])
    assert _our_processes(run_dir) == [pid]
    assert _health(env, "mosquitto") == "healthy"
    down = riskwatch("services", "down", "mosquitto", env=env)
    assert f"mosquitto: stopped (pid {pid})" in down.stdout
    assert _our_processes(run_dir) == []


def test_down_in_a_copied_run_folder_leaves_the_original_running(own_env, tmp_path):
    env = own_env()
    riskwatch("services", "up", "mosquitto", env=env)
    original = Path(env["RISKWATCH_RUN_DIR"])
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    copy_env = {**env, "RISKWATCH_RUN_DIR": str(copy)}
    down = riskwatch("services", "down", "mosquitto", env=copy_env)
    assert "mosquitto: not running (port 127.0.0.1:" in down.stdout
    assert f"not started from this run folder ({copy})" in down.stdout
    assert _health(env, "mosquitto") == "healthy"
    assert _health(copy_env, "mosquitto").startswith("unknown: port in use by a")


def test_lost_or_changed_mqtt_secrets_are_named_and_reloaded_by_up(own_env):
    env = own_env()
    riskwatch("services", "up", "mosquitto", env=env)
    run_dir = Path(env["RISKWATCH_RUN_DIR"])
    pid = (run_dir / "mosquitto" / "mosquitto.pid").read_text().split()[0]
    secrets = run_dir / "secrets"
    shutil.rmtree(secrets)

    health = _health(env, "mosquitto")
    assert health.startswith(
        f"unhealthy: secret file {secrets / 'mqtt-riskwatch-gateway'} is missing"
    )
    assert not secrets.exists(), "status wrote secrets"

    up = riskwatch("services", "up", "mosquitto", env=env)
    assert f"mosquitto: accounts and ACL reloaded (pid {pid})" in up.stdout
    assert f"mosquitto: already running (pid {pid})" in up.stdout
    assert _health(env, "mosquitto") == "healthy"

    changed = {**env, "RISKWATCH_MQTT__GATEWAY_PASSWORD": "a-new-password"}
    assert _health(changed, "mosquitto").startswith(
        "unhealthy: login refused: credentials do not match the running broker"
    )
    riskwatch("services", "up", "mosquitto", env=changed)
    assert _health(changed, "mosquitto") == "healthy"
    port = int(env["RISKWATCH_MQTT__PORT"])
    assert mqtt_login_ok(
        "127.0.0.1", port, "riskwatch-gateway", "a-new-password", timeout_s=5
    )
    assert (run_dir / "mosquitto" / "mosquitto.pid").read_text().split()[0] == pid


def test_influxdb_org_bucket_and_retention_follow_the_settings(own_env):
    env = own_env()
    riskwatch("services", "up", "influxdb", env=env)
    url = f"http://127.0.0.1:{env['RISKWATCH_INFLUXDB__PORT']}"
    token = (
        Path(env["RISKWATCH_RUN_DIR"], "secrets", "influxdb-operator-token")
        .read_text()
        .strip()
    )

    def retention(bucket):
        with InfluxDBClient(url=url, token=token, org="riskwatch") as client:
            found = client.buckets_api().find_bucket_by_name(bucket)
            return None if found is None else found.retention_rules[0].every_seconds

    assert retention("telemetry") == 30 * 86400
    week = {**env, "RISKWATCH_INFLUXDB__RETENTION_DAYS": "7"}
    up = riskwatch("services", "up", "influxdb", env=week)
    assert "bucket telemetry retention changed from 30d to 7d" in up.stdout
    assert retention("telemetry") == 7 * 86400
    assert (
        "retention changed"
        not in riskwatch("services", "up", "influxdb", env=week).stdout
    )

    other = {**week, "RISKWATCH_INFLUXDB__BUCKET": "plant"}
    up = riskwatch("services", "up", "influxdb", env=other)
    assert "influxdb: created bucket plant in org riskwatch" in up.stdout
    assert retention("plant") == 7 * 86400

    wrong_org = {**env, "RISKWATCH_INFLUXDB__ORG": "acme"}
    failed = _run("services", "up", "influxdb", env=wrong_org)
    assert failed.returncode == 1
    assert "ServiceError: influxdb: org 'acme' (setting influxdb.org) does not" in (
        failed.stderr
    )
    assert "set up with org riskwatch" in failed.stderr
    assert "Traceback" not in failed.stderr
