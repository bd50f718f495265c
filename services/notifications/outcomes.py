"""Recording what became of deliveries, with their events: a sent or failed delivery
writes notification.sent / notification.failed to the outbox in the same transaction
as its row, and a provider's "undelivered" report turns a sent SMS into
notification.failed. Outcomes that finish while one transaction is being written go
together in the next (group commit: one UPDATE and one outbox insert for the lot).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg

from contracts import events as ev
from contracts.codes import Channel
from contracts.envelope import new_traceparent, trace_id_of
from contracts.registry import to_cloud_event
from contracts.topics import Topic
from services.kit.clock import Clock
from services.kit.db import Conn
from services.kit.outbox import enqueue
from services.notifications import store
from services.notifications.store import Outcome, OutcomeKind


def event_fields(item: store.Claimed) -> dict[str, Any]:
    """What notification.sent and notification.failed say of a delivery: ids, codes
    and the reference, never an address or a body."""
    return {
        "case_id": item.case_id,
        "notification_id": item.notification_id,
        "reference": item.source_data["reference"],
        "source_event_id": item.source_event_id,
        "source_event_type": item.event_type,
        "recipient_id": item.recipient_id,
        "channel": item.channel,
        "attempts": max(1, item.attempts),
    }


async def apply_status_report(
    conn: Conn,
    *,
    provider_message_id: str,
    status: str,
    error_code: str | None,
    now: datetime,
    source: str,
) -> None:
    """Provider says the SMS was delivered or not; undelivered -> notification.failed.
    The caller holds the provider message's lock (`store.lock_provider_messages`)."""
    row = await store.apply_status(
        conn,
        provider_message_id=provider_message_id,
        status=status,
        error_code=error_code,
        now=now,
    )
    if row is None:
        return
    item = store.Claimed.from_row(row, row["notification_id"])
    failed = ev.NotificationFailedV1(
        **event_fields(item),
        permanent=True,
        error_code=error_code or "carrier_undelivered",
        failed_at=now,
    )
    await store_events(conn, [(failed, item.traceparent)], source)


async def store_events(conn: Conn, events: list[tuple[ev.EventData, str]], source: str) -> None:
    """Events to the outbox, each in the trace (traceparent) of the event that caused it."""
    await enqueue(
        conn,
        Topic.NOTIFICATIONS,
        *(
            to_cloud_event(data, source=source, traceparent=new_traceparent(trace_id_of(parent)))
            for data, parent in events
        ),
    )


class OutcomeRecorder:
    def __init__(self, *, pool: Callable[[], asyncpg.Pool], clock: Clock, source: str) -> None:
        self._pool = pool
        self._clock = clock
        self._source = source
        self._pending: list[tuple[Outcome, asyncio.Future[None]]] = []
        self._flushing = False

    async def record(self, outcome: Outcome) -> None:
        """Returns once the outcome is committed; raises when its transaction failed
        (the row keeps its lease and comes back after it)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((outcome, done))
        if not self._flushing:
            self._flushing = True
            try:
                while self._pending:
                    batch, self._pending = self._pending, []
                    try:
                        await self._flush([o for o, _ in batch])
                    except BaseException as exc:
                        for _, future in batch:
                            if not future.done():
                                future.set_exception(
                                    exc
                                    if isinstance(exc, Exception)
                                    else RuntimeError("flush interrupted")
                                )
                        if not isinstance(exc, Exception):
                            raise
                    else:
                        for _, future in batch:
                            if not future.done():
                                future.set_result(None)
            finally:
                self._flushing = False
        await done

    async def _flush(self, outcomes: list[Outcome]) -> None:
        now = self._clock.now()
        sms_ids = [
            o.provider_message_id
            for o in outcomes
            if o.kind is OutcomeKind.SENT
            and o.provider_message_id
            and o.claimed.channel is Channel.SMS
        ]
        async with self._pool().acquire() as conn, conn.transaction():
            if sms_ids:
                await store.lock_provider_messages(conn, sms_ids)
            applied = await store.record_outcomes(conn, outcomes, now)
            events: list[tuple[ev.EventData, str]] = []
            for o in outcomes:
                if o.claimed.notification_id not in applied:
                    continue
                fields = event_fields(o.claimed)
                if o.kind is OutcomeKind.SENT:
                    sent = ev.NotificationSentV1(
                        **fields, provider_message_id=o.provider_message_id, sent_at=now
                    )
                    events.append((sent, o.claimed.traceparent))
                elif o.kind is OutcomeKind.FAILED:
                    failed = ev.NotificationFailedV1(
                        **fields,
                        error_code=o.error_code or "unknown",
                        permanent=o.permanent,
                        failed_at=now,
                    )
                    events.append((failed, o.claimed.traceparent))
            await store_events(conn, events, self._source)
            if sms_ids:  # callbacks that beat the recording of their send
                for report in await store.reports_for(conn, sms_ids):
                    await apply_status_report(
                        conn,
                        provider_message_id=report["provider_message_id"],
                        status=report["status"],
                        error_code=report["error_code"],
                        now=now,
                        source=self._source,
                    )
