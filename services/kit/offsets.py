"""Kafka offsets of applied batches, committed off the consuming path.

The idempotent consumer (`services.kit.consumer`) commits a batch's offsets only after
the database transaction that applied it. Committing them inline, once per batch,
was a broker write (to `__consumer_offsets`) per record per group at ordinary rates,
awaited before the next poll. Here they are committed by a background task, at most
every `interval` seconds per group, as explicit offsets. A crash loses at most that
interval's commits: those records come again and are dropped by their ids.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from services.kit.backoff import pause
from services.kit.event_errors import describe_error
from services.kit.logging import get_logger

log = get_logger(__name__)


class OffsetCommits:
    """The offsets of applied batches, committed by a background task at most every
    `interval` seconds, never ahead of what was applied (explicit offsets, not the
    consumer's position, which may already be past a batch being applied). When the
    consumer stops, what is pending is committed at once (`flush`)."""

    def __init__(self, interval: float, stopping: asyncio.Event) -> None:
        self.interval = interval
        self._stopping = stopping
        self._pending: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._timer: asyncio.Task[None] | None = None

    def applied(
        self, consumer: AIOKafkaConsumer, records: Sequence[ConsumerRecord[Any, Any]]
    ) -> None:
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            self._pending[tp] = max(self._pending.get(tp, 0), record.offset + 1)
        self._consumer = consumer
        if self._timer is None or self._timer.done():
            self._timer = asyncio.create_task(self._commit_soon())

    async def _commit_soon(self) -> None:
        await pause(self.interval, self._stopping)
        await self.flush()

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        if not pending or self._consumer is None:
            return
        try:
            await self._consumer.commit(pending)
        except (KafkaError, RuntimeError) as exc:
            # Partitions moved to another member, or the consumer is closing: the
            # records come again and are dropped by their ids.
            log.info("offsets not committed; redelivery is deduplicated", error=describe_error(exc))
