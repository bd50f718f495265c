"""SQL for deliveries: one row per (event, recipient, channel), claimed by the worker,
its outcome recorded, moved on by the SMS provider's status reports, and listed in
an agency's delivery log. Functions take the caller's connection (the caller owns
the transaction), except the worker's claim, which is its own short transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Self
from uuid import UUID

import asyncpg

from contracts.codes import Channel
from services.kit.db import Conn
from services.notifications.domain.recipients import Recipient, RecipientKind, Role
from services.notifications.domain.status_reports import DeliveryStatus

if TYPE_CHECKING:
    from services.notifications.store.webhooks import WebhookClaim

DUE_CHANNEL = "enlace_notifications_due"


async def insert_deliveries(
    conn: Conn,
    *,
    event_id: str,
    case_id: UUID | None,
    owner_agency_id: str,
    recipients: list[Recipient],
    urgent: bool,
    now: datetime,
) -> int:
    """One row per (event, recipient, channel); rows that already exist are left alone.
    Returns how many are new."""
    rows = [(r, channel) for r in recipients for channel in r.channels]
    if not rows:
        return 0
    inserted = await conn.fetch(
        """INSERT INTO deliveries (notification_id, source_event_id, case_id, owner_agency_id,
                                   recipient_id, recipient_kind, recipient_agency_id,
                                   recipient_ref, role, channel, urgent, next_attempt_at,
                                   created_at, updated_at)
           SELECT n, $2, $3, $4, rid, kind, agency, ref, role, channel, $5, $6, $6, $6
           FROM unnest($1::uuid[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
                       $12::text[]) AS t(n, rid, kind, agency, ref, role, channel)
           ON CONFLICT (source_event_id, recipient_id, channel) DO NOTHING
           RETURNING notification_id""",
        [uuid.uuid4() for _ in rows],
        event_id,
        case_id,
        owner_agency_id,
        urgent,
        now,
        [r.recipient_id for r, _ in rows],
        [r.kind.value for r, _ in rows],
        [r.agency_id for r, _ in rows],
        [r.ref for r, _ in rows],
        [r.role.value for r, _ in rows],
        [c.value for _, c in rows],
    )
    if inserted:
        await conn.execute("SELECT pg_notify($1, '')", DUE_CHANNEL)
    return len(inserted)


def claimed_fields(row: asyncpg.Record, claim_token: UUID) -> dict[str, Any]:
    """What every claimed delivery carries, whatever its channel: the row's ids and
    attempts, its source event, and the claim."""
    return {
        "notification_id": row["notification_id"],
        "claim_token": claim_token,
        "source_event_id": row["source_event_id"],
        "event_type": row["event_type"],
        "source_data": row["data"],
        "traceparent": row["traceparent"],
        "case_id": row["case_id"],
        "recipient_agency_id": row["recipient_agency_id"],
        "attempts": row["attempts"],
    }


@dataclass(frozen=True)
class Claimed:
    notification_id: UUID
    claim_token: UUID
    source_event_id: str
    event_type: str
    source_data: dict[str, Any]
    traceparent: str
    case_id: UUID | None  # None for a notice about no case (an endpoint disabled)
    recipient_id: str
    recipient_kind: RecipientKind
    recipient_agency_id: str
    recipient_ref: str
    role: Role
    channel: Channel
    urgent: bool
    attempts: int

    @property
    def channel_name(self) -> str:
        return self.channel.value

    @classmethod
    def from_row(cls, row: asyncpg.Record, claim_token: UUID) -> Self:
        """From a deliveries row joined with its source event's event_type, data and
        traceparent."""
        return cls(
            **claimed_fields(row, claim_token),
            recipient_id=row["recipient_id"],
            recipient_kind=RecipientKind(row["recipient_kind"]),
            recipient_ref=row["recipient_ref"],
            role=Role(row["role"]),
            channel=Channel(row["channel"]),
            urgent=row["urgent"],
        )


class OutcomeKind(StrEnum):
    SENT = "sent"  # the provider accepted it
    FAILED = "failed"  # given up
    RETRY = "retry"  # a transient error: try again at `at`
    DEFER = "defer"  # quiet hours: try again at `at`, without counting an attempt


@dataclass(frozen=True)
class Outcome:
    """What became of one claimed delivery (a message, or a partner webhook)."""

    claimed: Claimed | WebhookClaim
    kind: OutcomeKind
    at: datetime | None = None  # retry / defer: when to try again
    provider: str | None = None
    provider_message_id: str | None = None
    error_code: str | None = None
    permanent: bool = False
    response_status: int | None = None  # a webhook endpoint's HTTP status
    pause_until: datetime | None = None  # the endpoint asked to back off until then


_STATUS_AFTER = {
    OutcomeKind.SENT: DeliveryStatus.SENT,
    OutcomeKind.FAILED: DeliveryStatus.FAILED,
    OutcomeKind.RETRY: DeliveryStatus.PENDING,
    OutcomeKind.DEFER: DeliveryStatus.PENDING,
}


async def record_outcomes(conn: Conn, outcomes: list[Outcome], now: datetime) -> set[UUID]:
    """Apply many outcomes in one statement; only rows still held by the same claim
    change (a sender whose lease ran out cannot overwrite a newer attempt). A deferral
    gives back its attempt: quiet hours are not a failure. Returns the ids applied."""
    if not outcomes:
        return set()
    rows = await conn.fetch(
        """UPDATE deliveries d SET
               status = u.status,
               attempts = d.attempts - CASE WHEN u.kind = 'defer' THEN 1 ELSE 0 END,
               next_attempt_at = COALESCE(u.at, d.next_attempt_at),
               deferred_until = CASE WHEN u.kind = 'defer' THEN u.at ELSE d.deferred_until END,
               provider = COALESCE(u.provider, d.provider),
               provider_message_id = COALESCE(u.pid, d.provider_message_id),
               error_code = CASE WHEN u.kind = 'sent' THEN NULL
                                 WHEN u.kind = 'defer' THEN d.error_code ELSE u.error END,
               sent_at = CASE WHEN u.kind = 'sent' THEN $9 ELSE d.sent_at END,
               response_status = COALESCE(u.http, d.response_status),
               claim_token = NULL, lease_until = NULL, updated_at = $9
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[],
                       $6::text[], $7::text[], $8::text[], $10::int[])
                AS u(id, token, kind, status, at, provider, pid, error, http)
           WHERE d.notification_id = u.id AND d.claim_token = u.token AND d.status = 'sending'
           RETURNING d.notification_id""",
        [o.claimed.notification_id for o in outcomes],
        [o.claimed.claim_token for o in outcomes],
        [o.kind.value for o in outcomes],
        [_STATUS_AFTER[o.kind].value for o in outcomes],
        [o.at for o in outcomes],
        [o.provider for o in outcomes],
        [o.provider_message_id for o in outcomes],
        [o.error_code for o in outcomes],
        now,
        [o.response_status for o in outcomes],
    )
    return {r["notification_id"] for r in rows}


# --- provider status callbacks --------------------------------------------------------------


@dataclass(frozen=True)
class StatusReport:
    """A provider's report on one SMS, as received (signature already checked)."""

    provider_message_id: str
    status: str  # the provider's own word: queued, sent, delivered, undelivered, failed...
    error_code: str | None


@dataclass(frozen=True)
class Reported:
    """A delivery moved on by reports: its new status and the provider's latest word."""

    notification_id: UUID
    status: DeliveryStatus
    provider_status: str
    error_code: str | None


async def lock_provider_messages(conn: Conn, provider_message_ids: list[str]) -> None:
    """Serialises status callbacks with the recording of the send they report on, so a
    callback that arrives while the send is being recorded is never lost."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext(x)) FROM unnest($1::text[]) AS x ORDER BY x",
        sorted(set(provider_message_ids)),
    )


async def record_status_reports(conn: Conn, reports: list[StatusReport], now: datetime) -> None:
    await conn.execute(
        """INSERT INTO sms_status_reports (provider_message_id, status, error_code, received_at)
           SELECT pid, status, error, $4
           FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
                AS r(pid, status, error, n)
           ORDER BY n""",
        [r.provider_message_id for r in reports],
        [r.status for r in reports],
        [r.error_code for r in reports],
        now,
    )


async def sent_deliveries(conn: Conn, provider_message_ids: list[str]) -> dict[str, asyncpg.Record]:
    """The deliveries these provider messages are, with their source events, locked."""
    rows = await conn.fetch(
        """SELECT d.*, s.data, s.event_type, s.traceparent
           FROM deliveries d JOIN source_events s ON s.event_id = d.source_event_id
           WHERE d.provider_message_id = ANY($1::text[]) FOR UPDATE OF d""",
        sorted(set(provider_message_ids)),
    )
    return {row["provider_message_id"]: row for row in rows}


async def update_reported(conn: Conn, changes: list[Reported], now: datetime) -> None:
    if not changes:
        return
    await conn.execute(
        """UPDATE deliveries d SET status = u.status, provider_status = u.provider_status,
                  error_code = COALESCE(u.error, d.error_code), updated_at = $5
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])
                AS u(id, status, provider_status, error)
           WHERE d.notification_id = u.id""",
        [c.notification_id for c in changes],
        [c.status for c in changes],
        [c.provider_status for c in changes],
        [c.error_code for c in changes],
        now,
    )


async def reports_for(conn: Conn, provider_message_ids: list[str]) -> list[StatusReport]:
    rows = await conn.fetch(
        """SELECT provider_message_id, status, error_code FROM sms_status_reports
           WHERE provider_message_id = ANY($1::text[]) ORDER BY id""",
        provider_message_ids,
    )
    return [StatusReport(r["provider_message_id"], r["status"], r["error_code"]) for r in rows]


# --- delivery log ---------------------------------------------------------------------------


async def delivery_log(conn: Conn, case_id: UUID, agency_id: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT d.notification_id, d.source_event_id, s.event_type AS source_event_type,
                  d.recipient_id, d.role, d.channel, d.status, d.attempts, d.provider,
                  d.provider_message_id, d.provider_status, d.error_code, d.urgent,
                  d.next_attempt_at, d.deferred_until, d.created_at, d.sent_at, d.updated_at
           FROM deliveries d JOIN source_events s ON s.event_id = d.source_event_id
           WHERE d.case_id = $1
             AND (d.owner_agency_id = $2
                  OR EXISTS (SELECT 1 FROM cases c WHERE c.case_id = $1 AND c.agency_id = $2))
           ORDER BY d.created_at, d.recipient_id, d.channel""",
            case_id,
            agency_id,
        )
    )
