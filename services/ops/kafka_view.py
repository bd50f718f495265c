"""What operations reads from Kafka as its own principal (svc-ops): committed offsets
of every consumer group against the end offsets (lag), and every .dlq topic, copied
into the ops database so that dead letters can be filtered, shown and given a status.

Clients are made lazily and dropped after any error, so a broker that went away is
reconnected on the next call."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts.topics import all_topic_names
from services.kit.event_errors import describe_error
from services.kit.kafka import KafkaClient, admin_client
from services.kit.logging import get_logger
from services.kit.supervision import loop_health
from services.kit.transient import is_transient
from services.ops import store
from services.ops.domain import DLQ_TOPICS, PartitionLag, contract_topic, describe, lag, physical

log = get_logger(__name__)


class KafkaView:
    def __init__(
        self,
        client: KafkaClient,
        *,
        namespace: str,
        group_filter: str = "",
        timeout: float = 10.0,
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._group_filter = group_filter
        self._timeout = timeout
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        admin, consumer, self._admin, self._consumer = self._admin, self._consumer, None, None
        if admin is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(admin.close(), timeout=5)
        if consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), timeout=5)

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None:
            admin = admin_client(self._client, "enlace-ops-lag")
            await admin.start()
            self._admin = admin
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                **self._client.aiokafka(), client_id="enlace-ops-offsets", enable_auto_commit=False
            )
            await consumer.start()
            self._consumer = consumer
        return self._admin, self._consumer

    async def _bounded(self, work: Callable[[], Awaitable[Any]]) -> Any:
        async with self._lock:
            try:
                return await asyncio.wait_for(work(), timeout=self._timeout)
            except BaseException:
                await self.close()
                raise

    async def end_offsets(self) -> dict[tuple[str, int], int]:
        """(contract topic, partition) -> end offset, for every topic of the namespace."""
        result: dict[tuple[str, int], int] = await self._bounded(self._end_offsets)
        return result

    async def _end_offsets(self) -> dict[tuple[str, int], int]:
        _, consumer = await self._clients()
        names = [physical(self._namespace, t) for t in all_topic_names()]
        partitions: list[TopicPartition] = []
        for name in names:
            found = consumer.partitions_for_topic(name)
            if not found:
                await consumer._client.force_metadata_update()
                found = consumer.partitions_for_topic(name) or set()
            partitions += [TopicPartition(name, p) for p in sorted(found)]
        ends = await consumer.end_offsets(partitions) if partitions else {}
        out: dict[tuple[str, int], int] = {}
        for tp, end in ends.items():
            topic = contract_topic(self._namespace, tp.topic)
            if topic is not None:
                out[(topic, tp.partition)] = end
        return out

    async def lag(self) -> list[PartitionLag]:
        """Every consumer group (matching the filter) with offsets committed on a topic
        of the namespace: its committed offset and the end offset, per partition."""
        rows: list[PartitionLag] = await self._bounded(self._lag)
        return rows

    async def _lag(self) -> list[PartitionLag]:
        admin, _ = await self._clients()
        ends = await self._end_offsets()
        groups = [g[0] for g in await admin.list_consumer_groups() if self._group_filter in g[0]]
        limit = asyncio.Semaphore(8)

        async def offsets(group: str) -> tuple[str, dict[TopicPartition, Any]]:
            async with limit:
                return group, await admin.list_consumer_group_offsets(group)

        rows: list[PartitionLag] = []
        for group, committed in await asyncio.gather(*(offsets(g) for g in sorted(groups))):
            for tp, meta in committed.items():
                topic = contract_topic(self._namespace, tp.topic)
                if topic is None or meta is None or meta.offset < 0:
                    continue
                end = ends.get((topic, tp.partition), meta.offset)
                rows.append(
                    PartitionLag(
                        group=group,
                        topic=topic,
                        partition=tp.partition,
                        committed=meta.offset,
                        end=end,
                        lag=lag(meta.offset, end),
                    )
                )
        return sorted(rows, key=lambda r: (r.group, r.topic, r.partition))


class DeadLetterIndex:
    """Copies every record of every .dlq topic into the ops database (once each, by
    position) under consumer group `<group>.dead-letters`; the offset is committed
    after the rows are."""

    def __init__(
        self,
        client: KafkaClient,
        pool: Callable[[], asyncpg.Pool],
        *,
        namespace: str,
        group_id: str,
    ) -> None:
        self._client = client
        self._pool = pool
        self._namespace = namespace
        self._group_id = group_id

    async def run(self, stopping: asyncio.Event, poll_seconds: float = 0.5) -> None:
        topics = [physical(self._namespace, t) for t in DLQ_TOPICS]
        consumer = AIOKafkaConsumer(
            *topics,
            **self._client.aiokafka(),
            client_id="enlace-ops-dead-letters",
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        try:
            await consumer.start()
            loop_health().ok()
            while not stopping.is_set():
                batches = await consumer.getmany(timeout_ms=int(poll_seconds * 1000))
                rows = [
                    row
                    for records in batches.values()
                    for r in records
                    if (row := self._row(r)) is not None
                ]
                if rows:
                    await self._save(rows, stopping)
                    await consumer.commit()
                    log.info("dead letters indexed", count=len(rows))
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), timeout=5)

    def _row(self, record: Any) -> dict[str, Any] | None:
        topic = contract_topic(self._namespace, record.topic)
        if topic is None or topic not in DLQ_TOPICS:
            return None
        headers = [(k, bytes(v)) for k, v in record.headers or ()]
        return {
            "topic": topic,
            "partition": record.partition,
            "offset": record.offset,
            "record_key": record.key,
            "record_value": record.value,
            "header_keys": [k for k, _ in headers],
            "header_values": [v for _, v in headers],
            "received_at": datetime.fromtimestamp(record.timestamp / 1000, UTC),
            **describe(topic, record.key, record.value, headers),
        }

    async def _save(self, rows: list[dict[str, Any]], stopping: asyncio.Event) -> None:
        while True:
            try:
                async with self._pool().acquire() as conn, conn.transaction():
                    await store.insert_dead_letters(conn, rows)
                return
            except Exception as exc:
                if not is_transient(exc) or stopping.is_set():
                    raise
                loop_health().failing(f"database: {describe_error(exc)}")
                await asyncio.sleep(1.0)
