"""The worker turns a feed outage into one feed warning, through the same
lifecycle, delivery, CAP and InfluxDB paths as any other, with the default
rules: no device-silent warnings for the devices it explains, one resolution
when data returns, and a device still silent afterwards reported as usual."""

import asyncio
import logging

from lxml import etree

from alert_rules import ScopeKind, WarningRecord, WarningStatus
from alert_rules.cap import render_cap
from riskwatch.registry import load_registry
from stream_jobs.cloudevent import from_request, to_http
from stream_jobs.processing import process_reading
from stream_jobs.storage import warning_point
from tests.capschema import validated
from tests.unit.conftest import fake_worker
from tests.unit.stream_jobs.test_processing import SAMPLE_REGISTRY, reading
from tests.unit.stream_jobs.test_worker_silences import (
    _deliver_all,
    _run_commands,
    _sent_commands,
)

S = 10**9
T0 = 1_800_000_000 * S
SILENT_S = 60
DEVICES = [f"GD-{i}".encode() for i in range(8)]


def _worker(tmp_path, **worker):
    """A worker with fake topics, webhook and tables; ``worker`` overrides
    its worker settings."""
    # lateness_s below silent_after_s, as the settings require.
    settings = {"silent_after_s": SILENT_S, "lateness_s": 10, "app_id": "w1"}
    return fake_worker(tmp_path, worker={**settings, **worker})


def _read(worker, device, ts_ns):
    key = b"HC001/" + device
    record = reading(ts_ns, device=device.decode(), combustible_gas_lel=1.0)
    outcome = process_reading(
        record, worker.device_state.get(key), worker.registry.get("HC001"), worker.rules
    )
    worker.device_state[key] = outcome.state


def _scan(worker, wall_ns):
    """One timer scan, then the silence agent on what it sent, then the
    lifecycle agent on the commands; the new commands are returned."""
    worker.silences.sent.clear()
    before = len(worker.commands.sent)
    asyncio.run(worker.find_silent(wall_ns))
    for key, value in list(worker.silences.sent):
        asyncio.run(worker.on_silence(key, value))
    commands = _sent_commands(worker)[before:]
    _run_commands(worker, commands)
    return commands


def _assert_feed_then_device_opens(commands, feed_action):
    """The commands are ``feed_action`` on the feed warning, then at least
    one device warning opening, nothing else."""
    actions = [(c.action.value, c.record and c.record.rule_id) for c in commands]
    assert actions[0] == (feed_action, "feed-silent")
    assert actions[1:], "a device warning opens"
    assert all(a == "open" and r != "feed-silent" for a, r in actions[1:])


def _posted(worker):
    worker.webhook.posted.clear()
    _deliver_all(worker)
    worker.warnings.sent.clear()
    return worker.webhook.posted


def test_an_outage_is_one_feed_warning_resolved_once(tmp_path, caplog):
    worker = _worker(tmp_path)
    for t in range(0, 600, 10):
        for device in DEVICES:
            _read(worker, device, T0 + t * S)
    last = T0 + 590 * S
    with caplog.at_level(logging.INFO):
        commands = _scan(worker, last + (SILENT_S + 1) * S)
        for t in range(2, 40):
            commands += _scan(worker, last + (SILENT_S + 10 * t) * S)
    assert [c.action.value for c in commands] == ["open"]
    [opened] = _posted(worker)
    assert opened.scope.kind == ScopeKind.FEED
    assert (opened.level.value, opened.colour, opened.rule_id) == (
        "II",
        "orange",
        "feed-silent",
    )
    assert (opened.enterprise_id, opened.device_id, opened.metric) == ("*", "*", None)
    assert opened.start_time.timestamp() * 1e9 == last
    assert "8 of the 8 devices" in opened.items[0].observed
    assert "broker" in opened.items[0].action
    assert "device silent" not in caplog.text
    assert worker.counters["explained"] == 8

    back = last + 600 * S
    commands = []
    for t in range(0, 200, 10):
        for device in DEVICES[:7]:  # the eighth stays quiet
            _read(worker, device, back + t * S)
        commands += _scan(worker, back + t * S)
    # After silent_after_s counted from the recovery, the eighth is reported.
    _assert_feed_then_device_opens(commands, "resolve")
    resolved, *device_warnings = _posted(worker)
    assert (resolved.id, resolved.status, resolved.version) == (
        opened.id,
        WarningStatus.RESOLVED,
        2,
    )
    assert {w.device_id for w in device_warnings} == {"GD-7"}
    assert worker.counters["outages"] == 1


def test_a_gas_detector_quiet_after_the_outage_began_is_reported(tmp_path, caplog):
    # Issue 5: the 8 devices stop for good; GD-90 keeps reporting after the
    # feed warning opened, then stops. It is not the outage's to explain.
    worker = _worker(tmp_path)
    worker.registry.ready.set()
    for enterprise in load_registry(SAMPLE_REGISTRY).enterprises:
        worker.registry.apply(enterprise.id.encode(), enterprise.model_dump_json())
    late = b"GD-101"  # a gas detector of HC001, hazardous chemicals
    for t in range(0, 600, 10):
        for device in DEVICES:
            _read(worker, device, T0 + t * S)
    last = T0 + 590 * S
    for t in range(0, 900, 10):
        _read(worker, late, T0 + t * S)
        if t == 640:
            commands = _scan(worker, last + (SILENT_S + 1) * S)
    assert [c.action.value for c in commands] == ["open"]
    stop = T0 + 890 * S
    with caplog.at_level(logging.INFO):
        for t in range(SILENT_S + 1, 300, 10):
            commands += _scan(worker, stop + t * S)
    _assert_feed_then_device_opens(commands, "open")
    _, *device_warnings = _posted(worker)
    assert {w.device_id for w in device_warnings} == {"GD-101"}
    assert "safety-sensor-silent" in {w.rule_id for w in device_warnings}
    assert worker.counters["explained"] == 8
    assert "feed outage over" not in caplog.text


def test_a_feed_warning_is_valid_cap_a_cloudevent_and_an_influx_point(tmp_path):
    worker = _worker(tmp_path)
    for device in DEVICES:
        _read(worker, device, T0)
    _scan(worker, T0 + (SILENT_S + 1) * S)
    [opened] = _posted(worker)
    doc = validated(render_cap(opened, sender="riskwatch.local"))
    assert b"<category>Infra</category>" in etree.tostring(doc)
    headers, body = to_http(opened, "urn:riskwatch:riskwatch.local")
    event = from_request(headers, body)
    assert event.get_id() == opened.version_id
    assert WarningRecord.model_validate(event.get_data()) == opened
    line = warning_point(opened.model_dump(mode="json")).to_line_protocol()
    assert "scope=feed" in line
    assert "enterprise=*" in line
