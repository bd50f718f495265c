"""The `erasures` table (one row per erased case, also one never seen here) and the
SQL that removes what identifies a person from a case's rows: the case profile
(case.created's quasi-identifiers) and the free text typed about it (the reason of
a best-interest decision). Referral rows, states, codes and the disclosure audit
stay."""

from __future__ import annotations

from uuid import UUID

from services.kit.db import Conn


def _count(status: str) -> int:
    return int(status.split()[-1])


async def scrub_case(conn: Conn, case_id: UUID) -> dict[str, int]:
    """Empty the case's profile and drop the reason typed into its referrals'
    best-interest decisions (who decided and when stay: the audit). How many rows
    each changed."""
    profile = await conn.execute(
        "UPDATE cases SET profile = '{}'::jsonb WHERE case_id = $1 AND profile <> '{}'::jsonb",
        case_id,
    )
    reasons = await conn.execute(
        """UPDATE referrals SET best_interest = best_interest - 'reason'
           WHERE case_id = $1 AND best_interest ? 'reason'""",
        case_id,
    )
    return {"profile": _count(profile), "best_interest_reasons": _count(reasons)}
