"""Dead letters: a record a consumer refuses goes to its topic's `.dlq` twin with
why (`x-error-*`), where it came from (`x-original-*`) and who refused it
(`x-consumer-service`, `x-consumer-subscription`, `x-consumer-group`).

Once per consumer group: the refusal is remembered in `processed_events` (under the
event id, or under the record's position when it has no trustworthy id: undecodable,
forged), so a redelivered record (after a rebalance, a crash, a rewound batch) is
not dead-lettered again. The broker or the database being away never moves the
offset on without the dead letter: each step is retried until it is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from aiokafka import AIOKafkaProducer, ConsumerRecord

from contracts.envelope import CloudEvent
from contracts.topics import dead_letter_topic
from services.kit.backoff import Backoff, Stopped, until_done
from services.kit.event_errors import describe_error
from services.kit.logging import get_logger
from services.kit.metrics import KitMetrics
from services.kit.supervision import loop_health

log = get_logger(__name__)
T = TypeVar("T")

# Set by operations' redrive (services/ops/) on the copy it re-produces to the
# original topic: who redrove it and when (see services.kit.consumer).
REDRIVEN_BY = "x-redriven-by"
REDRIVEN_AT = "x-redriven-at"
# The headers a dead letter adds to the original record (a redrive removes them).
DEAD_LETTER_HEADER_PREFIXES = ("x-error-", "x-original-", "x-consumer", "x-redriven-")


class StoppingWithUnappliedRecord(Exception):
    """The service is stopping while a record still waits to be applied (or
    dead-lettered): its offset is not committed, and it is redelivered after restart."""


def record_position(record: ConsumerRecord[Any, Any]) -> str:
    return f"record:{record.topic}:{record.partition}:{record.offset}"


class DeadLetters:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        producer: Callable[[], Awaitable[AIOKafkaProducer]],
        service: str,
        subscription: str,
        group_id: str,
        topic: str,
        metrics: KitMetrics,
        stopping: asyncio.Event,
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._service = service
        self._subscription = subscription
        self._group_id = group_id
        self._topic = topic  # the contract topic, for metrics
        self._metrics = metrics
        self._stopping = stopping

    async def write(
        self,
        record: ConsumerRecord[Any, Any],
        event: CloudEvent | None,
        exc: BaseException,
        *,
        attempts: int,
        event_type: str | None = None,
        redriven: bool = False,
    ) -> None:
        # A redriven copy that fails again is remembered by its own position: the
        # event's row stays dead_lettered, so it may be redriven again.
        key = event.id if event is not None and not redriven else record_position(record)
        event_type = (event.type if event is not None else event_type) or "undecodable"
        if await self._persist(lambda: self._already_written(key)):
            self._metrics.events_consumed.labels(self._topic, event_type, "duplicate").inc()
            return
        error = describe_error(exc)
        dlq = dead_letter_topic(record.topic)
        error_type = getattr(exc, "error_type", "") or exc.__class__.__name__
        headers = [
            *(record.headers or ()),
            ("x-error-type", error_type.encode()),
            ("x-error-message", error.encode()),
            ("x-error-attempts", str(attempts).encode()),
            ("x-original-topic", record.topic.encode()),
            ("x-original-partition", str(record.partition).encode()),
            ("x-original-offset", str(record.offset).encode()),
            ("x-consumer", f"{self._service}/{self._subscription}".encode()),
            ("x-consumer-service", self._service.encode()),
            ("x-consumer-subscription", self._subscription.encode()),
            ("x-consumer-group", self._group_id.encode()),
        ]

        async def publish() -> None:
            producer = await self._producer()
            await (await producer.send(dlq, value=record.value, key=record.key, headers=headers))

        async def remember() -> None:
            await self._pool.execute(
                """INSERT INTO processed_events (consumer, event_id, event_type, outcome, error)
                   VALUES ($1, $2, $3, 'dead_lettered', $4)
                   ON CONFLICT (consumer, event_id) DO UPDATE
                   SET outcome = 'dead_lettered', error = EXCLUDED.error""",
                self._subscription,
                key,
                event_type,
                error,
            )

        await self._persist(publish)
        await self._persist(remember)
        self._metrics.dead_lettered.labels(self._topic).inc()
        self._metrics.events_consumed.labels(self._topic, event_type, "dead_lettered").inc()
        log.error(
            "record dead-lettered",
            dlq=dlq,
            error=error,
            error_type=error_type,
            attempts=attempts,
            event_id=event.id if event else None,
            partition=record.partition,
            offset=record.offset,
        )

    async def _already_written(self, key: str) -> bool:
        return bool(
            await self._pool.fetchval(
                """SELECT 1 FROM processed_events
                   WHERE consumer = $1 AND event_id = $2 AND outcome = 'dead_lettered'""",
                self._subscription,
                key,
            )
        )

    async def _persist(self, step: Callable[[], Awaitable[T]]) -> T:
        def on_error(exc: Exception) -> None:
            log.warning("dead-lettering step failed; retrying", error=describe_error(exc))
            loop_health().failing(f"{self._group_id}: dead-lettering: {describe_error(exc)}")

        try:
            return await until_done(
                step, backoff=Backoff(0.2, 5.0), stopping=self._stopping, on_error=on_error
            )
        except Stopped as exc:
            raise StoppingWithUnappliedRecord("dead letter not written") from exc
