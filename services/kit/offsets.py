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
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from services.kit.backoff import Backoff, pause
from services.kit.event_errors import describe_error
from services.kit.logging import get_logger

log = get_logger(__name__)


class OffsetCommits:
    """The offsets of applied batches, committed by a background task at most every
    `interval` seconds, never ahead of what was applied (explicit offsets, not the
    consumer's position, which may already be past a batch being applied).

    The task runs until nothing is pending: offsets applied while a commit was on its
    way go in the next one, not whenever another batch happens to arrive (after the
    last batch of a burst there is none, and the group's lag would stay). A commit
    the broker could not take (coordinator away, broker restarting) is retried with
    backoff; one refused because the partitions moved to another member is dropped
    (the records come again and are dropped by their ids). When the consumer stops,
    what is pending is committed once (`flush`)."""

    def __init__(self, interval: float, stopping: asyncio.Event) -> None:
        self.interval = interval
        self._stopping = stopping
        self._pending: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._backoff = Backoff(max(interval, 0.05), 5.0)

    def applied(
        self, consumer: AIOKafkaConsumer, records: Sequence[ConsumerRecord[Any, Any]]
    ) -> None:
        self._merge({TopicPartition(r.topic, r.partition): r.offset + 1 for r in records}, consumer)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._commit_while_pending())

    def _merge(self, offsets: dict[TopicPartition, int], consumer: AIOKafkaConsumer) -> None:
        for tp, offset in offsets.items():
            self._pending[tp] = max(self._pending.get(tp, 0), offset)
        self._consumer = consumer

    async def _commit_while_pending(self) -> None:
        delay = self.interval
        while self._pending and not self._stopping.is_set():
            await pause(delay, self._stopping)
            if self._stopping.is_set():
                return  # the runtime flushes once, before the consumer closes
            delay = self.interval if await self.flush() else self._backoff.next_delay()

    async def flush(self) -> bool:
        """Commit what is pending; False when it must be tried again."""
        pending, self._pending = self._pending, {}
        consumer = self._consumer
        if not pending or consumer is None:
            return True
        try:
            await consumer.commit(pending)
        except (CommitFailedError, IllegalStateError) as exc:
            log.info("offsets not committed: partitions reassigned", error=describe_error(exc))
        except Exception as exc:  # the broker away, the coordinator moving, the client closed
            if self._stopping.is_set() or not isinstance(exc, KafkaError):
                log.info("offsets not committed", error=describe_error(exc))
                return True
            self._merge(pending, consumer)  # with anything applied meanwhile
            log.info("offsets not committed yet; retrying", error=describe_error(exc))
            return False
        self._backoff.reset()
        return True
