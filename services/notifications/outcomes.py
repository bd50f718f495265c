"""Recording what became of deliveries, with their events: a sent or failed delivery
writes notification.sent / notification.failed to the outbox in the same transaction
as its row, and a provider's "undelivered" report turns a sent SMS into
notification.failed. Outcomes that finish while one transaction is being written go
together in the next (the kit's group commit: one UPDATE and one outbox insert for
the lot).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from contracts import events as ev
from contracts.codes import Channel
from contracts.envelope import new_traceparent, trace_id_of
from contracts.registry import to_cloud_event
from contracts.topics import Topic
from services.kit.clock import Clock
from services.kit.db import Conn
from services.kit.group_commit import GroupCommit
from services.kit.outbox import enqueue
from services.notifications import store
from services.notifications.domain.status_reports import after_report
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


async def apply_status_reports(
    conn: Conn, reports: list[store.StatusReport], *, now: datetime, source: str
) -> None:
    """Provider reports, in the order received, move sent SMS on; a move to
    undelivered writes notification.failed. One read and one write for them all. The
    caller holds the provider messages' locks (`store.lock_provider_messages`)."""
    rows = await store.sent_deliveries(conn, [r.provider_message_id for r in reports])
    state = {pid: (row["status"], row["provider_status"]) for pid, row in rows.items()}
    changes: dict[str, store.Reported] = {}
    failed: list[tuple[ev.EventData, str]] = []
    for report in reports:
        pid = report.provider_message_id
        if pid not in rows:
            continue
        status, provider_status = state[pid]
        after = after_report(status, provider_status, report.status)
        if after is None:
            continue
        state[pid] = (after, report.status)
        earlier = changes.get(pid)
        changes[pid] = store.Reported(
            rows[pid]["notification_id"],
            after,
            report.status,
            report.error_code or (earlier.error_code if earlier else None),
        )
        if after == store.DeliveryStatus.UNDELIVERED and status != after:
            row = rows[pid]
            item = store.Claimed.from_row(row, row["notification_id"])
            event = ev.NotificationFailedV1(
                **event_fields(item),
                permanent=True,
                error_code=report.error_code or "carrier_undelivered",
                failed_at=now,
            )
            failed.append((event, item.traceparent))
    await store.update_reported(conn, list(changes.values()), now)
    await store_events(conn, failed, source)


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


EndpointsDisabled = Callable[[Conn, list[asyncpg.Record], datetime], Awaitable[None]]


def endpoint_news(outcomes: list[Outcome]) -> store.EndpointNews:
    """What webhook outcomes say about their endpoints."""
    news = store.EndpointNews(set(), set(), set(), {}, set())
    for o in outcomes:
        item = o.claimed
        if not isinstance(item, store.WebhookClaim):
            continue
        news.touched.add(item.endpoint_id)
        if o.kind is OutcomeKind.SENT:
            news.healthy.add(item.endpoint_id)
        elif o.kind is not OutcomeKind.DEFER and o.error_code not in (
            "endpoint_deleted",
            "case_erased",
        ):
            news.failing.add(item.endpoint_id)
        if o.response_status == 410:
            news.gone.add(item.endpoint_id)
        if o.pause_until is not None:
            news.paused[item.endpoint_id] = max(
                o.pause_until, news.paused.get(item.endpoint_id, o.pause_until)
            )
    return news


class OutcomeRecorder:
    def __init__(
        self,
        *,
        pool: Callable[[], asyncpg.Pool],
        clock: Clock,
        source: str,
        disable_failing_after: timedelta,
        on_endpoints_disabled: EndpointsDisabled,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._source = source
        self._disable_after = disable_failing_after
        self._on_disabled = on_endpoints_disabled
        self._group = GroupCommit(self._flush)

    async def record(self, outcome: Outcome) -> None:
        """Returns once the outcome is committed; raises when its transaction failed
        (the row keeps its lease and comes back after it)."""
        await self._group.submit(outcome)

    async def _flush(self, outcomes: list[Outcome]) -> None:
        now = self._clock.now()
        sms_ids = [
            o.provider_message_id
            for o in outcomes
            if o.kind is OutcomeKind.SENT
            and o.provider_message_id
            and isinstance(o.claimed, store.Claimed)
            and o.claimed.channel is Channel.SMS
        ]
        async with self._pool().acquire() as conn, conn.transaction():
            if sms_ids:
                await store.lock_provider_messages(conn, sms_ids)
            applied = await store.record_outcomes(conn, outcomes, now)
            done = [o for o in outcomes if o.claimed.notification_id in applied]
            news = endpoint_news(done)
            if news.touched:
                disabled = await store.apply_endpoint_news(
                    conn, news, now=now, failing_limit=now - self._disable_after
                )
                if disabled:
                    await self._on_disabled(conn, disabled, now)
            events: list[tuple[ev.EventData, str]] = []
            for o in done:
                if not isinstance(o.claimed, store.Claimed) or o.claimed.case_id is None:
                    continue  # a partner webhook, or a notice about no case: no event
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
                early = await store.reports_for(conn, sms_ids)
                if early:
                    await apply_status_reports(conn, early, now=now, source=self._source)
