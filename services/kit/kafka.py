"""Kafka client wiring: the idempotent producer and topic administration."""

from __future__ import annotations

import contextlib

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from contracts.topics import all_topic_names, namespaced


def make_producer(bootstrap: str, client_id: str) -> AIOKafkaProducer:
    """acks=all and no reordering on retry (idempotence); a short linger batches bursts."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
        max_batch_size=256 * 1024,
        request_timeout_ms=15000,
        retry_backoff_ms=200,
    )


async def start_producer(producer: AIOKafkaProducer) -> AIOKafkaProducer:
    """Start a producer; if the broker is unreachable, release what start() opened
    before raising, so a retry loop leaks no connections."""
    try:
        await producer.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await producer.stop()
        raise
    return producer


async def ensure_topics(
    bootstrap: str, namespace: str = "", partitions: int = 3, replication: int = 1
) -> list[str]:
    """Create every contract topic (and its .dlq twin) that is missing; returns the names."""
    names = [namespaced(namespace, t) for t in all_topic_names()]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="enlace-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # a concurrent creator won
                await admin.create_topics(
                    [
                        NewTopic(n, num_partitions=partitions, replication_factor=replication)
                        for n in missing
                    ]
                )
    finally:
        await admin.close()
    return names
