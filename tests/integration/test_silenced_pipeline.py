"""Silences and expiry on the real pipeline: a device silenced through the
officer API has its warnings recorded but not delivered, and is warned about
again once the silence is lifted; a device that stops reporting has its
warning expired, delivered as an ``expired`` CloudEvent, and a new warning
when it comes back with the condition still met."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from riskwatch.contracts import Metric
from riskwatch.registry import Device, Registry, load_registry
from riskwatch.registry_cli import publish_registry, sample_registry_path
from riskwatch.timeouts import Deadline
from stream_jobs.cloudevent import TYPE_PREFIX
from tests.integration.conftest import until
from tests.integration.test_officer import api_env  # noqa: F401 - a fixture
from tests.integration.test_pipeline import (
    ENTERPRISE,
    _device,
    publish_minutely,
    running_pipeline,
)

EXPIRE_AFTER_S = 30
RULE = "combustible-gas-orange"
GAS = Metric.COMBUSTIBLE_GAS_LEL


@pytest.fixture(scope="module")
def pipeline(settings, stack, tmp_path_factory):
    yield from running_pipeline(
        settings, tmp_path_factory, expire_after_s=EXPIRE_AFTER_S
    )


def _api(env, method, path, body=None):
    run_dir = env["RISKWATCH_RUN_DIR"]
    with open(f"{run_dir}/secrets/api-token-officer") as f:
        token = f.read().strip()
    request = urllib.request.Request(
        f"http://127.0.0.1:{env['RISKWATCH_API__PORT']}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {token}"},
    )
    # Our own API on localhost, over plain http.
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        return json.loads(answer.read())


def _gas(pipeline, device, start, values):
    publish_minutely(
        pipeline, ENTERPRISE, device, "combustible_gas_lel", "%LEL", start, values
    )


def _received(pipeline, device, status="open"):
    return [
        w
        for w in list(pipeline.receiver.warnings)
        if w.get("device_id") == device
        and w.get("rule_id") == RULE
        and w.get("status") == status
    ]


def _stored(env, device):
    listed = _api(env, "GET", f"/warnings?enterprise={ENTERPRISE}&limit=1000")
    return [
        w
        for w in listed["warnings"]
        if w["device_id"] == device and w["rule_id"] == RULE
    ]


def _register(pipeline, device):
    """Add ``device`` (combustible gas) to the sample registry's ENTERPRISE."""
    registry = load_registry(sample_registry_path())
    entries = [
        e.model_copy(update={"devices": [*e.devices, Device(id=device, metrics=[GAS])]})
        if e.id == ENTERPRISE
        else e
        for e in registry.enterprises
    ]
    asyncio.run(
        publish_registry(
            Registry(enterprises=entries), pipeline.settings.kafka.bootstrap
        )
    )


def _silence_device(env, device, reason):
    """A silence of ``device`` for two hours, once the worker has seen it.

    The device must be registered (or warning): the API's registry view
    follows the topic, so a 422 is retried for a while."""
    body = {
        "subject": {"kind": "device", "id": f"{ENTERPRISE}/{device}"},
        "reason": reason,
        "until": (datetime.now(UTC) + timedelta(hours=2)).isoformat(),
    }
    deadline = Deadline(30)
    while True:
        try:
            silence = _api(env, "POST", "/silences", body)["silence"]
            break
        except urllib.error.HTTPError as exc:
            if exc.code != 422 or deadline.expired():
                raise
            time.sleep(0.3)
    time.sleep(3)  # the worker's view of the silences topic follows it
    return silence


def test_a_silenced_device_is_not_delivered_and_is_again_after_the_lift(
    pipeline,
    api_env,  # noqa: F811 - the fixture imported above
):
    device = _device("GD")
    _register(pipeline, device)
    silence = _silence_device(api_env, device, "detector calibration with test gas")
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    # Test gas: over 25 %LEL, then clear under 20 for more than 5 minutes.
    _gas(pipeline, device, start, [2, 2, 30, 31, 30] + [3] * 8)
    [held] = until(
        lambda: [w for w in _stored(api_env, device) if w["status"] == "resolved"],
        "the silenced warning is not in the store, resolved",
    )
    assert (held["held"], held["silenced_by"]) == (True, silence["id"])
    time.sleep(5)  # anything the worker would deliver has had time to arrive
    assert [
        w for w in list(pipeline.receiver.warnings) if w.get("device_id") == device
    ] == []

    lifted = _api(api_env, "DELETE", f"/silences/{silence['id']}")["silence"]
    assert lifted["lifted_by"] == "officer"
    time.sleep(3)
    _gas(pipeline, device, start + timedelta(minutes=30), [30, 31, 32])
    [delivered] = until(
        lambda: _received(pipeline, device), "no warning after the silence"
    )
    assert delivered["id"] != held["id"]
    assert (delivered["held"], delivered["silenced_by"]) == (False, None)


def test_a_device_that_stops_reporting_has_its_warning_expired(pipeline):
    device = _device("GD")
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    _gas(pipeline, device, start, [2, 30, 31])
    [opened] = until(lambda: _received(pipeline, device), "no warning opened")
    ident = opened["id"]

    expected = [(f"{ident}.v1", TYPE_PREFIX + "opened")]
    expected.append((f"{ident}.v2", TYPE_PREFIX + "expired"))
    until(
        lambda: (
            [e for e in pipeline.receiver.events if e[0].startswith(ident)] == expected
        ),
        f"no expired event for {ident}: {list(pipeline.receiver.events)}",
        seconds=EXPIRE_AFTER_S + 60,
    )
    [expired] = _received(pipeline, device, "expired")
    entry = expired["history"][-1]
    assert (entry["by"], entry["from_status"]) == ("riskwatch-worker", "open")
    assert "expire_after_s" in entry["comment"]

    # Back, still over the threshold: the engine forgot the old one.
    _gas(pipeline, device, start + timedelta(minutes=10), [32, 33])
    renewed = until(
        lambda: [w for w in _received(pipeline, device) if w["id"] != ident],
        "no new warning after the expiry",
    )
    assert renewed[0]["start_time"] > opened["start_time"]


def test_a_silence_recorded_while_a_warning_is_open_holds_its_escalation(
    pipeline,
    api_env,  # noqa: F811 - the fixture imported above
):
    device = _device("GD")
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=4)
    _gas(pipeline, device, start, [2, 30, 31])
    [opened] = until(lambda: _received(pipeline, device), "no warning opened")
    silence = _silence_device(api_env, device, "leak being repaired on site")
    _gas(pipeline, device, start + timedelta(minutes=3), [55, 60])
    [stored] = until(
        lambda: [w for w in _stored(api_env, device) if w["level"] == "I"],
        "the escalation is not in the store",
    )
    assert (stored["held"], stored["silenced_by"], stored["held_from"]) == (
        True,
        silence["id"],
        2,
    )
    time.sleep(5)  # anything the worker would deliver has had time to arrive
    assert [w["level"] for w in _received(pipeline, device)] == ["II"]

    _api(api_env, "DELETE", f"/silences/{silence['id']}")
    released = until(
        lambda: [w for w in _received(pipeline, device) if w["level"] == "I"],
        "the escalation was not released after the lift",
        seconds=40,
    )
    assert [(w["id"], w["held"]) for w in released] == [(opened["id"], False)]
