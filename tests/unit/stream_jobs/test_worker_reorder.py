"""The worker holds readings until the device's watermark passes them, has the
silence scan release those of a device gone quiet, applies them before a
silence is judged, and counts what it drops or releases early."""

import asyncio
import logging

import pytest
from pydantic import ValidationError

from riskwatch.contracts import Observation
from stream_jobs.app import silence_note
from stream_jobs.reorder import held
from tests.unit.stream_jobs.test_processing import reading
from tests.unit.stream_jobs.test_worker_outage import _worker as outage_worker
from tests.unit.stream_jobs.test_worker_silences import _sent_commands

S = 10**9
T0 = 1_800_000_000 * S
KEY = b"HC001/GD-1"
LATENESS_S = 30


def _worker(tmp_path, **worker):
    return outage_worker(
        tmp_path, **{"lateness_s": LATENESS_S, "silent_after_s": 600, **worker}
    )


def _gas(worker, seconds, value):
    record = reading(T0 + seconds * S, device="GD-1", combustible_gas_lel=value)
    asyncio.run(worker.on_reading(record))


def _opened(worker):
    return [
        c.record
        for c in _sent_commands(worker)
        if c.record is not None and c.record.rule_id == "combustible-gas-orange"
    ]


def _scan(worker, wall_ns):
    worker.silences.sent.clear()
    asyncio.run(worker.find_silent(wall_ns))
    sent = list(worker.silences.sent)
    for key, value in sent:
        asyncio.run(worker.on_silence(key, value))
    return sent


def test_the_onset_is_evaluated_in_place_and_a_quiet_device_is_flushed(tmp_path):
    worker = _worker(tmp_path)
    # Every 10 s; the onset at 20 s arrives after 30 s and 40 s.
    for seconds, value in [(0, 1), (10, 1), (30, 31), (40, 32), (20, 30)]:
        _gas(worker, seconds, value)
    # Watermark 40 - 30 = 10 s: nothing over 25 applied yet.
    assert _opened(worker) == []
    assert held(worker.device_state[KEY]) == 3
    last_seen = T0 + 40 * S  # the latest arrival (received_ns)
    assert _scan(worker, last_seen + (LATENESS_S - 1) * S) == []
    assert _scan(worker, last_seen + LATENESS_S * S) == [
        (KEY, f"{last_seen + LATENESS_S * S} flush".encode())
    ]
    [opened] = _opened(worker)
    assert opened.start_time.timestamp() * S == T0 + 20 * S
    assert held(worker.device_state[KEY]) == 0
    assert worker.counters["flushed"] == 3
    # Nothing left to flush: the next scan sends nothing.
    assert _scan(worker, last_seen + (LATENESS_S + 10) * S) == []


def test_a_silent_device_has_its_held_readings_applied_first(tmp_path):
    worker = _worker(tmp_path, lateness_s=300)
    for seconds in range(0, 601, 60):
        _gas(worker, seconds, 2)
    assert held(worker.device_state[KEY]) == 5
    # The silence reaches the agent with the readings still held (its flush
    # note was not handled first): they are applied before it is judged.
    wall = T0 + (600 + 661) * S
    asyncio.run(worker.on_silence(KEY, silence_note(wall)))
    state = worker.device_state[KEY]
    assert (held(state), state["silent"], state["last_ts"]) == (0, True, T0 + 600 * S)
    silences = [
        Observation.model_validate_json(v)
        for _, v in worker.anomalies.sent
        if b'"silence"' in v
    ]
    # Dated from the last held reading, not from the last one applied before.
    assert [o.ts_ns for o in silences] == [wall]
    assert worker.counters["flushed"] == 5


def test_lateness_must_be_below_the_silence(tmp_path):
    with pytest.raises(ValidationError, match=r"lateness_s \(600\) must be below"):
        _worker(tmp_path, lateness_s=600)


def test_late_and_early_released_readings_are_counted_in_the_stats(tmp_path, caplog):
    worker = _worker(tmp_path, reorder_max_readings=2)
    for seconds in (0, 100, 50, 110, 120, 130):
        _gas(worker, seconds, 1)
    # 50 s came after 100 s: older than the watermark (70 s) and than 0 s
    # applied, so it is applied; 0 < 50 < 100 keeps the order.
    assert worker.counters["late"] == 0
    _gas(worker, 5, 1)  # behind 50 s, applied already: too late
    assert worker.counters["late"] == 1
    assert worker.counters["reorder_overflow"] >= 1
    with caplog.at_level(logging.INFO, logger="stream_jobs.app"):
        asyncio.run(worker._stats())
    stats = caplog.records[-1].getMessage()
    assert "late=1 " in stats
    assert f"reorder_overflow={worker.counters['reorder_overflow']} " in stats
    assert "flushed=0 " in stats
