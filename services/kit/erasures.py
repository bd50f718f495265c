"""What a consuming service keeps of each `case.erased` it applied: one row per case
in its `erasures` table (created by the service's own migration, with the same
columns everywhere: case_id, reference, reason, erased_at, applied_at, removed),
written in the transaction that removed what identified a person, also for a case
the service never saw, so that a replayed or late event cannot bring the case back.
`removed` counts what went, per kind (no content): the operator's proof."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from uuid import UUID

from contracts.events import CaseErasedV1
from services.kit.db import Conn
from services.kit.logging import get_logger

log = get_logger(__name__)


async def is_erased(conn: Conn, case_id: UUID) -> bool:
    return bool(await conn.fetchval("SELECT true FROM erasures WHERE case_id = $1", case_id))


async def record_erasure(
    conn: Conn,
    *,
    case_id: UUID,
    reference: str,
    reason: str,
    erased_at: datetime,
    applied_at: datetime,
    removed: dict[str, int],
) -> bool:
    """False (and nothing written) when the case was erased here before."""
    inserted = await conn.fetchval(
        """INSERT INTO erasures (case_id, reference, reason, erased_at, applied_at, removed)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (case_id) DO NOTHING RETURNING true""",
        case_id,
        reference,
        reason,
        erased_at,
        applied_at,
        removed,
    )
    return bool(inserted)


async def apply_erasure(
    conn: Conn,
    erased: CaseErasedV1,
    *,
    applied_at: datetime,
    remove: Callable[[], Awaitable[dict[str, int]]],
) -> dict[str, int] | None:
    """Apply `case.erased` once, in the caller's transaction: `remove` takes away what
    the service holds that identifies a person (returning counts), then the erasure is
    recorded. None, and nothing done, when the case was erased here before."""
    if await is_erased(conn, erased.case_id):
        log.info("case already erased", case_id=str(erased.case_id))
        return None
    removed = await remove()
    await record_erasure(
        conn,
        case_id=erased.case_id,
        reference=erased.reference,
        reason=erased.reason.value,
        erased_at=erased.erased_at,
        applied_at=applied_at,
        removed=removed,
    )
    log.info("case erased", case_id=str(erased.case_id), **removed)
    return removed
