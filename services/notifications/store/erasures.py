"""The `erasures` table (one row per erased case, also one never seen here) and the
SQL that removes what notifications holds about an erased case: the content of the
events that caused its notifications (`source_events.data`, reduced to the case id
and reference the delivery log and provider reports still need, and the content
hash derived from it), the events parked until case.created, and the deliveries not
yet attempted (cancelled, error_code `case_erased`), partner webhooks held for a
disabled endpoint included. Delivery rows stay: the log of who was told what kind of
event, on which channel, when and with what outcome."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from services.kit.db import Conn

# What a scrubbed source event keeps (`ERASED_MARK` set to true).
ERASED_MARK = "erased"


def _count(status: str) -> int:
    return int(status.split()[-1])


async def remove_case_data(conn: Conn, case_id: UUID, now: datetime) -> dict[str, int]:
    """How many rows each step changed. A delivery being sent (leased) finishes: it
    is with the provider already; should it come back for a retry, the sender finds
    the content gone and fails it for good (`case_erased`)."""
    cancelled = await conn.execute(
        """UPDATE deliveries SET status = 'cancelled', error_code = 'case_erased',
                  updated_at = $2
           WHERE case_id = $1 AND status IN ('pending', 'held')""",
        case_id,
        now,
    )
    parked = await conn.execute("DELETE FROM awaiting_case WHERE case_id = $1", case_id)
    scrubbed = await conn.execute(
        """UPDATE source_events
           SET data = jsonb_build_object('case_id', data -> 'case_id',
                                         'reference', data -> 'reference', $2::text, true),
               content_key = NULL
           WHERE case_id = $1 AND NOT data ? $2::text""",
        case_id,
        ERASED_MARK,
    )
    return {
        "deliveries_cancelled": _count(cancelled),
        "parked_events": _count(parked),
        "source_events_scrubbed": _count(scrubbed),
    }
