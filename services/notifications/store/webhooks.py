"""SQL for partner webhooks: the endpoints agencies manage, their delivery rows (rows
of `deliveries`, channel 'webhook', one per event and endpoint, claimed and retried
by the one delivery worker), what an endpoint's answers do to it (healthy again,
failing since, paused, disabled), and an endpoint's delivery log."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self
from uuid import UUID

import asyncpg

from services.kit.db import Conn
from services.notifications.domain.partners import EndpointTarget
from services.notifications.store.deliveries import DUE_CHANNEL, claimed_fields

WEBHOOK = "webhook"


# --- endpoints --------------------------------------------------------------------------------


async def insert_endpoint(
    conn: Conn,
    *,
    endpoint_id: UUID,
    agency_id: str,
    url: str,
    description: str,
    event_types: list[str],
    enabled: bool,
    secret: bytes,
    now: datetime,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        """INSERT INTO webhook_endpoints (endpoint_id, agency_id, url, description, event_types,
                                          enabled, disabled_reason, secret, created_at,
                                          updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $6 THEN NULL ELSE 'agency' END, $7, $8, $8)
           RETURNING *""",
        endpoint_id,
        agency_id,
        url,
        description,
        event_types,
        enabled,
        secret,
        now,
    )
    assert row is not None
    return row


async def agency_endpoints(conn: Conn, agency_id: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT * FROM webhook_endpoints WHERE agency_id = $1 ORDER BY created_at",
            agency_id,
        )
    )


async def endpoint(
    conn: Conn, endpoint_id: UUID, agency_id: str, *, lock: bool = False
) -> asyncpg.Record | None:
    """One endpoint of this agency; None for another agency's, as for none."""
    return await conn.fetchrow(
        "SELECT * FROM webhook_endpoints WHERE endpoint_id = $1 AND agency_id = $2"
        + (" FOR UPDATE" if lock else ""),
        endpoint_id,
        agency_id,
    )


async def update_endpoint(
    conn: Conn, endpoint_id: UUID, changes: dict[str, Any], now: datetime
) -> asyncpg.Record:
    """Set the given columns (names from the caller's fixed list, never from input)."""
    columns = list(changes)
    assignments = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(columns))
    row = await conn.fetchrow(
        f"""UPDATE webhook_endpoints SET {assignments}, updated_at = ${len(columns) + 2}
            WHERE endpoint_id = $1 RETURNING *""",
        endpoint_id,
        *changes.values(),
        now,
    )
    assert row is not None
    return row


async def hold_deliveries(conn: Conn, endpoint_id: UUID, now: datetime) -> None:
    """An endpoint disabled: its waiting deliveries wait for it to be enabled again."""
    await conn.execute(
        """UPDATE deliveries SET status = 'held', updated_at = $2
           WHERE endpoint_id = $1 AND status = 'pending'""",
        endpoint_id,
        now,
    )


async def release_deliveries(conn: Conn, endpoint_id: UUID, now: datetime) -> None:
    """An endpoint enabled again: what was held is due now."""
    released = await conn.execute(
        """UPDATE deliveries SET status = 'pending', next_attempt_at = $2, updated_at = $2
           WHERE endpoint_id = $1 AND status = 'held'""",
        endpoint_id,
        now,
    )
    if released != "UPDATE 0":
        await conn.execute("SELECT pg_notify($1, '')", DUE_CHANNEL)


async def delete_endpoint(conn: Conn, endpoint_id: UUID, now: datetime) -> None:
    """The endpoint goes; its deliveries not yet made are cancelled, its log stays."""
    await conn.execute(
        """UPDATE deliveries SET status = 'cancelled', error_code = 'endpoint_deleted',
                  updated_at = $2
           WHERE endpoint_id = $1 AND status IN ('pending', 'held')""",
        endpoint_id,
        now,
    )
    await conn.execute("DELETE FROM webhook_endpoints WHERE endpoint_id = $1", endpoint_id)


# --- fan-out ----------------------------------------------------------------------------------


async def receiving_endpoints(conn: Conn, agencies: frozenset[str]) -> list[EndpointTarget]:
    """The endpoints of these agencies that take events: the enabled ones, and those
    the service disabled for failing too long (their deliveries are held until the
    agency enables them again, so nothing is lost while its system was down). Not
    those their agency turned off, nor those that answered 410 (gone)."""
    rows = await conn.fetch(
        """SELECT endpoint_id, agency_id, event_types, enabled FROM webhook_endpoints
           WHERE agency_id = ANY($1::text[])
             AND (enabled OR disabled_reason = 'failing')""",
        sorted(agencies),
    )
    return [
        EndpointTarget(
            str(r["endpoint_id"]),
            r["agency_id"],
            frozenset(r["event_types"]),
            held=not r["enabled"],
        )
        for r in rows
    ]


async def insert_webhook_deliveries(
    conn: Conn,
    *,
    event_id: str,
    case_id: UUID,
    targets: list[EndpointTarget],
    now: datetime,
) -> int:
    """One row per (event, endpoint); a redelivered event adds none. Due now, or
    once the endpoint's pause (it asked to back off) is over; held while the endpoint
    is disabled. Returns how many are new."""
    if not targets:
        return 0
    inserted = await conn.fetch(
        """INSERT INTO deliveries (notification_id, source_event_id, case_id, owner_agency_id,
                                   recipient_id, recipient_kind, recipient_agency_id,
                                   recipient_ref, role, channel, urgent, status,
                                   next_attempt_at, created_at, updated_at, endpoint_id)
           SELECT n, $2, $3, agency, 'endpoint:' || ep::text, 'endpoint', agency, ep::text,
                  'partner_system', 'webhook', false,
                  CASE WHEN held THEN 'held' ELSE 'pending' END,
                  GREATEST($4, COALESCE(e.paused_until, $4)), $4, $4, ep
           FROM unnest($1::uuid[], $5::uuid[], $6::text[], $7::bool[]) AS t(n, ep, agency, held)
           LEFT JOIN webhook_endpoints e ON e.endpoint_id = t.ep
           ON CONFLICT (source_event_id, recipient_id, channel) DO NOTHING
           RETURNING notification_id""",
        [uuid.uuid4() for _ in targets],
        event_id,
        case_id,
        now,
        [UUID(t.endpoint_id) for t in targets],
        [t.agency_id for t in targets],
        [t.held for t in targets],
    )
    if inserted:
        await conn.execute("SELECT pg_notify($1, '')", DUE_CHANNEL)
    return len(inserted)


# --- claimed for sending ------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookClaim:
    """A webhook delivery claimed by the worker, with its event and its endpoint as
    they are now (a deleted endpoint leaves `url` None)."""

    notification_id: UUID
    claim_token: UUID
    source_event_id: str
    event_type: str
    source_data: dict[str, Any]
    source: str | None
    occurred_at: datetime | None
    traceparent: str
    case_id: UUID
    recipient_agency_id: str
    endpoint_id: UUID
    attempts: int
    created_at: datetime
    url: str | None
    enabled: bool
    secret: bytes | None
    previous_secret: bytes | None
    previous_secret_expires_at: datetime | None

    channel_name = WEBHOOK

    @classmethod
    def from_row(cls, row: asyncpg.Record, claim_token: UUID) -> Self:
        return cls(
            **claimed_fields(row, claim_token),
            source=row["source"],
            occurred_at=row["occurred_at"],
            endpoint_id=row["endpoint_id"],
            created_at=row["created_at"],
            url=row["url"],
            enabled=bool(row["enabled"]),
            secret=row["secret"],
            previous_secret=row["previous_secret"],
            previous_secret_expires_at=row["previous_secret_expires_at"],
        )


# --- the log ------------------------------------------------------------------------------------


async def endpoint_deliveries(
    conn: Conn, endpoint_id: UUID, *, limit: int, status: str | None
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT d.notification_id, d.source_event_id, s.event_type, d.case_id, d.status,
                      d.attempts, d.response_status, d.error_code, d.next_attempt_at,
                      d.created_at, d.sent_at, d.updated_at
               FROM deliveries d JOIN source_events s ON s.event_id = d.source_event_id
               WHERE d.endpoint_id = $1 AND ($3::text IS NULL OR d.status = $3)
               ORDER BY d.created_at DESC, d.notification_id LIMIT $2""",
            endpoint_id,
            limit,
            status,
        )
    )


async def redeliver(
    conn: Conn, endpoint_id: UUID, notification_id: UUID, now: datetime
) -> asyncpg.Record | None:
    """A finished delivery (sent, failed, cancelled) of this endpoint back to pending,
    due now, with a fresh schedule; None when there is no such delivery. A delivery
    still pending or being sent is left as it is (and returned)."""
    row = await conn.fetchrow(
        """UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $3,
                  error_code = NULL, claim_token = NULL, lease_until = NULL, updated_at = $3
           WHERE notification_id = $1 AND endpoint_id = $2
             AND status IN ('sent', 'failed', 'cancelled')
           RETURNING notification_id, status""",
        notification_id,
        endpoint_id,
        now,
    )
    if row is not None:
        await conn.execute("SELECT pg_notify($1, '')", DUE_CHANNEL)
        return row
    return await conn.fetchrow(
        "SELECT notification_id, status FROM deliveries WHERE notification_id = $1 "
        "AND endpoint_id = $2",
        notification_id,
        endpoint_id,
    )


async def source_is_erased(conn: Conn, notification_id: UUID, mark: str) -> bool:
    return bool(
        await conn.fetchval(
            """SELECT s.data ? $2 FROM deliveries d
               JOIN source_events s ON s.event_id = d.source_event_id
               WHERE d.notification_id = $1""",
            notification_id,
            mark,
        )
    )
