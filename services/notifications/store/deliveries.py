"""Notifications' SQL. Functions take the caller's connection (the caller owns the
transaction), except the worker's claim, which is its own short transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from services.kit.db import Conn
from services.notifications.domain import CaseInfo, Recipient

DUE_CHANNEL = "enlace_notifications_due"


# --- cases and source events -------------------------------------------------------------


async def save_case(conn: Conn, case: CaseInfo) -> None:
    await conn.execute(
        """INSERT INTO cases (case_id, reference, agency_id, caseworker_id)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (case_id) DO UPDATE SET caseworker_id = EXCLUDED.caseworker_id""",
        UUID(case.case_id),
        case.reference,
        case.agency_id,
        case.caseworker_id,
    )


async def get_case(conn: Conn, case_id: UUID) -> CaseInfo | None:
    row = await conn.fetchrow("SELECT * FROM cases WHERE case_id = $1", case_id)
    if row is None:
        return None
    return CaseInfo(str(row["case_id"]), row["reference"], row["agency_id"], row["caseworker_id"])


async def save_source_event(
    conn: Conn,
    *,
    event_id: str,
    event_type: str,
    case_id: UUID,
    data: dict[str, Any],
    traceparent: str,
    received_at: datetime,
) -> None:
    await conn.execute(
        """INSERT INTO source_events (event_id, event_type, case_id, data, traceparent, received_at)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING""",
        event_id,
        event_type,
        case_id,
        data,
        traceparent,
        received_at,
    )


async def await_case(conn: Conn, event_id: str, case_id: UUID) -> None:
    await conn.execute(
        "INSERT INTO awaiting_case (event_id, case_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        event_id,
        case_id,
    )


async def take_awaiting(conn: Conn, case_id: UUID) -> list[asyncpg.Record]:
    """The events that waited for this case, removed from the waiting list."""
    return list(
        await conn.fetch(
            """WITH taken AS (DELETE FROM awaiting_case WHERE case_id = $1 RETURNING event_id)
           SELECT s.* FROM source_events s JOIN taken USING (event_id)
           ORDER BY s.received_at""",
            case_id,
        )
    )


# --- deliveries ----------------------------------------------------------------------------


async def insert_deliveries(
    conn: Conn,
    *,
    event_id: str,
    case_id: UUID,
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


@dataclass(frozen=True)
class Claimed:
    notification_id: UUID
    claim_token: UUID
    source_event_id: str
    event_type: str
    source_data: dict[str, Any]
    traceparent: str
    case_id: UUID
    recipient_id: str
    recipient_kind: str
    recipient_agency_id: str
    recipient_ref: str
    role: str
    channel: str
    urgent: bool
    attempts: int


async def claim_due(
    pool: asyncpg.Pool, *, now: datetime, limit: int, lease_until: datetime
) -> list[Claimed]:
    """Take up to `limit` deliveries that are due (or whose sender's lease ran out),
    skipping rows another worker holds; each claim counts as an attempt."""
    if limit <= 0:
        return []
    token = uuid.uuid4()
    rows = await pool.fetch(
        """WITH due AS (
               SELECT notification_id FROM deliveries
               WHERE (status = 'pending' AND next_attempt_at <= $1)
                  OR (status = 'sending' AND lease_until <= $1)
               ORDER BY next_attempt_at
               LIMIT $2
               FOR UPDATE SKIP LOCKED)
           UPDATE deliveries d
           SET status = 'sending', attempts = d.attempts + 1, claim_token = $3,
               lease_until = $4, updated_at = $1
           FROM due, source_events s
           WHERE d.notification_id = due.notification_id AND s.event_id = d.source_event_id
           RETURNING d.*, s.event_type, s.data, s.traceparent""",
        now,
        limit,
        token,
        lease_until,
    )
    return [
        Claimed(
            r["notification_id"],
            token,
            r["source_event_id"],
            r["event_type"],
            r["data"],
            r["traceparent"],
            r["case_id"],
            r["recipient_id"],
            r["recipient_kind"],
            r["recipient_agency_id"],
            r["recipient_ref"],
            r["role"],
            r["channel"],
            r["urgent"],
            r["attempts"],
        )
        for r in rows
    ]


@dataclass(frozen=True)
class Outcome:
    """What became of one claimed delivery."""

    claimed: Claimed
    kind: str  # "sent" | "failed" | "retry" | "defer"
    at: datetime | None = None  # retry / defer: when to try again
    provider: str | None = None
    provider_message_id: str | None = None
    error_code: str | None = None
    permanent: bool = False


_STATUS_AFTER = {"sent": "sent", "failed": "failed", "retry": "pending", "defer": "pending"}


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
               claim_token = NULL, lease_until = NULL, updated_at = $9
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[],
                       $6::text[], $7::text[], $8::text[])
                AS u(id, token, kind, status, at, provider, pid, error)
           WHERE d.notification_id = u.id AND d.claim_token = u.token AND d.status = 'sending'
           RETURNING d.notification_id""",
        [o.claimed.notification_id for o in outcomes],
        [o.claimed.claim_token for o in outcomes],
        [o.kind for o in outcomes],
        [_STATUS_AFTER[o.kind] for o in outcomes],
        [o.at for o in outcomes],
        [o.provider for o in outcomes],
        [o.provider_message_id for o in outcomes],
        [o.error_code for o in outcomes],
        now,
    )
    return {r["notification_id"] for r in rows}


# --- provider status callbacks --------------------------------------------------------------


async def lock_provider_messages(conn: Conn, provider_message_ids: list[str]) -> None:
    """Serialises a status callback with the recording of the send it reports on, so a
    callback that arrives while the send is being recorded is never lost."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext(x)) FROM unnest($1::text[]) AS x ORDER BY x",
        sorted(set(provider_message_ids)),
    )


async def record_status_report(
    conn: Conn,
    *,
    provider_message_id: str,
    status: str,
    error_code: str | None,
    now: datetime,
) -> None:
    await conn.execute(
        """INSERT INTO sms_status_reports (provider_message_id, status, error_code, received_at)
           VALUES ($1, $2, $3, $4)""",
        provider_message_id,
        status,
        error_code,
        now,
    )


async def apply_status(
    conn: Conn,
    *,
    provider_message_id: str,
    status: str,
    error_code: str | None,
    now: datetime,
) -> asyncpg.Record | None:
    """Move a sent SMS on (delivered / undelivered). Returns the delivery when its
    status changed to undelivered, so the caller can emit notification.failed."""
    row = await conn.fetchrow(
        """SELECT d.*, s.data AS source_data, s.event_type, s.traceparent
           FROM deliveries d JOIN source_events s ON s.event_id = d.source_event_id
           WHERE d.provider_message_id = $1 FOR UPDATE OF d""",
        provider_message_id,
    )
    if row is None or row["status"] not in ("sent", "delivered"):
        return None
    new_status = {
        "delivered": "delivered",
        "undelivered": "undelivered",
        "failed": "undelivered",
    }.get(status, row["status"])
    if row["status"] == "delivered" and new_status == "sent":
        new_status = "delivered"
    await conn.execute(
        """UPDATE deliveries SET status = $2, provider_status = $3,
                  error_code = COALESCE($4, error_code), updated_at = $5
           WHERE notification_id = $1""",
        row["notification_id"],
        new_status,
        status,
        error_code,
        now,
    )
    return row if new_status == "undelivered" and row["status"] != "undelivered" else None


async def reports_for(conn: Conn, provider_message_ids: list[str]) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT * FROM sms_status_reports WHERE provider_message_id = ANY($1::text[])
               ORDER BY id""",
            provider_message_ids,
        )
    )


# --- caseworker contacts ---------------------------------------------------------------------


async def cached_contact(
    conn: Conn | asyncpg.Pool, agency_id: str, staff_id: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT contact, fetched_at FROM caseworker_contacts
           WHERE agency_id = $1 AND staff_id = $2""",
        agency_id,
        staff_id,
    )


async def cache_contact(
    conn: Conn | asyncpg.Pool,
    agency_id: str,
    staff_id: str,
    contact: dict[str, Any],
    now: datetime,
) -> None:
    await conn.execute(
        """INSERT INTO caseworker_contacts (agency_id, staff_id, contact, fetched_at)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (agency_id, staff_id) DO UPDATE
           SET contact = EXCLUDED.contact, fetched_at = EXCLUDED.fetched_at""",
        agency_id,
        staff_id,
        contact,
        now,
    )


# --- delivery log ---------------------------------------------------------------------------


async def agency_owns_case(conn: Conn, case_id: UUID, agency_id: str) -> bool:
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM cases WHERE case_id = $1 AND agency_id = $2)
               OR EXISTS (SELECT 1 FROM deliveries WHERE case_id = $1 AND owner_agency_id = $2)""",
            case_id,
            agency_id,
        )
    )


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
