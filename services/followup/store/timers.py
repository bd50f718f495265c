"""The timers table: referral deadlines (escalating level by level), periodic case
reviews and follow-up checks, each fired once by the timer loop."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

import asyncpg

from contracts.codes import DeadlineKind
from services.kit.db import Conn


class TimerKind(StrEnum):
    """What a timer is for (stored as `timers.kind`)."""

    DEADLINE = "deadline"  # a referral deadline, escalating level by level
    FOLLOWUP = "followup"  # a follow-up check falling due
    REVIEW = "review"  # the periodic review of a case with open referrals


class TimerStatus(StrEnum):
    """Where a timer stands (stored as `timers.status`)."""

    PENDING = "pending"  # fires at fire_at
    ESCALATED = "escalated"  # a deadline past the top of its ladder
    FINISHED = "finished"  # satisfied, fired for good, or no longer needed


async def start_deadline(
    conn: Conn,
    *,
    case_id: UUID,
    referral_id: UUID,
    kind: DeadlineKind,
    started_at: datetime,
    due_at: datetime,
) -> bool:
    """False when this deadline already exists (running or finished): never restarted."""
    inserted = await conn.fetchval(
        """INSERT INTO timers (timer_id, kind, case_id, referral_id, deadline, started_at,
                               due_at, fire_at)
           VALUES ($1, 'deadline', $2, $3, $4, $5, $6, $6)
           ON CONFLICT (referral_id, deadline) WHERE kind = 'deadline' DO NOTHING
           RETURNING true""",
        uuid.uuid4(),
        case_id,
        referral_id,
        kind.value,
        started_at,
        due_at,
    )
    return bool(inserted)


async def finish_deadlines(
    conn: Conn, referral_id: UUID, kinds: Sequence[DeadlineKind], finished_by: str
) -> int:
    result: str = await conn.execute(
        """UPDATE timers SET status = 'finished', finished_by = $3, updated_at = now()
           WHERE kind = 'deadline' AND referral_id = $1 AND deadline = ANY($2::text[])
             AND status <> 'finished'""",
        referral_id,
        [k.value for k in kinds],
        finished_by,
    )
    return int(result.split()[-1])


async def ensure_review(conn: Conn, case_id: UUID, *, anchor: datetime, fire_at: datetime) -> None:
    """A running periodic review for the case (restarted when a new referral opens after
    every earlier one had closed)."""
    await conn.execute(
        """INSERT INTO timers (timer_id, kind, case_id, started_at, due_at, fire_at)
           VALUES ($1, 'review', $2, $3, $4, $4)
           ON CONFLICT (case_id) WHERE kind = 'review' DO UPDATE
               SET status = 'pending', started_at = EXCLUDED.started_at,
                   due_at = EXCLUDED.due_at, fire_at = EXCLUDED.fire_at, finished_by = NULL,
                   updated_at = now()
               WHERE timers.status = 'finished'""",
        uuid.uuid4(),
        case_id,
        anchor,
        fire_at,
    )


async def finish_review(conn: Conn, case_id: UUID, finished_by: str) -> None:
    await conn.execute(
        """UPDATE timers SET status = 'finished', finished_by = $2, updated_at = now()
           WHERE kind = 'review' AND case_id = $1 AND status <> 'finished'""",
        case_id,
        finished_by,
    )


_CLAIM = """
SELECT t.timer_id, t.kind, t.case_id, t.referral_id, t.deadline, t.followup_id,
       t.started_at, t.due_at, t.fire_at, t.level,
       r.reference, r.state, r.version, r.from_agency_id, r.to_agency_id, r.service_id,
       r.service_type, r.urgency, r.case_country, r.case_region, r.service_country,
       r.cross_border,
       f.reference AS f_reference, f.referral_id AS f_referral_id, f.kind AS f_kind,
       f.agency_id AS f_agency_id, f.caseworker_id AS f_caseworker_id,
       f.risk_level AS f_risk_level, f.due_at AS f_due_at, f.status AS f_status,
       c.caseworker_id AS c_caseworker_id, c.registering_agency_id AS c_agency_id
FROM timers t
LEFT JOIN referrals r ON r.referral_id = t.referral_id
LEFT JOIN followups f ON f.followup_id = t.followup_id
LEFT JOIN cases c ON c.case_id = t.case_id
WHERE t.status = 'pending' AND t.fire_at <= $1
ORDER BY t.fire_at
LIMIT $2
FOR UPDATE OF t SKIP LOCKED
"""


async def claim_due_timers(conn: Conn, now: datetime, limit: int) -> list[asyncpg.Record]:
    """Due timers, locked for this transaction; rows another replica holds are skipped."""
    return list(await conn.fetch(_CLAIM, now, limit))


@dataclass(frozen=True)
class TimerUpdate:
    """A fired timer's next state."""

    timer_id: UUID
    status: TimerStatus
    level: int
    fire_at: datetime
    finished_by: str | None = None


async def apply_timer_updates(conn: Conn, updates: Sequence[TimerUpdate]) -> None:
    if not updates:
        return
    await conn.execute(
        """UPDATE timers t SET status = u.status, level = u.level, fire_at = u.fire_at,
                  finished_by = u.finished_by, fired_count = t.fired_count + 1,
                  updated_at = now()
           FROM unnest($1::uuid[], $2::text[], $3::int[], $4::timestamptz[], $5::text[])
                AS u(timer_id, status, level, fire_at, finished_by)
           WHERE t.timer_id = u.timer_id""",
        [u.timer_id for u in updates],
        [u.status for u in updates],
        [u.level for u in updates],
        [u.fire_at for u in updates],
        [u.finished_by for u in updates],
    )
