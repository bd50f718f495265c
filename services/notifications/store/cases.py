"""SQL for the cases notifications knows (from case.created), the events that caused
notifications (one per content), the newest version seen of each referral, and the
events parked until their case is known."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from services.kit.db import Conn
from services.notifications.domain.recipients import CaseInfo


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
    case_id: UUID | None,
    data: dict[str, Any],
    traceparent: str,
    received_at: datetime,
    content_key: str,
    source: str | None = None,
    occurred_at: datetime | None = None,
) -> bool:
    """False when this event id, or the same content under another id, is known.
    `source` and `occurred_at` are the event's as published (partners receive them)."""
    saved = await conn.fetchval(
        """INSERT INTO source_events (event_id, event_type, case_id, data, traceparent,
                                      received_at, content_key, source, occurred_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING RETURNING true""",
        event_id,
        event_type,
        case_id,
        data,
        traceparent,
        received_at,
        content_key,
        source,
        occurred_at,
    )
    return bool(saved)


async def note_referral_version(conn: Conn, referral_id: UUID, version: int) -> bool:
    """Remember the newest version of a referral; False when `version` is older than
    one already seen (the row is then left alone)."""
    noted = await conn.fetchval(
        """INSERT INTO referral_versions (referral_id, version) VALUES ($1, $2)
           ON CONFLICT (referral_id) DO UPDATE SET version = EXCLUDED.version
           WHERE referral_versions.version <= EXCLUDED.version
           RETURNING true""",
        referral_id,
        version,
    )
    return bool(noted)


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


async def agency_owns_case(conn: Conn, case_id: UUID, agency_id: str) -> bool:
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM cases WHERE case_id = $1 AND agency_id = $2)
               OR EXISTS (SELECT 1 FROM deliveries WHERE case_id = $1 AND owner_agency_id = $2)""",
            case_id,
            agency_id,
        )
    )
