import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from riskwatch.topics import ENTERPRISES, READINGS, topic_specs


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_topics_exist_with_their_partition_counts_and_policies(settings, stack):
    async def describe():
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
        await admin.start()
        try:
            specs = topic_specs(settings.kafka)
            topics = await admin.describe_topics([s.name for s in specs])
            configs = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, ENTERPRISES)]
            )
            return specs, topics, configs
        finally:
            await admin.close()

    specs, topics, configs = _run(describe())
    counts = {t["topic"]: len(t["partitions"]) for t in topics}
    assert counts == {s.name: s.partitions for s in specs}
    assert counts[READINGS] == 8
    entries = {
        name: value
        for resource in configs[0].resources
        for name, value, *_ in resource[4]
    }
    assert entries["cleanup.policy"] == "compact"


def test_record_produced_to_a_created_topic_is_consumed_back(settings, stack):
    key = f"test-device-{uuid.uuid4().hex[:8]}".encode()
    value = b'{"metric": "power_kw", "value": 12.5}'

    async def round_trip():
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka.bootstrap,
            acks="all",
            enable_idempotence=True,
        )
        await producer.start()
        try:
            meta = await producer.send_and_wait(READINGS, value, key=key)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka.bootstrap, enable_auto_commit=False
        )
        await consumer.start()
        try:
            partition = TopicPartition(READINGS, meta.partition)
            consumer.assign([partition])
            consumer.seek(partition, meta.offset)
            record = await consumer.getone()
        finally:
            await consumer.stop()
        return meta, record

    meta, record = _run(round_trip())
    assert (record.key, record.value, record.offset) == (key, value, meta.offset)


def test_same_key_always_lands_on_the_same_partition(settings, stack):
    key = f"device-{uuid.uuid4().hex[:8]}".encode()

    async def send_three():
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap)
        await producer.start()
        try:
            return [
                (await producer.send_and_wait(READINGS, b"x", key=key)).partition
                for _ in range(3)
            ]
        finally:
            await producer.stop()

    assert len(set(_run(send_three()))) == 1
