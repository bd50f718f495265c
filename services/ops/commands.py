"""Operations' use cases: one implementation behind the JSON API, the command line
and the web console.

`Operations` holds what they need (the ops database, Kafka as svc-ops, the services'
URLs); every method returns a `services.ops.domain` view. Redrive and discard are
the only actions: each is audited (who, when, which records, why; append-only) in
the same transaction that changes the records' status."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from services.kit.clock import Clock, SystemClock
from services.kit.db import Conn
from services.kit.errors import Conflict, InvalidField, NotFound
from services.kit.event_errors import describe_error
from services.kit.logging import get_logger
from services.ops import store
from services.ops.domain import (
    DLQ_TOPICS,
    ActionResult,
    AuditEntry,
    DeadLetter,
    DeadLetterDetail,
    DeadLetterFilter,
    GroupLag,
    LagHistory,
    Pipeline,
    RecordRef,
    ReferralHealth,
    ServiceHealth,
    by_group,
    original_of,
    physical,
    redrive_headers,
    value_view,
)
from services.ops.kafka_view import KafkaView
from services.ops.metrics import OpsMetrics
from services.ops.probes import probe_all

log = get_logger(__name__)

MAX_RECORDS = 500  # per action


class Operations:
    def __init__(
        self,
        *,
        pool: Callable[[], asyncpg.Pool],
        kafka: KafkaView,
        producer: Callable[[], Awaitable[AIOKafkaProducer]],
        namespace: str,
        services: dict[str, str],
        http: httpx.AsyncClient,
        probe_timeout: float = 2.0,
        metrics: OpsMetrics | None = None,
        clock: Clock | None = None,
        lag_keep_hours: float = 24.0,
        unmet_needs_days: float = 30.0,
    ) -> None:
        self._pool = pool
        self.kafka = kafka
        self._producer = producer
        self._namespace = namespace
        self.services = services
        self._http = http
        self._probe_timeout = probe_timeout
        self.metrics = metrics
        self.clock = clock or SystemClock()
        self._lag_keep_hours = lag_keep_hours
        self._unmet_needs_days = unmet_needs_days

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool()

    # --- pipeline and lag -------------------------------------------------------------

    async def service_health(self) -> list[ServiceHealth]:
        return await probe_all(self._http, self.services, self._probe_timeout)

    async def pipeline(self) -> Pipeline:
        """Each service's readiness, loops and outbox; lag per group and topic now; open
        dead letters per .dlq topic."""
        services, lag, counts = await asyncio.gather(
            self.service_health(), self._lag_or_error(), store.open_counts(self.pool)
        )
        rows, error = lag
        return Pipeline(
            at=self.clock.now(),
            services=services,
            lag=rows,
            lag_error=error,
            dead_letters={t: counts.get(t, 0) for t in DLQ_TOPICS},
        )

    async def _lag_or_error(self) -> tuple[list[GroupLag], str | None]:
        try:
            return by_group(await self.kafka.lag()), None
        except Exception as exc:
            return [], f"kafka: {describe_error(exc)}"

    async def lag_now(self, group: str | None = None, topic: str | None = None) -> list[GroupLag]:
        """Lag per consumer group and topic (with each partition) now, read from Kafka."""
        rows = await self.kafka.lag()
        return by_group(
            [
                r
                for r in rows
                if (group is None or r.group == group) and (topic is None or r.topic == topic)
            ]
        )

    async def lag_history(
        self, group: str, topic: str, since: datetime | None = None
    ) -> LagHistory:
        """The sampled lag of one group on one topic (all partitions summed), by default
        over the last hour."""
        since = since or self.clock.now() - timedelta(hours=1)
        points = await store.lag_history(self.pool, group, topic, since)
        return LagHistory(group=group, topic=topic, since=since, points=points)

    async def sample(self) -> None:
        """One round of the sampler: lag into the history, and every ops metric."""
        at = self.clock.now()
        rows = await self.kafka.lag()
        await store.record_lag(self.pool, at, rows, self._lag_keep_hours)
        ends = await self.kafka.end_offsets()
        services = await self.service_health()
        counts = await store.open_counts(self.pool)
        overdue = await store.overdue_counts(self.pool)
        if self.metrics is not None:
            self.metrics.set_lag(rows)
            self.metrics.set_received(ends)
            self.metrics.set_services(services)
            self.metrics.set_dead_letters(counts)
            self.metrics.set_overdue(overdue)

    # --- dead letters -----------------------------------------------------------------

    async def list_dead_letters(self, filters: DeadLetterFilter | None = None) -> list[DeadLetter]:
        f = filters or DeadLetterFilter()
        if f.topic is not None and f.topic not in DLQ_TOPICS:
            raise InvalidField("topic", f"not one of {', '.join(DLQ_TOPICS)}")
        return await store.list_dead_letters(self.pool, f)

    async def show_dead_letter(self, ref: RecordRef) -> DeadLetterDetail:
        row = await store.get_dead_letter(self.pool, ref.checked("topic"))
        if row is None:
            raise NotFound(f"dead letter {ref}")
        return DeadLetterDetail(
            letter=store.letter_of(row),
            key=row["record_key"].decode("utf-8", "replace") if row["record_key"] else None,
            headers=[
                (k, v.decode("utf-8", "replace"))
                for k, v in zip(row["header_keys"], row["header_values"], strict=True)
            ],
            value=value_view(row["record_value"]),
        )

    async def redrive(
        self, refs: list[RecordRef], *, who: str, reason: str = "", force: bool = False
    ) -> ActionResult:
        """Re-produce each dead letter to its original topic: same key, value and
        CloudEvents headers (`ce_id` kept: a consumer that applied the event drops the
        copy), plus x-redriven-by/-at/-from. A record already redriven or discarded is
        refused (409) unless `force`."""
        refs = _checked(refs, who)
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await _locked(conn, refs, force, "redrive")
            at = self.clock.now()
            producer = await self._producer()
            sent = [
                await producer.send(
                    physical(self._namespace, original_of(ref.topic)),
                    key=row["record_key"],
                    value=row["record_value"],
                    headers=redrive_headers(
                        list(zip(row["header_keys"], row["header_values"], strict=True)),
                        who=who,
                        at=at,
                        ref=ref,
                    ),
                )
                for ref, row in zip(refs, rows, strict=True)
            ]
            await asyncio.gather(*sent)  # every copy acknowledged before the status
            result = await _record(conn, "redrive", refs, rows, who, reason, force)
        log.info("dead letters redriven", who=who, count=len(refs), audit_id=result.audit_id)
        return result

    async def discard(
        self, refs: list[RecordRef], *, who: str, reason: str, force: bool = False
    ) -> ActionResult:
        """Mark dead letters as dealt with, never to be redriven (unless forced): a
        reason is required."""
        if not reason.strip():
            raise InvalidField("reason", "a discard needs a reason")
        refs = _checked(refs, who)
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await _locked(conn, refs, force, "discard")
            result = await _record(conn, "discard", refs, rows, who, reason, force)
        log.info("dead letters discarded", who=who, count=len(refs), audit_id=result.audit_id)
        return result

    async def audit(self, limit: int = 100) -> list[AuditEntry]:
        return await store.list_audit(self.pool, limit)

    # --- referral health --------------------------------------------------------------

    async def referral_health(self) -> ReferralHealth:
        now = self.clock.now()
        unmet_since = now - timedelta(days=self._unmet_needs_days)
        failed_since = now - timedelta(hours=24)
        overdue, unmet, failed = await asyncio.gather(
            store.overdue_counts(self.pool),
            store.unmet_need_counts(self.pool, unmet_since),
            store.failed_notification_counts(self.pool, failed_since),
        )
        return ReferralHealth(
            at=now,
            overdue=overdue,
            unmet_needs=unmet,
            unmet_needs_since=unmet_since,
            failed_notifications=failed,
            failed_notifications_since=failed_since,
        )


def _checked(refs: list[RecordRef], who: str) -> list[RecordRef]:
    if not who.strip():
        raise InvalidField("who", "name who acts (it is audited)")
    unique = sorted({r.checked(): None for r in refs}, key=str)
    if not unique:
        raise InvalidField("records", "name at least one dead letter")
    if len(unique) > MAX_RECORDS:
        raise InvalidField("records", f"at most {MAX_RECORDS} records per action")
    return unique


async def _locked(
    conn: Conn, refs: list[RecordRef], force: bool, action: str
) -> list[asyncpg.Record]:
    rows = []
    for ref in refs:  # sorted: two operators acting at once never deadlock
        row = await store.get_dead_letter(conn, ref, lock=True)
        if row is None:
            raise NotFound(f"dead letter {ref}")
        rows.append(row)
    done = [str(ref) for ref, row in zip(refs, rows, strict=True) if row["status"] != "open"]
    if done and not force:
        raise Conflict(
            "Already dealt with",
            f"Nothing {'redriven' if action == 'redrive' else 'discarded'}: "
            f"{', '.join(done)} already redriven or discarded. Send "
            '"force": true (--force) to do it anyway.',
            records=done,
        )
    return rows


async def _record(
    conn: Conn,
    action: str,
    refs: list[RecordRef],
    rows: list[asyncpg.Record],
    who: str,
    reason: str,
    force: bool,
) -> ActionResult:
    records = [
        {
            "topic": ref.topic,
            "partition": ref.partition,
            "offset": ref.offset,
            "event_id": row["event_id"],
            "event_type": row["event_type"],
            "status_before": row["status"],
        }
        for ref, row in zip(refs, rows, strict=True)
    ]
    audit_id, audited_at = await store.append_audit(
        conn, who=who, action=action, reason=reason.strip(), forced=force, records=records
    )
    status = "redriven" if action == "redrive" else "discarded"
    await store.set_status(conn, refs, status, who, audited_at)
    return ActionResult(
        action="redrive" if action == "redrive" else "discard",
        audit_id=audit_id,
        who=who,
        at=audited_at,
        records=refs,
        forced=force,
    )
