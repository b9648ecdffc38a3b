"""The officer API's edges against the real Kafka: a silence must name what the
worker's registry and rules know, a malformed request gets riskwatch's JSON
error body, timestamps are ISO 8601 only, and /health tells whether Kafka can
be reached (Kafka is stopped and started again for that, last)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alert_rules.api.auth import token_secret_name
from alert_rules.api.server import READY_LINE
from riskwatch.registry import load_registry
from riskwatch.registry_cli import publish_registry, sample_registry_path
from riskwatch.secrets import SecretStore
from riskwatch.timeouts import Deadline
from tests.integration.conftest import riskwatch
from tests.integration.test_pipeline import _free_port, _start, _stop


def _hours_ahead(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


@dataclass
class Served:
    url: str
    port: int
    token: str
    log: Path

    def call(self, method: str, path: str, body: object = None):
        """(status, JSON answer) of one request with the officer's token."""
        request = urllib.request.Request(  # noqa: S310 - our own http URL
            self.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def secrets(settings):
    return SecretStore(settings.run_dir / "secrets")


@pytest.fixture(scope="module")
def api(settings, stack, tmp_path_factory, secrets):
    asyncio.run(
        publish_registry(
            load_registry(sample_registry_path()), settings.kafka.bootstrap
        )
    )
    port = _free_port()
    folder = tmp_path_factory.mktemp("officer-edges")
    proc = _start("api", {"RISKWATCH_API__PORT": str(port)}, folder, (READY_LINE,))
    try:
        token = secrets.get(token_secret_name("officer"))
        assert token is not None
        [log] = folder.glob("api-*.log")
        yield Served(f"http://127.0.0.1:{port}", port, token, log)
    finally:
        _stop(proc)


def _silence(kind: str, ident: str) -> dict[str, object]:
    return {
        "subject": {"kind": kind, "id": ident},
        "reason": "calibration",
        "until": _hours_ahead(2),
    }


def test_a_silence_must_name_an_enterprise_device_or_rule_the_worker_knows(api):
    refused = [
        api.call("POST", "/silences", _silence(kind, ident))
        for kind, ident in (
            ("enterprise", "NOPE01"),
            ("device", "HC001/NOPE-1"),
            ("rule", "no-such-rule"),
        )
    ]
    assert [(status, body["field"]) for status, body in refused] == [
        (422, "subject.id")
    ] * 3
    assert "'NOPE01' is not in the registry" in refused[0][1]["message"]
    status, made = api.call("POST", "/silences", _silence("device", "HC001/GD-101"))
    assert status == 201
    ident = made["silence"]["id"]
    # The API answers once Kafka took the silence; its own view reads it back
    # from the topic a moment later.
    deadline = Deadline(30)
    while ident not in {s["id"] for s in api.call("GET", "/silences")[1]["silences"]}:
        assert not deadline.expired(), f"silence {ident} never listed"
        time.sleep(0.2)
    assert api.call("DELETE", f"/silences/{ident}")[0] == 200


def test_a_silence_is_held_to_its_limit_and_a_supervisor_may_go_longer(api, secrets):
    # D4 of the attack run: a fleet-wide rule silence until 9999 was taken.
    forever = {
        **_silence("rule", "combustible-gas-orange"),
        "until": "9999-12-31T00:00:00Z",
    }
    status, body = api.call("POST", "/silences", forever)
    assert (status, body["field"]) == (422, "until")
    assert "rule silence may last at most 1 day" in body["message"]

    ten_days = {**_silence("device", "HC001/GD-101"), "until": _hours_ahead(240)}
    status, body = api.call("POST", "/silences", ten_days)
    assert (status, body["field"]) == (422, "until")
    assert "a supervisor may record up to 28 days" in body["message"]
    token = secrets.get(token_secret_name("supervisor"))
    assert token is not None, "the API generates the default supervisor's token"
    supervisor = replace(api, token=token)
    status, made = supervisor.call("POST", "/silences", ten_days)
    assert status == 201, made
    assert made["silence"]["by"] == "supervisor"
    ident = made["silence"]["id"]
    deadline = Deadline(30)
    while supervisor.call("DELETE", f"/silences/{ident}")[0] == 404:
        assert not deadline.expired(), f"silence {ident} never read back"
        time.sleep(0.2)


def test_a_malformed_header_gets_the_json_error_body_without_its_bytes(api):
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as conn:
        conn.sendall(
            b"GET /health HTTP/1.1\r\nHost: a\r\n"
            b"X-Probe: <img src=x onerror=alert(1)>\x01\r\n\r\n"
        )
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") or head.startswith(b"HTTP/1.0 400 ")
    assert b"Content-Type: application/json" in head
    assert json.loads(body) == {
        "error": "BadRequest",
        "message": "headers: not valid HTTP (invalid header value char)",
        "field": "headers",
    }
    assert b"onerror" not in api.log.read_bytes()


def test_epoch_numbers_are_refused_as_times(api):
    status, body = api.call("GET", "/warnings?since=1764720000")
    assert (status, body["field"]) == (422, "since")
    status, body = api.call(
        "POST", "/silences", {**_silence("enterprise", "HC001"), "until": 4070908800}
    )
    assert (status, body["field"]) == (422, "until")
    assert "ISO 8601" in body["message"]


def _health_until(api, status: int, seconds: float):
    deadline = Deadline(seconds)
    while True:
        got, body = api.call("GET", "/health")
        if got == status:
            return body
        assert not deadline.expired(), f"/health still {got}: {body}"
        time.sleep(0.5)


# Last in the module: it stops Kafka for a while.
def test_health_is_503_while_kafka_is_down_and_reads_still_work(api):
    assert _health_until(api, 200, 30)["kafka"] == "reachable"
    riskwatch("services", "down", "kafka")
    try:
        down = _health_until(api, 503, 30)
        assert (down["status"], down["kafka"]) == ("unavailable", "unreachable")
        assert (down["read"], down["act"]) == (True, False)
        assert api.call("GET", "/warnings?limit=1")[0] == 200
        status, refused = api.call("POST", "/silences", _silence("rule", "slow-drift"))
        assert (status, refused["error"]) == (503, "Unavailable")
    finally:
        riskwatch("services", "up", "kafka")
    back = _health_until(api, 200, 120)
    assert (back["status"], back["act"]) == ("ok", True)
    # aiokafka's retries (80 lines a second before): one line per logger when
    # the connection was lost and one when it was back.
    logged = api.log.read_text(errors="replace").splitlines()
    assert not [line for line in logged if "ERROR aiokafka" in line]
    assert not [line for line in logged if "WARNING aiokafka" in line]
    lost = [line for line in logged if "kafka connection lost logger=" in line]
    again = [line for line in logged if "kafka connection back logger=" in line]
    assert lost, "no line says the connection was lost"
    assert all(" WARNING riskwatch.kafka_log " in line for line in lost)
    assert all(" INFO riskwatch.kafka_log " in line for line in again)
    loggers = [line.split("logger=")[1].split()[0] for line in lost]
    assert len(set(loggers)) == len(loggers)
    assert sorted(line.split("logger=")[1].split()[0] for line in again) == sorted(
        loggers
    )
