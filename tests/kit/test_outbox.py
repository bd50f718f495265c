"""The outbox relay on real Kafka and PostgreSQL: one leader among replicas, every
event published once and in order per case, the standby taking over."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from contracts.envelope import CloudEvent
from contracts.topics import Topic
from services.kit.db import create_pool, migrate
from services.kit.kafka import make_producer
from services.kit.metrics import KitMetrics
from services.kit.outbox import OutboxRelay, enqueue
from tests.helpers import TopicReader, poll_until
from tests.infra import Infra


async def test_one_leader_publishes_in_order_and_a_standby_takes_over(
    infra: Infra, namespace: str, databases: Callable[..., Any], topics: TopicReader
) -> None:
    dsn = await databases("relay", role="intake")
    pool = await create_pool(dsn)
    await migrate(pool, None, "relay")

    def relay() -> OutboxRelay:
        return OutboxRelay(
            pool=pool,
            dsn=dsn,
            namespace=namespace,
            lock_key=777,
            metrics=KitMetrics("relay"),
            producer_factory=lambda: make_producer(infra.kafka(), "test-relay"),
            batch_size=50,
            fallback_poll_seconds=0.2,
        )

    first, second = relay(), relay()
    tasks = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]
    try:
        await poll_until(lambda: _leaders(first, second), lambda n: n == 1, what="a leader")
        cases = [str(uuid.uuid4()) for _ in range(5)]
        events = [
            CloudEvent(type="test.step", source="/test", subject=case, data={"step": step})
            for step in range(40)
            for case in cases
        ]
        async with pool.acquire() as conn:
            for start in range(0, len(events), 25):
                async with conn.transaction():
                    await enqueue(conn, Topic.FOLLOWUPS, *events[start : start + 25])
        assert await _leaders(first, second) == 1

        leader, standby = (first, second) if first.is_leader else (second, first)
        records = await topics.wait_for(
            Topic.FOLLOWUPS,
            lambda rs: len([r for r in rs if r.subject in cases]) >= 200,
            what="200 events",
        )
        await leader.stop()
        await poll_until(lambda: _leaders(standby), lambda n: n == 1, what="the standby to lead")
        late = CloudEvent(type="test.step", source="/test", subject=cases[0], data={"step": 40})
        async with pool.acquire() as conn, conn.transaction():
            await enqueue(conn, Topic.FOLLOWUPS, late)
        records = await topics.wait_for(
            Topic.FOLLOWUPS,
            lambda rs: any(r.headers["ce_id"] == late.id for r in rs),
            what="the event enqueued after the failover",
        )
    finally:
        await first.stop()
        await second.stop()
        await asyncio.gather(*tasks)
        await pool.close()

    mine = [r for r in records if r.subject in cases]
    assert len(mine) == 201
    assert max(Counter(r.headers["ce_id"] for r in mine).values()) == 1
    for case in cases:
        steps = [
            r.value["step"]
            for r in sorted((r for r in mine if r.subject == case), key=lambda r: r.offset)
        ]
        assert steps == sorted(steps), f"case {case} out of order"


async def _leaders(*relays: OutboxRelay) -> int:
    return sum(r.is_leader for r in relays)
