"""The worker with the default rules: safety sensors of one hazardous-chemicals
enterprise falling silent give one enterprise warning through the group agent,
the lifecycle, delivery, CAP and InfluxDB; device-silent warnings opening at
that enterprise while it is open are inhibited, and released when it ends."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from alert_rules import WarningRecord, WarningStatus
from alert_rules.cap import render_cap
from alert_rules.grouping import GroupNote
from alert_rules.lifecycle import Command
from riskwatch.contracts import to_json_bytes
from riskwatch.registry import load_registry
from riskwatch.settings import Settings
from stream_jobs.app import StreamWorker
from stream_jobs.cloudevent import UPDATED, event_type, to_http
from stream_jobs.processing import process_reading
from stream_jobs.storage import warning_point
from tests.capschema import validated
from tests.unit.conftest import fake_worker
from tests.unit.stream_jobs.test_processing import SAMPLE_REGISTRY, reading

S = 10**9
T0 = 1_800_000_000 * S
SILENT_S = 60
GROUP_RULE = "hazchem-safety-sensors-silent"
SENSORS = {"GD-101": "combustible_gas_lel", "GD-102": "toxic_gas_ppm"}
LATER = {"PT-101": "pressure_mpa", "EM-01": "power_kw"}


def _worker(tmp_path):
    worker = fake_worker(
        tmp_path,
        worker={
            "silent_after_s": SILENT_S,
            "app_id": "w1",
            # Not a feed outage: the test is about one enterprise's sensors.
            "outage_min_devices": 100,
            "outage_settle_s": 0,
        },
        clock=lambda: datetime.fromtimestamp(T0 / 1e9, UTC),
    )
    worker.pumped = {"groups": 0, "commands": 0}
    worker.registry.ready.set()
    for enterprise in load_registry(SAMPLE_REGISTRY).enterprises:
        worker.registry.apply(enterprise.id.encode(), enterprise.model_dump_json())
    return worker


def _read(worker, device, metric, ts_ns):
    key = f"HC001/{device}".encode()
    record = reading(ts_ns, device=device, **{metric: 1.0})
    outcome = process_reading(
        record, worker.device_state.get(key), worker.registry.get("HC001"), worker.rules
    )
    worker.device_state[key] = outcome.state
    asyncio.run(worker._publish(outcome.warnings, []))


def _pump(worker):
    """Run the group and lifecycle agents until nothing new is sent, then the
    delivery agent; the versions posted to the platform are returned."""
    done = worker.pumped  # how far each topic was consumed
    while done["groups"] < len(worker.groups.sent) or done["commands"] < len(
        worker.commands.sent
    ):
        for key, value in worker.groups.sent[done["groups"] :]:
            done["groups"] += 1
            asyncio.run(worker.on_group_note(key, value))
        for _, value in worker.commands.sent[done["commands"] :]:
            done["commands"] += 1
            command = Command.model_validate_json(value)
            asyncio.run(worker.on_command(command.warning.encode(), value))
    worker.webhook.posted.clear()

    async def stream():
        for _, value in worker.warnings.sent:
            yield value

    asyncio.run(worker._deliver(stream()))
    worker.warnings.sent.clear()
    return list(worker.webhook.posted)


def _scan(worker, wall_ns):
    worker.silences.sent.clear()
    asyncio.run(worker.find_silent(wall_ns))
    for key, value in list(worker.silences.sent):
        asyncio.run(worker.on_silence(key, value))
    return _pump(worker)


def _about(posted):
    return sorted(
        (w.rule_id, w.scope.kind.value, w.scope.id, w.status.value) for w in posted
    )


def _stored(worker):
    records = [
        WarningRecord.model_validate(state["record"])
        for state in worker.warning_state.values()
    ]
    return {(r.rule_id, r.device_id): r for r in records}


def _silent_sensors(worker):
    for t in range(0, 60, 10):
        for device, metric in {**SENSORS, **LATER}.items():
            _read(worker, device, metric, T0 + t * S)
    for t in range(60, 200, 10):
        for device, metric in LATER.items():
            _read(worker, device, metric, T0 + t * S)
    return _scan(worker, T0 + (50 + SILENT_S + 1) * S)


def test_silent_safety_sensors_are_one_enterprise_warning(tmp_path, caplog):
    worker = _worker(tmp_path)
    with caplog.at_level(logging.INFO):
        posted = _silent_sensors(worker)
    # Each sensor's safety-sensor-silent (III) is delivered and inhibits its
    # device-silent (IV, the same finding): those two are held back.
    assert _about(posted) == [
        (GROUP_RULE, "enterprise", "HC001", "open"),
        ("safety-sensor-silent", "device", "GD-101", "open"),
        ("safety-sensor-silent", "device", "GD-102", "open"),
    ]
    # The members went to the group agent, keyed by the group, not to the
    # lifecycle as warnings of their own.
    notes = [GroupNote.model_validate_json(v) for _, v in worker.groups.sent]
    assert {n.key for n in notes} == {f"{GROUP_RULE}|enterprise/HC001".encode()}
    assert {k for k, _ in worker.groups.sent} == {notes[0].key}
    assert worker.counters["members"] == 2
    [group] = [w for w in posted if w.rule_id == GROUP_RULE]
    assert group.level.value == "II"
    assert (group.enterprise_id, group.device_id) == ("HC001", "*")
    assert group.officer is not None
    assert group.officer.id == "GO-08"  # HC001's officer in the registry
    assert sorted(m.id for m in group.members) == ["GD-101", "GD-102"]
    # Started with the earlier member: both went silent after their last
    # readings, dated in device time.
    assert group.start_time == min(m.start_time for m in group.members)
    assert "group warning opened" in caplog.text

    # CAP area is the enterprise; the CloudEvent and the InfluxDB point too.
    doc = validated(render_cap(group, sender="riskwatch.local"))
    ns = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}
    assert doc.findtext(".//cap:area/cap:geocode/cap:valueName", namespaces=ns) == (
        "enterprise"
    )
    _headers, body = to_http(group, "urn:riskwatch:test")
    assert group.id.encode() in body
    line = warning_point(group.model_dump(mode="json")).to_line_protocol()
    assert "scope=enterprise" in line
    assert "members=2i" in line


def test_device_warnings_under_an_open_enterprise_warning_are_inhibited_then_released(
    tmp_path, caplog
):
    worker = _worker(tmp_path)
    _silent_sensors(worker)
    before = worker.counters["inhibited"]  # the gas sensors' device-silent
    with caplog.at_level(logging.INFO):
        posted = _scan(worker, T0 + (190 + SILENT_S + 1) * S)
    # PT-101 joins the enterprise warning (an update); its device-silent and
    # safety-sensor-silent warnings and the meter's device-silent are held
    # back, inhibited by it.
    [update] = posted
    assert (update.rule_id, event_type(update)) == (GROUP_RULE, UPDATED)
    assert sorted(m.id for m in update.members) == ["GD-101", "GD-102", "PT-101"]
    stored = _stored(worker)
    for device in LATER:
        held = stored["device-silent", device]
        assert (held.held, held.inhibited_by) == (True, update.id)
    held = stored["safety-sensor-silent", "PT-101"]
    assert (held.held, held.inhibited_by) == (True, update.id)
    assert worker.counters["inhibited"] - before == 3
    assert "warning inhibited" in caplog.text

    # The meter comes back while the enterprise warning is open: its warning
    # resolves unseen by the platform.
    _read(worker, "EM-01", "power_kw", T0 + 400 * S)
    assert _pump(worker) == []
    # The gas sensors come back: GD-101 leaves the enterprise warning (an
    # update), and with GD-102 back only PT-101 is silent, fewer than two:
    # it resolves; PT-101 is still silent, so its own warning is released.
    _read(worker, "GD-101", "combustible_gas_lel", T0 + 410 * S)
    _read(worker, "GD-102", "toxic_gas_ppm", T0 + 420 * S)
    posted = _pump(worker)
    resolved = [w for w in posted if w.rule_id == GROUP_RULE]
    assert [(w.status, event_type(w)) for w in resolved] == [
        (WarningStatus.OPEN, UPDATED),
        (WarningStatus.RESOLVED, "org.riskwatch.warning.resolved"),
    ]
    assert [(m.id, m.active) for m in resolved[-1].members] == [
        ("GD-101", False),
        ("GD-102", False),
        ("PT-101", True),
    ]
    assert ("safety-sensor-silent", "device", "GD-101", "resolved") in _about(posted)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        asyncio.run(worker._release_held())
    # Both of PT-101's held warnings go out: a release is not judged again
    # against the device's other warnings of the same finding (a limit).
    released = sorted(_pump(worker), key=lambda w: w.rule_id)
    assert [(w.rule_id, w.device_id) for w in released] == [
        ("device-silent", "PT-101"),
        ("safety-sensor-silent", "PT-101"),
    ]
    for warning in released:
        assert (warning.held, warning.status) == (False, WarningStatus.OPEN)
        assert warning.inhibited_by == update.id
        assert f"warning release sent warning={warning.id}" in caplog.text
    assert f"inhibitor={update.id}" in caplog.text


def test_a_bad_group_note_is_dead_lettered(tmp_path):
    worker = _worker(tmp_path)
    asyncio.run(worker.on_group_note(b"r|enterprise/HC001", b"{}"))
    assert len(worker.dead_letter.sent) == 1
    note = GroupNote.model_validate(
        {
            "rule": GROUP_RULE,
            "group": "enterprise/HC001",
            "expire": {
                "enterprise": "HC001",
                "device": "GD-101",
                "at": "2027-01-01T00:00:00Z",
            },
        }
    )
    asyncio.run(worker.on_group_note(b"other-key", to_json_bytes(note)))
    assert len(worker.dead_letter.sent) == 2
    assert worker.group_state == {}


def test_the_internal_topics_are_those_the_agents_read(tmp_path):
    # Created before Faust subscribes (stream_jobs/cli.py), sized as the
    # agents' topics, the group topic like the group-state table.
    worker = StreamWorker(
        Settings(run_dir=tmp_path / "run", cache_dir=tmp_path / "cache")
    )
    kafka = worker.settings.kafka
    assert [(t.name, t.partitions) for t in worker.internal_topics()] == [
        ("riskwatch-worker-silence", kafka.readings_partitions),
        ("riskwatch-worker-expire", kafka.readings_partitions),
        ("riskwatch-worker-group", kafka.default_partitions),
    ]
    assert worker.group_state.partitions == kafka.default_partitions
