"""Transactional outbox and its relay.

`enqueue` writes an event in the caller's transaction, beside the state change it
describes, and NOTIFYs the relay (delivered only if that transaction commits).

`OutboxRelay` publishes pending rows in `seq` order with the idempotent producer and
deletes a row only after the broker acknowledged it. One replica at a time holds a
session advisory lock and relays; the others wait as hot standbys. NOTIFY is only
a wake-up: a slow fallback poll catches anything missed. When Kafka is down the
rows wait and the relay backs off; nothing is lost, and within a case nothing is
reordered (see `_publish_batch`).

Per-case order relies on writers serialising per case (lock the case row before
enqueueing), because a BIGSERIAL does not follow commit order across transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from contracts.envelope import CloudEvent
from contracts.topics import namespaced
from services.kit.backoff import Backoff, pause
from services.kit.db import Conn
from services.kit.kafka import start_producer
from services.kit.logging import get_logger
from services.kit.metrics import KitMetrics
from services.kit.supervision import loop_health
from services.kit.transient import is_transient

NOTIFY_CHANNEL = "enlace_outbox"
log = get_logger(__name__)

# One round trip: the rows and the wake-up (NOTIFY is delivered only on commit, and
# PostgreSQL folds identical notifications of one transaction into one).
_INSERT = f"""
WITH inserted AS (
    INSERT INTO outbox (topic, event_id, event_type, source, subject, event_time, dataschema,
                        traceparent, data)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::timestamptz[], $7::text[], $8::text[], $9::bytea[])
    RETURNING 1
)
SELECT pg_notify('{NOTIFY_CHANNEL}', '') FROM (SELECT count(*) FROM inserted) AS done
"""


@dataclass
class _Deferred:
    """Events enqueued during a consumer batch, written in one statement at its end."""

    conn: Conn
    rows: list[tuple[str, CloudEvent]] = field(default_factory=list)


_deferred: ContextVar[_Deferred | None] = ContextVar("outbox_deferred", default=None)


async def enqueue(conn: Conn, topic: str, *events: CloudEvent) -> None:
    """Write events to the outbox inside the caller's open transaction.

    Inside `deferred_writes(conn)` (the consumer's batch transaction) the rows are
    collected and written together just before the commit, in the same order."""
    if not events:
        return
    if not conn.is_in_transaction():
        raise RuntimeError("outbox.enqueue must run inside the transaction of the state change")
    deferred = _deferred.get()
    if deferred is not None and deferred.conn is conn:
        deferred.rows.extend((topic, event) for event in events)
        return
    await _insert(conn, [(topic, event) for event in events])


@contextlib.asynccontextmanager
async def deferred_writes(conn: Conn) -> AsyncIterator[None]:
    """Collect `enqueue` calls made on `conn` and write them in one round trip on exit
    (only if the block succeeded; the caller's transaction then commits them). Code
    inside must not enqueue within a savepoint it may roll back: the rows would
    outlive it."""
    deferred = _Deferred(conn)
    token = _deferred.set(deferred)
    try:
        yield
    finally:
        _deferred.reset(token)
    await _insert(conn, deferred.rows)


async def _insert(conn: Conn, rows: list[tuple[str, CloudEvent]]) -> None:
    if not rows:
        return
    await conn.execute(
        _INSERT,
        [topic for topic, _ in rows],
        [e.id for _, e in rows],
        [e.type for _, e in rows],
        [e.source for _, e in rows],
        [e.subject for _, e in rows],
        [e.time for _, e in rows],
        [e.dataschema for _, e in rows],
        [e.traceparent for _, e in rows],
        [e.value() for _, e in rows],
    )


def _row_to_event(row: asyncpg.Record) -> CloudEvent:
    return CloudEvent(
        type=row["event_type"],
        source=row["source"],
        subject=row["subject"],
        data=orjson.loads(row["data"]),
        id=row["event_id"],
        time=row["event_time"],
        dataschema=row["dataschema"],
        traceparent=row["traceparent"],
    )


class OutboxRelay:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        dsn: str,
        producer_factory: Callable[[], AIOKafkaProducer],
        namespace: str,
        lock_key: int,
        metrics: KitMetrics,
        batch_size: int = 1000,
        fallback_poll_seconds: float = 2.0,
        retry_max_seconds: float = 5.0,
    ) -> None:
        self._pool = pool
        self._dsn = dsn
        self._producer_factory = producer_factory
        self._producer: AIOKafkaProducer | None = None
        self._namespace = namespace
        self._lock_key = lock_key
        self._metrics = metrics
        self._batch_size = batch_size
        self._fallback_poll = fallback_poll_seconds
        self._retry_max = retry_max_seconds
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.is_leader = False
        self.last_error: str | None = None

    # --- lifecycle ---------------------------------------------------------------

    async def run(self) -> None:
        """Run until `stop()`: win the lock, then relay; lose it, then try again. A
        transient error (database restarting, connection lost: `kit.transient`) is
        retried here; anything else ends `run()`, and the supervisor restarts it."""
        backoff = Backoff(0.5, self._retry_max)
        try:
            while not self._stopping.is_set():
                try:
                    await self._lead()
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    self.last_error = f"database: {exc.__class__.__name__}"
                    loop_health().failing(self.last_error)
                    log.warning("outbox relay lost its database connection", error=self.last_error)
                finally:
                    self._set_leader(False)
                await self._sleep(backoff.next_delay())
        finally:
            await self._close_producer()

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def _lead(self) -> None:
        conn: Conn = await asyncpg.connect(self._dsn)
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_key):
                loop_health().ok()  # a hot standby: another replica relays
                if await self._sleep(self._fallback_poll):
                    return
            self._set_leader(True)
            loop_health().ok()
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
            log.info("outbox relay is leader")
            while not self._stopping.is_set():
                if conn.is_closed():
                    raise asyncpg.InterfaceError("relay lock connection closed")
                published = await self.publish_pending()
                if published == 0:
                    await self._wait_for_work()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=2)

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    async def _wait_for_work(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=self._fallback_poll)
        self._wake.clear()

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; True when stopping."""
        await pause(seconds, self._stopping)
        return self._stopping.is_set()

    def _set_leader(self, value: bool) -> None:
        self.is_leader = value
        self._metrics.relay_is_leader.set(1 if value else 0)

    # --- publishing ----------------------------------------------------------------

    async def publish_pending(self) -> int:
        """Publish everything pending, batch by batch; returns how many went out.

        On a broker failure it backs off and retries the same rows until they go or
        the relay stops; so it only returns 0 when nothing was pending.
        """
        total = 0
        backoff = Backoff(0.2, self._retry_max)
        while not self._stopping.is_set():
            rows = await self._pool.fetch(
                "SELECT * FROM outbox ORDER BY seq LIMIT $1", self._batch_size
            )
            if not rows:
                self._metrics.outbox_backlog.set(0)
                self._metrics.outbox_oldest_age.set(0)
                return total
            try:
                producer = await self._ensure_producer()
                published = await self._publish_batch(producer, rows)
            except Exception as exc:  # broker down, timeouts, fenced producer...
                self._metrics.publish_failures.inc()
                self.last_error = f"kafka: {exc.__class__.__name__}"
                delay = backoff.next_delay()
                log.warning(
                    "outbox publish failed; will retry",
                    error=self.last_error,
                    retry_in=round(delay, 2),
                    pending=len(rows),
                )
                loop_health().failing(self.last_error)
                await self._close_producer()  # a fresh producer id after any failure
                if await self._sleep(delay):
                    return total
                continue
            if self.last_error is not None:
                self.last_error = None
                loop_health().ok()
            backoff.reset()
            total += published
            if published < len(rows):
                continue  # partial: the failed rows are retried in the next round
        return total

    async def _publish_batch(
        self, producer: AIOKafkaProducer, rows: Sequence[asyncpg.Record]
    ) -> int:
        started = time.perf_counter()
        futures = []
        for row in rows:
            event = _row_to_event(row)
            futures.append(
                await producer.send(
                    namespaced(self._namespace, row["topic"]),
                    value=event.value(),
                    key=event.key,
                    headers=event.headers(),
                )
            )
        results = await asyncio.gather(*futures, return_exceptions=True)
        # A row counts as published only if it and every earlier row of the same case
        # were acknowledged; a later row of a case whose earlier row failed is sent
        # again after it (a duplicate consumers drop by event id), never before it.
        failed_keys: set[str] = set()
        done: list[int] = []
        first_error: BaseException | None = None
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, BaseException):
                failed_keys.add(row["subject"])
                first_error = first_error or result
            elif row["subject"] not in failed_keys:
                done.append(row["seq"])
        if done:
            await self._pool.execute("DELETE FROM outbox WHERE seq = ANY($1::bigint[])", done)
            done_set = set(done)
            for row in rows:
                if row["seq"] in done_set:
                    self._metrics.events_published.labels(row["topic"], row["event_type"]).inc()
        self._metrics.relay_batch_seconds.observe(time.perf_counter() - started)
        if first_error is not None and not done:
            raise first_error
        return len(done)

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            self._producer = await start_producer(self._producer_factory())
        return self._producer

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), timeout=5)

    async def backlog(self) -> int:
        """Rows not yet published, and the age of the oldest (0 when none): both set
        on the gauges /metrics shows."""
        row = await self._pool.fetchrow(
            """SELECT count(*) AS backlog,
                      COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS age
               FROM outbox"""
        )
        count: int = row["backlog"] if row is not None else 0
        self._metrics.outbox_backlog.set(count)
        self._metrics.outbox_oldest_age.set(max(0.0, row["age"]) if row is not None else 0.0)
        return count
