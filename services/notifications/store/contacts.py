"""SQL for the contacts notifications keeps: caseworkers' contact details cached from
intake, and the last contact directory fetched from the referral service (one row),
so a restart while either is unreachable still knows whom to tell."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from services.kit.db import Conn


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


async def contact_directory(conn: Conn | asyncpg.Pool) -> asyncpg.Record | None:
    """The stored snapshot (version, document, fetched_at), if any."""
    return await conn.fetchrow("SELECT version, document, fetched_at FROM contact_directory")


async def save_contact_directory(
    conn: Conn | asyncpg.Pool, version: int, document: dict[str, Any], now: datetime
) -> None:
    """Replace the snapshot (there is only ever one)."""
    await conn.execute(
        """INSERT INTO contact_directory (singleton, version, document, fetched_at)
           VALUES (TRUE, $1, $2, $3)
           ON CONFLICT (singleton) DO UPDATE
           SET version = EXCLUDED.version, document = EXCLUDED.document,
               fetched_at = EXCLUDED.fetched_at""",
        version,
        document,
        now,
    )
