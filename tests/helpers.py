"""Test helpers: polling with a deadline (never a bare sleep), reading real topics
with a plain aiokafka consumer, and agency credentials."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.topics import namespaced
from services.kit.kafka import KafkaClient

T = TypeVar("T")

DEMO_KEYS: dict[str, str] = dict(
    line.split()
    for line in (Path(__file__).parents[1] / "deploy" / "local" / "demo-api-keys.txt")
    .read_text()
    .splitlines()
    if line and not line.startswith("#")
)


def free_port() -> int:
    """A loopback port nobody listens on right now, for a server a test starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def auth(agency_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {DEMO_KEYS[agency_id]}"}


async def poll_until(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool] = bool,
    *,
    timeout: float = 20.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Call `probe` until `done(result)`; fail with the last result at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {result!r}")
        await asyncio.sleep(interval)


async def consumed(
    db: Any, event_id: str, *, consumer: str | None = None, timeout: float = 20.0
) -> None:
    """Wait until a service has applied (or dead-lettered) the event `event_id`:
    its id is in the service's processed_events. `db` is the service's pool or a
    connection. Consumers apply a partition in order, so once a marker event sent
    after X is consumed, X was handled too: the way to prove that X had no effect."""

    async def seen() -> bool:
        query = "SELECT count(*) FROM processed_events WHERE event_id = $1"
        args: list[Any] = [event_id]
        if consumer is not None:
            query += " AND consumer = $2"
            args.append(consumer)
        return bool(await db.fetchval(query, *args))

    await poll_until(seen, timeout=timeout, what=f"event {event_id} consumed")


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: str | None
    headers: dict[str, str]
    value: Any  # parsed JSON, or raw bytes if not JSON
    timestamp_ms: int = 0  # the record's time on the broker

    @property
    def type(self) -> str:
        return self.headers.get("ce_type", "")

    @property
    def subject(self) -> str:
        return self.headers.get("ce_subject", "")


class TopicReader:
    """Reads a whole topic from the beginning, without a consumer group, as a partner
    would with nothing but aiokafka and our contracts."""

    def __init__(self, kafka: KafkaClient, namespace: str) -> None:
        self.kafka = kafka
        self.namespace = namespace

    async def read(self, topic: str, *, timeout: float = 10.0) -> list[Record]:
        """Every record of the topic up to its end offsets at the time of the call.

        Raises when the end is not reached in time: a partial read must never pass
        for "nothing more there". To prove that something did *not* happen, first
        see a later marker's effect (see `consumed`), then read."""
        name = namespaced(self.namespace, topic)
        consumer = AIOKafkaConsumer(**self.kafka.aiokafka(), enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(name) or set()
            if not partitions:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(name) or set()
            tps = [TopicPartition(name, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            out: list[Record] = []
            deadline = time.monotonic() + timeout
            while True:
                positions = [await consumer.position(tp) for tp in tps]
                if all(pos >= end[tp] for pos, tp in zip(positions, tps, strict=True)):
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"could not read {name} to its end offsets within {timeout}s"
                    )
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for r in records:
                        try:
                            value: Any = orjson.loads(r.value) if r.value is not None else None
                        except orjson.JSONDecodeError:
                            value = r.value
                        out.append(
                            Record(
                                r.topic,
                                r.partition,
                                r.offset,
                                r.key.decode() if r.key else None,
                                {k: v.decode() for k, v in r.headers},
                                value,
                                r.timestamp,
                            )
                        )
            return out
        finally:
            await consumer.stop()

    async def wait_for(
        self,
        topic: str,
        predicate: Callable[[list[Record]], bool],
        *,
        timeout: float = 20.0,
        what: str = "records",
    ) -> list[Record]:
        return await poll_until(
            lambda: self.read(topic), predicate, timeout=timeout, interval=0.1, what=what
        )

    async def for_case(
        self, topic: str, case_id: str, count: int, *, timeout: float = 20.0
    ) -> list[Record]:
        records = await self.wait_for(
            topic,
            lambda rs: len([r for r in rs if r.subject == case_id]) >= count,
            timeout=timeout,
            what=f"{count} records of case {case_id} on {topic}",
        )
        return [r for r in records if r.subject == case_id]
