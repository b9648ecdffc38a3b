import asyncio
import gc
import hashlib
import json
import logging
import warnings

import pytest

from gateway import core
from gateway.core import Gateway
from gateway.mqtt_adapter import Inbound
from gateway.sink import MemorySink, SinkError
from riskwatch.contracts import METRICS, DeadLetter, Metric, ReadingRecord
from riskwatch.settings import GatewaySettings
from riskwatch.topics import DEAD_LETTER, READINGS

ROOT = "riskwatch/v1"
NOW_NS = 1_764_726_000 * 1_000_000_000


def _msg(payload, topic=f"{ROOT}/E001/PT-101/telemetry", mid=1, **kw):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Inbound(
        topic=topic,
        payload=body,
        mid=mid,
        qos=1,
        retain=kw.get("retain", False),
        dup=kw.get("dup", False),
        received_ns=NOW_NS,
        generation=1,
    )


def _good(value=1.5, ts=1_764_725_000, seq=None):
    body = {
        "ts": ts,
        "metrics": [{"metric": "pressure_mpa", "value": value, "unit": "MPa"}],
    }
    if seq is not None:
        body["seq"] = seq
    return body


class Harness:
    def __init__(self, sink=None, **settings):
        self.sink = sink or MemorySink()
        self.acked = []
        self.sleeps = []
        self.ack_result = True

        async def fake_sleep(seconds):
            self.sleeps.append(seconds)
            await asyncio.sleep(0)

        def ack(message):
            if self.ack_result:
                self.acked.append(message.mid)
            return self.ack_result

        self.gateway = Gateway(
            GatewaySettings(**{"produce_attempts": 3, **settings}),
            topic_root=ROOT,
            sink=self.sink,
            ack=ack,
            clock_ns=lambda: NOW_NS,
            sleep=fake_sleep,
        )

    def run(self, messages, until=None):
        async def main():
            task = asyncio.create_task(self.gateway.run())
            for m in messages:
                await self.gateway.deliver(m)
            if until is None:
                await asyncio.wait_for(self.gateway.drain(), 5)
            else:
                await until(self)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        asyncio.run(main())

    def topics(self):
        return [topic for topic, _, _ in self.sink.records]

    def dead_letters(self):
        return [
            DeadLetter.model_validate_json(v)
            for t, _, v in self.sink.records
            if t == DEAD_LETTER
        ]


def test_valid_message_becomes_a_keyed_reading_and_is_acked_after_kafka():
    h = Harness()
    h.run([_msg(_good(seq=7), mid=11)])
    [(topic, key, value)] = h.sink.records
    assert topic == READINGS
    assert key == b"E001/PT-101"
    record = ReadingRecord.model_validate_json(value)
    assert (record.enterprise, record.device, record.seq) == ("E001", "PT-101", 7)
    assert record.ts_ns == 1_764_725_000 * 1_000_000_000
    assert [(m.metric.value, m.value) for m in record.metrics] == [
        ("pressure_mpa", 1.5)
    ]
    assert h.acked == [11]
    c = h.gateway.counters
    assert (c.received, c.produced, c.dead_lettered, c.acked) == (1, 1, 0, 1)


BAD = [
    (
        "nan",
        {
            "ts": 1_764_725_000,
            "metrics": [{"metric": "power_kw", "value": "NaN", "unit": "kW"}],
        },
        "metrics.0.value",
        "finite",
    ),
    (
        "infinity",
        b'{"ts": 1764725000, "metrics": '
        b'[{"metric": "power_kw", "value": Infinity, "unit": "kW"}]}',
        "metrics.0.value",
        "finite",
    ),
    (
        "unknown metric",
        {
            "ts": 1_764_725_000,
            "metrics": [{"metric": "voltage", "value": 1, "unit": "V"}],
        },
        "metrics.0.metric",
        "unknown metric 'voltage'",
    ),
    (
        "unknown unit",
        {
            "ts": 1_764_725_000,
            "metrics": [{"metric": "power_kw", "value": 1, "unit": "W"}],
        },
        "metrics.0.unit",
        "unit 'W' is not valid for power_kw",
    ),
    (
        "missing timestamp",
        {"metrics": [{"metric": "power_kw", "value": 1, "unit": "kW"}]},
        "ts",
        "required field is missing",
    ),
    ("future timestamp", _good(ts=1_764_726_000 + 3600), "ts", "3600s in the future"),
    (
        "too large",
        b'{"ts": 1764725000, "pad": "' + b"x" * 70_000 + b'"}',
        "payload",
        "exceeds the 65536 limit",
    ),
    ("not utf-8", b'{"ts": "\xff\xfe"}', "payload", "not UTF-8"),
    ("not json", b"{ts: 1}", "payload", "invalid JSON"),
    (
        "value given twice",
        b'{"ts": 1764725000, "metrics": '
        b'[{"metric": "pressure_mpa", "value": 1.2, "value": 99, "unit": "MPa"}]}',
        "metrics.0.value",
        "given twice",
    ),
    ("seq true", _good(seq=True), "seq", "expected an integer, got true"),
    ("seq a string", _good(seq="1"), "seq", "expected an integer, got '1'"),
    (
        "byte-order mark",
        b"\xef\xbb\xbf" + json.dumps(_good()).encode(),
        "payload",
        "starts with a UTF-8 byte-order mark",
    ),
]


@pytest.mark.parametrize(
    ("name", "payload", "field", "reason"), BAD, ids=[b[0] for b in BAD]
)
def test_rejections_go_to_dead_letter_with_field_and_reason(
    name, payload, field, reason
):
    h = Harness()
    bad = _msg(payload, mid=2)
    h.run([_msg(_good(1.0), mid=1), bad, _msg(_good(3.0), mid=3)])
    assert h.topics() == [READINGS, DEAD_LETTER, READINGS]
    [letter] = h.dead_letters()
    assert letter.field == field
    assert reason in letter.reason
    assert letter.payload() == bad.payload
    assert letter.topic == bad.topic
    good = [
        ReadingRecord.model_validate_json(v)
        for t, _, v in h.sink.records
        if t == READINGS
    ]
    assert [r.metrics[0].value for r in good] == [1.0, 3.0]
    assert h.acked == [1, 2, 3]


def test_oversized_payload_is_dead_lettered_truncated_with_size_and_digest():
    # Larger than a Kafka record may be: kept in part, never held forever.
    huge = b'{"ts": 1764725000, "metrics": [' + b" " * 2_000_000 + b"]}"
    h = Harness()
    h.run([_msg(_good(1.0), mid=1), _msg(huge, mid=2), _msg(_good(3.0), mid=3)])
    assert h.topics() == [READINGS, DEAD_LETTER, READINGS]
    [letter] = h.dead_letters()
    assert letter.field == "payload"
    assert "exceeds the 65536 limit" in letter.reason
    assert letter.truncated
    assert letter.payload_bytes == len(huge)
    assert letter.payload_sha256 == hashlib.sha256(huge).hexdigest()
    assert letter.payload() == huge[: len(letter.payload())]
    assert 0 < len(letter.payload()) < len(huge)
    assert h.acked == [1, 2, 3]
    c = h.gateway.counters
    assert (c.produced, c.dead_lettered, c.acked) == (2, 1, 3)


def test_small_rejected_payload_is_kept_whole():
    h = Harness()
    h.run([_msg(b"not json", mid=1)])
    [letter] = h.dead_letters()
    assert not letter.truncated
    assert letter.payload() == b"not json"
    assert letter.payload_bytes == 8


@pytest.mark.parametrize("body", [b"blah", b'{"online": true}', b"ONLINE"])
def test_a_status_other_than_online_or_offline_is_dead_lettered(body):
    h = Harness()
    h.run([_msg(body, topic=f"{ROOT}/E001/PT-101/status", mid=4)])
    [letter] = h.dead_letters()
    assert letter.field == "payload"
    assert "status must be 'online' or 'offline'" in letter.reason
    assert letter.payload() == body
    assert h.acked == [4]
    assert h.gateway.counters.status_messages == 0


def test_an_empty_status_clearing_a_retained_message_is_acked_quietly():
    h = Harness()
    h.run([_msg(b"", topic=f"{ROOT}/E001/PT-101/status", mid=6)])
    assert h.sink.records == []
    assert h.acked == [6]


def test_malformed_topic_is_dead_lettered():
    h = Harness()
    h.run([_msg(_good(), topic=f"{ROOT}/E001/telemetry")])
    [letter] = h.dead_letters()
    assert letter.field == "topic"
    assert h.acked == [1]


def test_status_messages_are_acked_and_not_forwarded():
    h = Harness()
    h.run([_msg(b"offline", topic=f"{ROOT}/E001/PT-101/status", mid=5)])
    assert h.sink.records == []
    assert h.acked == [5]
    assert h.gateway.counters.status_messages == 1


def test_an_empty_telemetry_body_clears_a_retained_message_and_is_not_refused():
    h = Harness()
    h.run([_msg(b"", topic=f"{ROOT}/E001/PT-101/telemetry", mid=6)])
    assert h.sink.records == []
    assert h.dead_letters() == []
    assert h.acked == [6]
    assert h.gateway.counters.cleared_retained == 1


def test_transient_produce_failure_is_retried_with_backoff():
    sink = MemorySink()
    sink.fail_next = [SinkError("broker away"), SinkError("broker away")]
    h = Harness(sink)
    h.run([_msg(_good(), mid=1)])
    assert h.topics() == [READINGS]
    assert h.acked == [1]
    assert h.gateway.counters.produce_retries == 2
    assert len(h.sleeps) == 2
    assert h.sleeps[0] < h.sleeps[1], "backoff grows"


def test_message_that_cannot_be_produced_is_dead_lettered_after_bounded_attempts():
    sink = MemorySink()
    sink.fail_topics[READINGS] = SinkError("record rejected")
    h = Harness(sink)
    h.run([_msg(_good(), mid=4)])
    [letter] = h.dead_letters()
    assert letter.field == "kafka"
    assert "not produced after 3 attempt(s)" in letter.reason
    assert h.acked == [4]
    assert h.gateway.counters.dead_lettered == 1


def test_non_retryable_error_is_dead_lettered_at_once():
    sink = MemorySink()
    sink.fail_topics[READINGS] = SinkError("too large", retryable=False)
    h = Harness(sink)
    h.run([_msg(_good(), mid=4)])
    assert "after 1 attempt(s)" in h.dead_letters()[0].reason


def test_nothing_is_acked_while_kafka_is_down_and_all_is_acked_after():
    sink = MemorySink()
    down = SinkError("kafka down")
    sink.fail_topics = {READINGS: down, DEAD_LETTER: down}
    h = Harness(sink)

    async def outage_then_recovery(h):
        while len(h.sleeps) < 10:  # many retries, bounded by the fake clock
            await asyncio.sleep(0)
        assert h.acked == []
        sink.fail_topics = {}
        await asyncio.wait_for(h.gateway.drain(), 5)

    h.run([_msg(_good(), mid=1), _msg(_good(2.0), mid=2)], until=outage_then_recovery)
    assert h.acked == [1, 2]
    # The first message had exhausted its attempts and went to dead letter;
    # the second, which never failed on its own, is a normal reading.
    assert h.topics() == [DEAD_LETTER, READINGS]


def test_stopping_while_kafka_is_down_is_quick_acks_nothing_and_leaks_nothing(
    monkeypatch,
):
    monkeypatch.setattr(core, "ACKER_STOP_S", 0.05)
    sink = MemorySink()
    down = SinkError("kafka down")
    sink.fail_topics = {READINGS: down, DEAD_LETTER: down}
    h = Harness(sink)

    async def retrying(h):
        while len(h.sleeps) < 3:
            await asyncio.sleep(0)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h.run([_msg(_good(v), mid=v) for v in (1, 2, 3)], until=retrying)
        gc.collect()
    # Unacknowledged, so the broker redelivers all three to the next gateway.
    assert h.acked == []
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []


def test_acks_follow_arrival_order_when_produces_finish_out_of_order():
    class SlowFirst(MemorySink):
        async def send(self, topic, key, value):
            delay = 0.05 if not self.records and not getattr(self, "seen", False) else 0
            self.seen = True

            async def result():
                await asyncio.sleep(delay)
                self.records.append((topic, key, value))

            return result()

    h = Harness(SlowFirst())
    h.run([_msg(_good(v), mid=i) for i, v in enumerate([1.0, 2.0, 3.0], start=1)])
    assert h.acked == [1, 2, 3]


def test_stale_connection_ack_is_skipped_and_counted():
    h = Harness()
    h.ack_result = False
    h.run([_msg(_good(), mid=1)])
    assert h.gateway.counters.ack_skipped == 1
    assert h.gateway.counters.produced == 1


def test_redelivered_and_retained_messages_are_counted():
    h = Harness()
    h.run([_msg(_good(), mid=1, dup=True), _msg(_good(), mid=2, retain=True)])
    c = h.gateway.counters
    assert (c.redelivered, c.retained, c.produced) == (1, 1, 2)
    records = [ReadingRecord.model_validate_json(v) for _, _, v in h.sink.records]
    assert [r.retained for r in records] == [False, True]


def test_full_queue_holds_the_sender_back_and_loses_nothing():
    h = Harness(receive_maximum=1)
    gw = h.gateway
    messages = [_msg(_good(float(i)), mid=i) for i in range(300)]

    async def main():
        sender = asyncio.create_task(_send_all(gw, messages))
        await asyncio.sleep(0.05)
        # The queue holds receive_maximum + 100 and the gateway is not
        # running yet: the sender is waiting, nothing was dropped.
        assert not sender.done()
        assert gw.counters.backpressure >= 1
        runner = asyncio.create_task(gw.run())
        await asyncio.wait_for(sender, 5)
        await asyncio.wait_for(gw.drain(), 5)
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)

    asyncio.run(main())
    assert h.acked == list(range(300))
    assert len(h.sink.records) == 300


async def _send_all(gw, messages):
    for m in messages:
        await gw.deliver(m)


# Physical ranges -----------------------------------------------------------
# Values no working sensor can report (D6 of the attack run: level_pct -50
# and 1e6, toxic gas -3 ppm were forwarded as readings): each is
# dead-lettered naming metrics.<metric> and the range, and the message's other
# metrics are still forwarded.

TS = 1_764_725_000


def _payload(*items):
    return {
        "ts": TS,
        "metrics": [
            {"metric": metric, "value": value, "unit": METRICS[Metric(metric)].unit}
            for metric, value in items
        ],
    }


def _readings(h):
    return [
        ReadingRecord.model_validate_json(v)
        for t, _, v in h.sink.records
        if t == READINGS
    ]


@pytest.mark.parametrize(
    ("metric", "value", "shown", "allowed"),
    [
        ("level_pct", -50, "-50", "-1.25 to 103.125 %"),
        ("level_pct", 1e6, "1e+06", "-1.25 to 103.125 %"),
        ("toxic_gas_ppm", -3, "-3", "0 to 1e+06 ppm"),
        ("combustible_gas_lel", -5, "-5", "at least -1.25 %LEL"),
        ("temperature_c", -300, "-300", "at least -273.15 °C"),
        ("pressure_mpa", -0.5, "-0.5", "at least -0.11 MPa"),
        ("energy_kwh", -1, "-1", "at least 0 kWh"),
        ("water_m3", -0.5, "-0.5", "at least 0 m3"),
        ("gas_m3", -2, "-2", "at least 0 m3"),
    ],
)
def test_an_impossible_value_is_dead_lettered_naming_the_metric_and_range(
    metric, value, shown, allowed, caplog
):
    h = Harness()
    with caplog.at_level(logging.WARNING, logger="gateway.core"):
        h.run([_msg(_payload((metric, value)), mid=3)])
    [letter] = h.dead_letters()
    assert h.topics() == [DEAD_LETTER]
    assert letter.field == f"metrics.{metric}"
    article = "an" if metric[0] in "aeiou" else "a"
    assert letter.reason == (
        f"value {shown} is outside what {article} {metric} sensor can report "
        f"({allowed})"
    )
    assert json.loads(letter.payload())["metrics"][0]["value"] == value
    assert h.acked == [3]
    c = h.gateway.counters
    assert (c.received, c.produced, c.dead_lettered, c.split) == (1, 0, 1, 0)
    assert (
        f"rejected topic=riskwatch/v1/E001/PT-101/telemetry field=metrics.{metric}"
        in caplog.text
    )


def test_the_other_metrics_of_the_message_are_still_forwarded():
    h = Harness()
    body = _payload(
        ("level_pct", 61.5),
        ("combustible_gas_lel", -5),
        ("temperature_c", 21.0),
        ("toxic_gas_ppm", -3),
    )
    h.run([_msg(body, mid=9)])
    # The dead letters first, the reading last: the message is acknowledged
    # once every record of it is in Kafka.
    assert h.topics() == [DEAD_LETTER, DEAD_LETTER, READINGS]
    assert [d.field for d in h.dead_letters()] == [
        "metrics.combustible_gas_lel",
        "metrics.toxic_gas_ppm",
    ]
    [record] = _readings(h)
    assert [(m.metric.value, m.value) for m in record.metrics] == [
        ("level_pct", 61.5),
        ("temperature_c", 21.0),
    ]
    assert record.ts_ns == TS * 1_000_000_000
    assert h.acked == [9]
    c = h.gateway.counters
    assert (c.received, c.produced, c.dead_lettered, c.split, c.acked) == (
        1,
        1,
        2,
        1,
        1,
    )


def _edges():
    """For every bounded metric: (metric, value, taken) at and just past each bound."""
    for metric, info in METRICS.items():
        for bound, outward in ((info.low, -1), (info.high, 1)):
            if bound is None:
                continue
            step = max(abs(bound) * 1e-6, 1e-9)
            yield metric.value, bound, True
            yield metric.value, bound + outward * step, False


@pytest.mark.parametrize(("metric", "value", "taken"), list(_edges()))
def test_every_bound_is_inclusive_and_a_hair_past_it_refused(metric, value, taken):
    h = Harness()
    h.run([_msg(_payload((metric, value)))])
    assert h.topics() == ([READINGS] if taken else [DEAD_LETTER])


@pytest.mark.parametrize(
    ("metric", "value"),
    [
        ("power_kw", -850.0),  # a site exporting
        ("level_pct", 102.0),  # a transmitter overshooting its span a little
        ("combustible_gas_lel", 100.0),  # full scale
        # Past the lower explosive limit: an infrared detector reports it, and
        # the gas rule must see it.
        ("combustible_gas_lel", 150.0),
        ("temperature_c", 1450.0),  # a furnace thermocouple
        ("pressure_mpa", -0.09),  # a vacuum
    ],
)
def test_unusual_but_possible_values_are_readings(metric, value):
    h = Harness()
    h.run([_msg(_payload((metric, value)))])
    [record] = _readings(h)
    assert record.metrics[0].value == value


def test_a_split_message_is_not_acked_until_its_reading_is_in_kafka():
    sink = MemorySink()
    down = SinkError("kafka down")
    sink.fail_topics = {READINGS: down}
    h = Harness(sink, produce_attempts=50)

    async def dead_letter_in_reading_held(h):
        while len(h.sleeps) < 5:
            await asyncio.sleep(0)
        assert h.topics() == [DEAD_LETTER]
        assert h.acked == []
        sink.fail_topics = {}
        await asyncio.wait_for(h.gateway.drain(), 5)

    h.run(
        [_msg(_payload(("level_pct", -50), ("power_kw", 4.0)), mid=5)],
        until=dead_letter_in_reading_held,
    )
    assert h.topics() == [DEAD_LETTER, READINGS]
    assert h.acked == [5]
