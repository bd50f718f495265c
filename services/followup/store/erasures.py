"""The `erasures` table (one row per erased case, also one never seen here) and the
SQL that ends what follow-up keeps running for a case: its timers are finished
(`finished_by` = case.erased), its open follow-up checks cancelled (reason
`erased`), and its case projection (risk, region, caseworker, from case.created)
deleted. The referral projection and completed checks stay: the audit."""

from __future__ import annotations

from uuid import UUID

from services.kit.db import Conn
from services.kit.erasures import is_erased, record_erasure

__all__ = ["end_case", "is_erased", "record_erasure"]

ERASED_BY = "case.erased"


def _count(status: str) -> int:
    return int(status.split()[-1])


async def end_case(conn: Conn, case_id: UUID) -> dict[str, int]:
    """How many rows each step changed. Timers first: a timer the loop holds makes
    this wait for the loop's commit, so a check that firing created is seen next."""
    timers = await conn.execute(
        """UPDATE timers SET status = 'finished', finished_by = $2, updated_at = now()
           WHERE case_id = $1 AND status <> 'finished'""",
        case_id,
        ERASED_BY,
    )
    followups = await conn.execute(
        """UPDATE followups SET status = 'cancelled', cancelled_reason = 'erased'
           WHERE case_id = $1 AND status IN ('scheduled', 'due')""",
        case_id,
    )
    cases = await conn.execute("DELETE FROM cases WHERE case_id = $1", case_id)
    return {
        "timers_finished": _count(timers),
        "followups_cancelled": _count(followups),
        "case_projection": _count(cases),
    }
