"""KafkaOutageGate: aiokafka's retry lines while Kafka is down become one
WARNING when the connection is lost and one INFO when a broker answers again,
per logger. The lines are aiokafka 0.14's own format strings."""

import logging

import pytest

from riskwatch.kafka_log import install_kafka_gate, remove_kafka_gate

CLIENT, FETCHER, CONN = "aiokafka", "aiokafka.consumer.fetcher", "aiokafka.conn"
ADDRESS = ("127.0.0.1", 61092)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def gate(clock):
    gate = install_kafka_gate(logging.INFO, clock=clock, repeat_after_s=60)
    yield gate
    remove_kafka_gate(gate)


def fail_once(clock):
    """What one retry round of a producer and a consumer logs, 0.1 s apart."""
    clock.now += 0.1
    logging.getLogger(CLIENT).error(
        "Unable connect to node with id %s: %s",
        1,
        ConnectionRefusedError(111, f"Connect call failed {ADDRESS}"),
    )
    logging.getLogger(CLIENT).error("Unable to update metadata from %s", [1])
    logging.getLogger(FETCHER).error(
        "Failed fetch messages from %s: %s",
        1,
        "NodeNotReadyError: Attempt to send a request to node which is not ready",
    )


def answer(clock):
    clock.now += 0.1
    logging.getLogger(CONN).debug(
        "Response from %s:%d %d: %s", *ADDRESS, 7, "MetadataResponse_v1(...)"
    )


def lines(caplog):
    return [(r.levelname, r.getMessage()) for r in caplog.records]


def test_an_outage_is_one_warning_and_one_info_per_logger(gate, clock, caplog):
    with caplog.at_level(logging.DEBUG):
        for _ in range(500):
            fail_once(clock)
        answer(clock)
        answer(clock)
    got = lines(caplog)
    assert [level for level, _ in got] == ["WARNING", "WARNING", "INFO", "INFO"]
    assert got[0][1].startswith(
        "kafka connection lost logger=aiokafka down_s=0.0 held_back=0: "
        "Unable connect to node with id 1: [Errno 111] Connect call failed"
    )
    assert got[1][1].startswith("kafka connection lost logger=aiokafka.consumer")
    # 500 rounds: aiokafka 999 held back, the fetcher 499, over 50 s.
    assert got[2][1] == (
        "kafka connection back logger=aiokafka down_s=50.0 held_back=999"
    )
    assert got[3][1] == (
        "kafka connection back logger=aiokafka.consumer.fetcher down_s=50.0 "
        "held_back=499"
    )
    # The answers themselves are DEBUG lines of aiokafka: not shown at INFO.
    assert all(r.name == "riskwatch.kafka_log" for r in caplog.records)


def test_other_lines_of_aiokafka_pass_unchanged(gate, clock, caplog):
    with caplog.at_level(logging.INFO):
        fail_once(clock)
        logging.getLogger("aiokafka.cluster").error(
            "Topic %s not found in cluster metadata", "riskwatch.readings.v1"
        )
        logging.getLogger("aiokafka.consumer.group_coordinator").info(
            "Discovered coordinator %s for group %s", 1, "riskwatch-worker"
        )
    assert lines(caplog)[2:] == [
        ("ERROR", "Topic riskwatch.readings.v1 not found in cluster metadata"),
        ("INFO", "Discovered coordinator 1 for group riskwatch-worker"),
    ]


def test_a_flapping_connection_is_reported_at_most_once_a_minute(gate, clock, caplog):
    with caplog.at_level(logging.INFO, logger="riskwatch.kafka_log"):
        for _ in range(100):  # 100 blips over 30 s: lost, back, lost, ...
            fail_once(clock)
            answer(clock)
            clock.now += 0.1
        levels = [r.levelname for r in caplog.records]
        assert levels == ["WARNING", "WARNING", "INFO", "INFO"]
        caplog.clear()
        clock.now += 60
        fail_once(clock)
        for _ in range(10):
            fail_once(clock)
    warned = lines(caplog)
    assert [level for level, _ in warned] == ["WARNING", "WARNING"]
    # The blips not reported are counted into the next line: 99 rounds of
    # two client lines and one fetcher line each.
    assert " held_back=198:" in warned[0][1]
    assert " held_back=99:" in warned[1][1]


def test_a_long_outage_after_a_blip_is_still_reported(gate, clock, caplog):
    with caplog.at_level(logging.INFO, logger="riskwatch.kafka_log"):
        fail_once(clock)
        answer(clock)
        caplog.clear()
        fail_once(clock)  # within the minute: held back
        assert caplog.records == []
        for _ in range(700):  # 70 s down: reported once the minute is over
            fail_once(clock)
    assert [level for level, _ in lines(caplog)] == ["WARNING", "WARNING"]


def test_aiokafka_debug_lines_show_only_at_debug(clock, caplog):
    for level, shown in ((logging.INFO, False), (logging.DEBUG, True)):
        gate = install_kafka_gate(level, clock=clock)
        try:
            caplog.clear()
            with caplog.at_level(logging.DEBUG):
                answer(clock)
            assert bool(caplog.records) is shown
        finally:
            remove_kafka_gate(gate)


def test_installing_again_keeps_one_gate_per_logger(clock):
    first = install_kafka_gate(logging.INFO, clock=clock)
    second = install_kafka_gate(logging.INFO, clock=clock)
    try:
        assert logging.getLogger(CLIENT).filters.count(first) == 0
        assert logging.getLogger(CLIENT).filters.count(second) == 1
    finally:
        remove_kafka_gate(second)
