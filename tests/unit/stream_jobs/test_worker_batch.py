"""The scoring agent's batches: bad records are dead-lettered and the rest
scored together; the table gets each device's state once, after the batch's
results are published."""

import asyncio
import json
import logging

from alert_rules import RuleEngine, load_rules
from riskwatch.contracts import Measurement, Metric, ReadingRecord, to_json_bytes
from riskwatch.settings import Settings
from stream_jobs import state_codec
from stream_jobs.app import StreamWorker
from stream_jobs.processing import process_arrival
from stream_jobs.storage import MemoryWriter

S = 1_000_000_000
T0_NS = 1_764_720_000 * S
RULES = RuleEngine(load_rules(None), authority="Test Work Safety Office")


class FakeTopic:
    def __init__(self):
        self.sent = []

    async def send(self, *, key, value):
        self.sent.append((key, value))


class RecordingTable(dict):
    """The table as a dict that remembers every write."""

    def __init__(self):
        super().__init__()
        self.writes = []

    def __setitem__(self, key, value):
        self.writes.append(key)
        super().__setitem__(key, value)


class Refusing:
    """The shipped rules, except that they fail on one device."""

    def __init__(self, device):
        self.device = device

    def evaluate(self, observation, enterprise, state):
        if observation.device == self.device:
            raise RuntimeError("rule state unreadable")
        return RULES.evaluate(observation, enterprise, state)

    def expire(self, state, enterprise, device):
        return RULES.expire(state, enterprise, device)


def one_by_one(records, policy):
    """The device states each reading's arrival in turn gives."""
    states = {}
    for record in records:
        states[record.key] = process_arrival(
            record, states.get(record.key), None, RULES, policy
        ).state
    return states


def _worker(tmp_path, rules=RULES, lateness_s=0.0):
    settings = Settings(
        run_dir=tmp_path / "run",
        cache_dir=tmp_path / "cache",
        worker={"lateness_s": lateness_s},
    )
    worker = StreamWorker(settings, rules=rules, writer_factory=MemoryWriter)
    worker.device_state = RecordingTable()
    for name in ("anomalies", "commands", "dead_letter", "groups"):
        setattr(worker, name, FakeTopic())
    worker.silence_view.ready.set()
    worker.findings.ready.set()
    return worker


def _reading(device, i, gas):
    ts = T0_NS + i * 60 * S
    return ReadingRecord(
        enterprise="HC001",
        device=device,
        ts_ns=ts,
        metrics=[Measurement(metric=Metric.COMBUSTIBLE_GAS_LEL, value=gas)],
        received_ns=ts,
    )


def _fleet(readings_per_device=40):
    """Two devices; the second's gas rises to the alarm level at the end."""
    records = []
    for i in range(readings_per_device):
        records.append(_reading("GT-1", i, 2.0 + 0.1 * (i % 3)))
        gas = 30.0 if i >= readings_per_device - 3 else 2.0 + 0.1 * (i % 2)
        records.append(_reading("GT-2", i, gas))
    return records


def test_a_bad_record_is_dead_lettered_and_the_batch_scored(tmp_path, caplog):
    worker = _worker(tmp_path)
    records = _fleet()
    values = [to_json_bytes(r) for r in records]
    values.insert(7, b'{"enterprise": "HC001"}')
    with caplog.at_level(logging.WARNING):
        asyncio.run(worker.score_batch(values))
    assert worker.counters["rejected"] == 1
    assert worker.counters["scored"] == len(records)
    assert len(worker.dead_letter.sent) == 1
    assert "record rejected topic=riskwatch.readings.v1" in caplog.text
    # Written once per device, with what one reading at a time would give.
    assert sorted(worker.device_state.writes) == [b"HC001/GT-1", b"HC001/GT-2"]
    assert dict(worker.device_state) == one_by_one(records, worker.reorder)
    # The second device's gas opened a warning, sent to the lifecycle agent.
    opened = [json.loads(v) for _, v in worker.commands.sent]
    assert opened
    assert {c["record"]["device_id"] for c in opened} == {"GT-2"}
    assert worker.counters["batches"] == 1


class EncodingTable(RecordingTable):
    """The table encoding each state as the device-state table's codec does
    when it writes the changelog."""

    def __setitem__(self, key, value):
        state_codec.dumps(value)
        super().__setitem__(key, value)


def test_a_record_with_a_seq_beyond_64_bits_is_dead_lettered_naming_it(tmp_path):
    # A seq of 2**64 once passed and crashed the agent when the state was
    # written, costing the batch's other readings.
    worker = _worker(tmp_path)
    worker.device_state = EncodingTable()
    records = _fleet()
    forged = json.loads(to_json_bytes(records[0]))
    forged["seq"] = 2**64
    values = [to_json_bytes(r) for r in records]
    values.insert(3, json.dumps(forged).encode())
    asyncio.run(worker.score_batch(values))
    assert worker.counters["rejected"] == 1
    assert worker.counters["scored"] == len(records)
    [(_, letter)] = worker.dead_letter.sent
    assert json.loads(letter)["field"] == "seq"
    assert {json.loads(v)["record"]["device_id"] for _, v in worker.commands.sent} == {
        "GT-2"
    }


def test_a_batch_that_fails_is_scored_one_by_one_losing_only_the_failing(
    tmp_path, caplog
):
    worker = _worker(tmp_path, rules=Refusing("GT-2"))
    records = _fleet(5)
    with caplog.at_level(logging.WARNING):
        asyncio.run(worker.score_batch([to_json_bytes(r) for r in records]))
    assert "batch not scored records=10, scoring them one by one" in caplog.text
    # GT-2's five readings are dead-lettered with the reason; GT-1's scored.
    assert worker.counters["rejected"] == 5
    assert worker.counters["scored"] == 5
    letters = [json.loads(v) for _, v in worker.dead_letter.sent]
    assert all("rule state unreadable" in letter["reason"] for letter in letters)
    assert list(worker.device_state) == [b"HC001/GT-1"]
    assert worker.device_state[b"HC001/GT-1"]["series"]["combustible_gas_lel"]


def test_the_next_batch_starts_from_the_stored_states(tmp_path):
    worker = _worker(tmp_path)
    records = _fleet()
    half = len(records) // 2
    asyncio.run(worker.score_batch([to_json_bytes(r) for r in records[:half]]))
    asyncio.run(worker.score_batch([to_json_bytes(r) for r in records]))
    # The first half again: redeliveries, dropped (a repeat of the last
    # reading as a duplicate, the older ones as too late).
    assert worker.counters["duplicates"] + worker.counters["late"] == half
    assert worker.counters["duplicates"] == 2
    assert dict(worker.device_state) == one_by_one(
        records[:half] + records, worker.reorder
    )


def test_readings_out_of_order_in_a_batch_are_held_and_applied_in_order(tmp_path):
    worker = _worker(tmp_path, lateness_s=180.0)
    records = _fleet()
    # Each device's readings two by two in reverse: within the lateness.
    shuffled = [records[i + 2 * (i % 4 < 2) - 2 * (i % 4 >= 2)] for i in range(80)]
    assert sorted(r.ts_ns for r in shuffled) == sorted(r.ts_ns for r in records)
    asyncio.run(worker.score_batch([to_json_bytes(r) for r in shuffled]))
    assert dict(worker.device_state) == one_by_one(shuffled, worker.reorder)
    assert worker.counters["late"] == 0
    assert worker.counters["scored"] == len(shuffled)


def test_the_device_state_changelog_is_not_a_stream_to_ack(tmp_path):
    # Faust's table changelogs are read by its recovery, never acked; an
    # acked one makes faust log "Stream has not started processing" as an
    # ERROR for every partition every few seconds.
    settings = Settings(run_dir=tmp_path / "run", cache_dir=tmp_path / "cache")
    worker = StreamWorker(settings, rules=RULES, writer_factory=MemoryWriter)
    changelog = worker.device_state.changelog_topic
    assert changelog.acks is False
    assert changelog.value_serializer == "riskwatch-state"
