"""The end of a rebalance's recovery: records fetched while faust seeks the
agents' partitions back to their committed offsets must not reach the agents'
queues, which faust empties right after that seek (faust-streaming #596; the
restart defect of issue 5)."""

import asyncio
import logging

from faust.types import TP

from stream_jobs.app import track_in_producer_metadata
from tests.unit.conftest import fake_worker

READINGS_TP = TP("riskwatch.readings.v1", 2)


def test_recovery_completion_holds_the_flow_until_faust_resumes_it(tmp_path, caplog):
    worker = fake_worker(tmp_path)

    async def run():
        consumer = worker.app.consumer
        consumer.resume_flow()  # on, as while the changelogs are read
        with caplog.at_level(logging.DEBUG, logger="stream_jobs.app"):
            await worker.app.on_rebalance_complete.send()
        held = (consumer.flow_active, consumer.can_resume_flow.is_set())
        consumer.resume_flow()  # what faust does after the seek and the clear
        return held, consumer.flow_active

    assert asyncio.run(run()) == ((False, False), True)
    assert "consumer flow held until the seek" in caplog.text


def test_a_fetch_returning_while_held_is_sought_back_not_delivered(tmp_path):
    """What the hold relies on in faust: ``getmany`` with the flow stopped
    yields nothing of what the fetch returned and seeks to the committed
    offsets again, so those records are fetched anew once the flow resumes."""
    worker = fake_worker(tmp_path)
    seeks = []

    async def fetched(timeout):
        return {READINGS_TP: [object(), object()]}, {READINGS_TP}

    async def perform_seek():
        seeks.append(READINGS_TP)

    async def run():
        consumer = worker.app.consumer
        consumer.resume_flow()
        await worker.app.on_rebalance_complete.send()
        consumer._wait_next_records = fetched
        consumer.perform_seek = perform_seek
        return [message async for message in consumer.getmany(timeout=0)]

    assert asyncio.run(run()) == []
    assert seeks == [READINGS_TP]


def test_the_device_state_changelog_is_tracked_in_the_producer_metadata(tmp_path):
    """The partitioner of the device-state table reads the producer's
    metadata; aiokafka refreshes only the topics it tracks once anything is
    sent, so the changelog must be tracked before its first send."""

    worker = fake_worker(tmp_path)
    tracked = []

    class Client:
        async def add_topic(self, topic):
            tracked.append(topic)

    class Producer:
        client = Client()

    worker.app.producer._ensure_producer = Producer
    name = f"{worker.app.conf.id}-device-state-changelog"
    asyncio.run(track_in_producer_metadata(worker.app, name))
    assert tracked == [name]
