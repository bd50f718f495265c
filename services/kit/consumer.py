"""Idempotent consumer on FastStream.

Records arrive in batches (one poll). The fast path applies the whole batch in one
database transaction: each event id is inserted into `processed_events` beside the
handler's effects, so a redelivered event changes nothing. Only after that commit is
the Kafka offset committed (manual ack): a crash in between means redelivery, never
loss. `services.kit.subscriber` wires a consumer onto FastStream's broker.

When the batch transaction fails, each event is retried alone:
- transient errors (`services.kit.transient`: database unreachable or restarting,
  ...) are retried with backoff for as long as it takes, without committing the
  offset, and never count toward dead-lettering;
- a record that cannot be decoded or validated goes to the dead-letter topic at once;
- any other error is retried alone a bounded number of times (`max_attempts`, after
  the failed batch attempt) with exponential backoff and jitter, then dead-lettered
  with the error in `x-error-*` headers.
A bad record therefore never blocks its partition and is never silently dropped.

A dead letter redriven by operations (services/ops/) comes back unchanged, same
`ce_id`, with `x-redriven-at`: that copy alone may apply an event this consumer
dead-lettered (its `processed_events` row turns from `dead_lettered` to `applied`,
in the handler's transaction), so it is applied exactly once; a consumer that
applied the event already drops it as a duplicate, as does this one at a second
redrive. A redriven copy that fails again is dead-lettered again (remembered by its
own position, so the event may be redriven once more).

Dead letters name who refused them and are written once per consumer group
(`services.kit.dead_letter`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer, ConsumerRecord

from contracts.envelope import CloudEvent, EnvelopeError
from contracts.registry import EVENT_MODELS, producer_source
from contracts.topics import namespaced
from services.kit.backoff import Backoff, pause
from services.kit.db import Conn
from services.kit.dead_letter import REDRIVEN_AT, DeadLetters, StoppingWithUnappliedRecord
from services.kit.event_errors import (
    POISON,
    TransientError,
    UntrustedSourceError,
    describe_error,
)
from services.kit.event_errors import PoisonEventError as PoisonEventError  # re-exported
from services.kit.logging import get_logger
from services.kit.metrics import KitMetrics
from services.kit.outbox import deferred_writes
from services.kit.supervision import loop_health
from services.kit.transient import is_transient

log = get_logger(__name__)

EventHandler = Callable[[Conn, CloudEvent], Awaitable[None]]
T = TypeVar("T")


async def wait_until_ready(ready: asyncio.Event, timeout: float, what: str) -> None:
    """For a handler that needs state a background worker loads (a directory): wait
    briefly for it, else raise TransientError so the consumer retries the record
    without committing its offset."""
    try:
        await asyncio.wait_for(ready.wait(), timeout=timeout)
    except TimeoutError:
        raise TransientError(f"{what} not loaded yet") from None


@dataclass(frozen=True)
class Subscription:
    """Handlers for some event types of one contract topic."""

    topic: str
    handlers: dict[str, EventHandler]
    name: str = ""  # consumer name in processed_events; defaults to the topic

    def __post_init__(self) -> None:
        for event_type in self.handlers:
            model = EVENT_MODELS.get(event_type)
            if model is not None and model.topic != self.topic:
                raise ValueError(
                    f"{event_type} is published on {model.topic.value}, not on {self.topic}"
                )

    @property
    def consumer_name(self) -> str:
        return self.name or self.topic


class EventConsumer:
    """Applies the records of one subscription; see the module docstring."""

    def __init__(
        self,
        *,
        subscription: Subscription,
        pool: asyncpg.Pool,
        producer: Callable[[], Awaitable[AIOKafkaProducer]],
        service: str,
        group_id: str,
        namespace: str,
        metrics: KitMetrics,
        max_attempts: int = 5,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
    ) -> None:
        self.subscription = subscription
        self._pool = pool
        self.service = service
        # One group per subscription: subscriptions of one service on several topics
        # would otherwise share a group and rebalance each other at every start/stop.
        self.group_id = f"{group_id}.{subscription.consumer_name}"
        self._namespace = namespace
        self._metrics = metrics
        self._max_attempts = max_attempts
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self.stopping = asyncio.Event()
        self.dead_letters = DeadLetters(
            pool=pool,
            producer=producer,
            service=service,
            subscription=subscription.consumer_name,
            group_id=self.group_id,
            topic=subscription.topic,
            metrics=metrics,
            stopping=self.stopping,
        )

    @property
    def physical_topic(self) -> str:
        return namespaced(self._namespace, self.subscription.topic)

    async def handle_batch(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        decoded: list[tuple[ConsumerRecord[Any, Any], CloudEvent]] = []
        for record in records:
            event_type = _header(record, "ce_type")
            if event_type is not None and event_type not in self.subscription.handlers:
                # Routed on the header alone: a type we do not handle is not even parsed.
                self._metrics.events_consumed.labels(
                    self.subscription.topic, event_type, "ignored"
                ).inc()
                continue
            try:
                event = CloudEvent.from_record(record.key, record.value, record.headers)
            except EnvelopeError as exc:
                await self.dead_letters.write(record, None, exc, attempts=1)
                continue
            if event.type in EVENT_MODELS and event.source != producer_source(event.type):
                await self._refuse_untrusted(record, event)
                continue
            decoded.append((record, event))
        if not decoded:
            return
        events = [event for _, event in decoded]
        redriven = frozenset(e.id for r, e in decoded if _header(r, REDRIVEN_AT) is not None)
        try:
            outcomes = await self._apply_all(events, redriven)
        except Exception as exc:  # fall back to one at a time to isolate the bad record
            log.info(
                "batch failed; applying one by one", error=describe_error(exc), batch=len(events)
            )
            for record, event in decoded:
                await self._apply_one_with_retries(record, event)
            return
        loop_health().ok()
        for event, outcome in zip(events, outcomes, strict=True):
            self._metrics.events_consumed.labels(self.subscription.topic, event.type, outcome).inc()

    async def _apply_all(
        self, events: list[CloudEvent], redriven: frozenset[str] = frozenset()
    ) -> list[str]:
        """Events in one transaction, their ids recorded in one statement; the retry
        path calls it with a single event. `redriven`: ids of redriven copies, which
        may apply an event this consumer dead-lettered."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """INSERT INTO processed_events (consumer, event_id, event_type)
                   SELECT $1, id, type FROM unnest($2::text[], $3::text[]) AS e(id, type)
                   ON CONFLICT DO NOTHING RETURNING event_id""",
                self.subscription.consumer_name,
                [e.id for e in events],
                [e.type for e in events],
            )
            fresh = {row["event_id"] for row in rows}
            retried = [i for i in redriven if i not in fresh]
            if retried:
                rows = await conn.fetch(
                    """UPDATE processed_events
                       SET outcome = 'applied', error = NULL, processed_at = now()
                       WHERE consumer = $1 AND event_id = ANY($2::text[])
                         AND outcome = 'dead_lettered'
                       RETURNING event_id""",
                    self.subscription.consumer_name,
                    retried,
                )
                fresh |= {row["event_id"] for row in rows}
            outcomes: list[str] = []
            async with deferred_writes(conn):  # the batch's events: one outbox statement
                for event in events:
                    if event.id not in fresh:
                        outcomes.append("duplicate")
                        continue
                    fresh.discard(event.id)  # a second copy in the same batch is a duplicate
                    await self._run_handler(conn, event)
                    outcomes.append("applied")
            return outcomes

    async def _run_handler(self, conn: Conn, event: CloudEvent) -> None:
        with structlog.contextvars.bound_contextvars(
            event_id=event.id,
            case_id=event.subject,
            trace_id=event.trace_id,
            event_type=event.type,
        ):
            await self.subscription.handlers[event.type](conn, event)

    async def _apply_one_with_retries(
        self, record: ConsumerRecord[Any, Any], event: CloudEvent
    ) -> None:
        attempt = 0
        backoff = Backoff(self._backoff_initial, self._backoff_max)
        redriven = _header(record, REDRIVEN_AT) is not None
        while True:
            attempt += 1
            try:
                (outcome,) = await self._apply_all(
                    [event], frozenset({event.id}) if redriven else frozenset()
                )
                self._metrics.events_consumed.labels(
                    self.subscription.topic, event.type, outcome
                ).inc()
                loop_health().ok()
                return
            except POISON as exc:
                self._metrics.handler_errors.labels(
                    self.subscription.topic, event.type, "poison"
                ).inc()
                await self.dead_letters.write(
                    record, event, exc, attempts=attempt, redriven=redriven
                )
                return
            except Exception as exc:
                if is_transient(exc):
                    # Infrastructure, not the record: wait it out; the offset stays put.
                    attempt -= 1
                    self._metrics.handler_errors.labels(
                        self.subscription.topic, event.type, "transient"
                    ).inc()
                    loop_health().failing(f"{self.group_id}: {describe_error(exc)}")
                    log.warning(
                        "transient error; retrying", error=describe_error(exc), event_id=event.id
                    )
                else:
                    self._metrics.handler_errors.labels(
                        self.subscription.topic, event.type, "error"
                    ).inc()
                    log.warning(
                        "handler failed",
                        error=describe_error(exc),
                        attempt=attempt,
                        event_id=event.id,
                        case_id=event.subject,
                    )
                    if attempt >= self._max_attempts:
                        await self.dead_letters.write(
                            record, event, exc, attempts=attempt, redriven=redriven
                        )
                        return
            if self.stopping.is_set():
                raise StoppingWithUnappliedRecord(event.id)
            await pause(backoff.next_delay(), self.stopping)

    async def _refuse_untrusted(self, record: ConsumerRecord[Any, Any], event: CloudEvent) -> None:
        """Provenance: each event type has one legitimate producer. The event id is not
        remembered as processed, so a forged copy cannot shadow the genuine event."""
        self._metrics.untrusted_events.labels(
            self.subscription.topic, event.type, event.source[:100]
        ).inc()
        error = UntrustedSourceError(
            f"ce_source {event.source[:100]!r} is not {producer_source(event.type)!r}, "
            f"the producer of {event.type}"
        )
        await self.dead_letters.write(record, None, error, attempts=1, event_type=event.type)


async def prune_processed_events(pool: asyncpg.Pool, older_than: timedelta) -> int:
    """Forget event ids older than the window in which Kafka can still redeliver them
    (the retention must exceed the topics' retention, 7 days by default)."""
    result: str = await pool.execute(
        "DELETE FROM processed_events WHERE processed_at < now() - $1::interval", older_than
    )
    return int(result.rsplit(" ", 1)[-1])


def _header(record: ConsumerRecord[Any, Any], name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            try:
                return bytes(value).decode()
            except UnicodeDecodeError:
                return None
    return None
