"""Notifications' use cases. Plain async functions taking a connection and a command
value; handlers.py and api.py only translate events and requests into these.

- `record_case`: case.created -> the case, its partner feeds, and the events that
  waited for it planned;
- `plan_deliveries`: a referral or follow-up event -> one delivery row per recipient
  and channel (sent later by the worker, never here), and the partner feeds of the
  agencies it concerns (`partner_feeds`); the same content under another event id,
  or an older version of a referral after a newer one, plans nothing;
- `erase_case`: case.erased -> what identifies a person removed, pending deliveries
  cancelled, the erasure recorded (and nothing planned for the case afterwards);
- `apply_sms_status_reports`: the SMS provider's reports move sent SMS on;
- `read_delivery_log`: an agency's view of the notifications of one of its cases.

Planning needs the contact book: `contacts` gives the current one, or raises the
consumer's TransientError while none was ever loaded (never plan on an empty book).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from contracts import events as ev
from contracts.registry import model_for
from services.kit.db import Conn
from services.kit.erasures import apply_erasure
from services.kit.errors import NotFound
from services.kit.logging import get_logger
from services.notifications import store
from services.notifications.domain.recipients import (
    NOTIFIED_EVENT_TYPES,
    CaseInfo,
    ContactBook,
    is_urgent,
    owner_of,
    plan_recipients,
)
from services.notifications.outcomes import apply_status_reports
from services.notifications.partner_feeds import Published, fan_out

log = get_logger(__name__)

ContactSource = Callable[[], Awaitable[ContactBook]]


# --- planning --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordCase:
    case: CaseInfo
    published: Published


@dataclass(frozen=True)
class PlanDeliveries:
    """An event to plan deliveries for: messages to people (the event types with
    templates) and the partner feeds of the agencies it concerns."""

    published: Published

    @property
    def event_id(self) -> str:
        return self.published.event_id

    @property
    def data(self) -> ev.EventData:
        return self.published.data


@dataclass(frozen=True)
class Planned:
    deliveries: int  # message rows created now (a redelivered event creates none)
    waiting_for_case: bool
    webhooks: int = 0  # partner webhook rows created now


async def record_case(
    conn: Conn,
    command: RecordCase,
    *,
    contacts: ContactSource,
    feeds: frozenset[str],
    now: datetime,
) -> list[Planned]:
    """Keep the case; plan the events that were waiting for it (in arrival order).
    Nothing for a case erased before (a replay must not bring it back)."""
    case = command.case
    if await store.is_erased(conn, UUID(case.case_id)):
        log.info("case.created for an erased case: not kept", case_id=case.case_id)
        return []
    await store.save_case(conn, case)
    if await _keep(conn, command.published, now):
        await fan_out(conn, command.published, feed_agencies=feeds, now=now)
    planned = []
    for waiting in await store.take_awaiting(conn, UUID(case.case_id)):
        parked = model_for(waiting["event_type"]).model_validate(waiting["data"])
        planned.append(
            await _plan(conn, waiting["event_id"], parked, case, book=await contacts(), now=now)
        )
    return planned


async def plan_deliveries(
    conn: Conn,
    command: PlanDeliveries,
    *,
    contacts: ContactSource,
    feeds: frozenset[str],
    now: datetime,
) -> Planned:
    """Keep the event (contract data only), write its delivery rows and its partner
    feeds' (`feeds`: the agencies with a feed topic); a caseworker whose case is not
    known yet is told once case.created arrives."""
    data = command.data
    notified = data.event_type in NOTIFIED_EVENT_TYPES
    book = await contacts() if notified else None
    if await store.is_erased(conn, data.case_id):
        log.info("event of an erased case: nothing planned", event_id=command.event_id)
        return Planned(0, False)
    if isinstance(data, ev.ReferralEventV1) and not await store.note_referral_version(
        conn, data.referral_id, data.version
    ):
        log.info("older referral version ignored", event_id=command.event_id)
        return Planned(0, False)
    if not await _keep(conn, command.published, now):
        log.info("event already seen, under this id or another", event_id=command.event_id)
        return Planned(0, False)
    fanned = await fan_out(conn, command.published, feed_agencies=feeds, now=now)
    if book is None:
        return Planned(0, False, fanned.webhooks)
    case = await store.get_case(conn, data.case_id)
    planned = await _plan(conn, command.event_id, data, case, book=book, now=now)
    return Planned(planned.deliveries, planned.waiting_for_case, fanned.webhooks)


async def _keep(conn: Conn, published: Published, now: datetime) -> bool:
    """Keep the event as published; False when it (or its content) was kept before."""
    raw = published.data.model_dump(mode="json")
    return await store.save_source_event(
        conn,
        event_id=published.event_id,
        event_type=published.data.event_type,
        case_id=published.data.case_id,
        data=raw,
        traceparent=published.traceparent,
        received_at=now,
        content_key=content_key(published.data.event_type, raw),
        source=published.source,
        occurred_at=published.occurred_at,
    )


def content_key(event_type: str, data: dict[str, Any]) -> str:
    """What makes two events the same event, whatever their ids: type and data."""
    canonical = orjson.dumps([event_type, data], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


async def _plan(
    conn: Conn,
    event_id: str,
    data: ev.EventData,
    case: CaseInfo | None,
    *,
    book: ContactBook,
    now: datetime,
) -> Planned:
    plan = plan_recipients(data, case, book)
    created = await store.insert_deliveries(
        conn,
        event_id=event_id,
        case_id=data.case_id,
        owner_agency_id=owner_of(data, case),
        recipients=plan.recipients,
        urgent=is_urgent(data),
        now=now,
    )
    if plan.waiting_for_case:
        await store.await_case(conn, event_id, data.case_id)
    if not plan.recipients and not plan.waiting_for_case:
        log.warning("no recipient in the directory for this event", event_id=event_id)
    log.info(
        "deliveries planned",
        event_id=event_id,
        deliveries=created,
        waiting_for_case=plan.waiting_for_case,
    )
    return Planned(created, plan.waiting_for_case)


# --- erasure ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EraseCase:
    published: Published

    @property
    def erased(self) -> ev.CaseErasedV1:
        assert isinstance(self.published.data, ev.CaseErasedV1)
        return self.published.data


async def erase_case(
    conn: Conn, command: EraseCase, *, feeds: frozenset[str], now: datetime
) -> bool:
    """Intake erased the case: reduce the content kept of its events to the case id
    and reference, drop the events parked for it, cancel its deliveries not yet
    attempted (they would tell a caseworker about referrals now cancelled), and
    record the erasure, in the caller's transaction. The delivery rows stay (the
    log), and so do the case's agency and caseworker (staff, not the child: they
    decide who may read that log). Recorded also for a case never seen here. The
    registering agency's systems are told (case.erased on its partner feeds), so
    they erase too. False (and nothing changed) when the case was erased before."""
    erased = command.erased
    removed = await apply_erasure(
        conn,
        erased,
        applied_at=now,
        remove=lambda: store.remove_case_data(conn, erased.case_id, now),
    )
    if removed is None:
        return False
    if await _keep(conn, command.published, now):
        await fan_out(conn, command.published, feed_agencies=feeds, now=now)
    return True


# --- provider reports --------------------------------------------------------------------------


SmsStatusReport = store.StatusReport  # a verified callback (the API checked its signature)


async def apply_sms_status_reports(
    conn: Conn, reports: list[SmsStatusReport], *, now: datetime, source: str
) -> None:
    """Record the reports and apply them, in the order received. Serialised with the
    recording of the sends they report on, so a report that beats that recording is
    applied by it instead."""
    async with conn.transaction():
        await store.lock_provider_messages(conn, [r.provider_message_id for r in reports])
        await store.record_status_reports(conn, reports, now)
        await apply_status_reports(conn, reports, now=now, source=source)


# --- the delivery log ---------------------------------------------------------------------------

# What the log shows of each delivery: no message body, no address.
LOG_FIELDS = (
    "notification_id",
    "source_event_id",
    "source_event_type",
    "recipient_id",
    "role",
    "channel",
    "status",
    "attempts",
    "provider",
    "provider_message_id",
    "provider_status",
    "error_code",
    "urgent",
    "next_attempt_at",
    "deferred_until",
    "created_at",
    "sent_at",
    "updated_at",
)


@dataclass(frozen=True)
class ReadDeliveryLog:
    case_id: UUID
    agency_id: str


async def read_delivery_log(conn: Conn, query: ReadDeliveryLog) -> list[dict[str, Any]]:
    """The deliveries of a case the agency registered (or was told about as its
    owner); NotFound for anyone else's case, exactly as for a case that does not exist."""
    if not await store.agency_owns_case(conn, query.case_id, query.agency_id):
        raise NotFound("case")
    rows = await store.delivery_log(conn, query.case_id, query.agency_id)
    return [{key: row[key] for key in LOG_FIELDS} for row in rows]
