"""The follow-up checks: created by a closure, a review or a reopening, fallen due
by their timer, completed by the caseworker."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from contracts.codes import FollowupKind, RiskLevel
from services.followup.domain import FollowupStatus
from services.kit.db import Conn


@dataclass(frozen=True)
class Followup:
    followup_id: UUID
    kind: FollowupKind
    case_id: UUID
    reference: str
    referral_id: UUID | None
    agency_id: str
    caseworker_id: str | None
    risk_level: RiskLevel
    due_at: datetime
    status: FollowupStatus
    child_reached: bool | None
    service_received: bool | None
    current_risk: RiskLevel | None
    reopened_as: UUID | None
    reopened_from: UUID | None
    completed_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Followup:
        values = {name: row[name] for name in cls.__dataclass_fields__}
        current_risk = values.pop("current_risk")
        return cls(
            **{
                **values,
                "kind": FollowupKind(values["kind"]),
                "risk_level": RiskLevel(values["risk_level"]),
                "status": FollowupStatus(values["status"]),
            },
            current_risk=None if current_risk is None else RiskLevel(current_risk),
        )


async def create_followup(
    conn: Conn,
    *,
    origin: str,
    kind: FollowupKind,
    case_id: UUID,
    reference: str,
    referral_id: UUID | None,
    agency_id: str,
    caseworker_id: str | None,
    risk_level: RiskLevel,
    due_at: datetime,
    status: FollowupStatus = FollowupStatus.SCHEDULED,
    reopened_from: UUID | None = None,
    followup_id: UUID | None = None,
) -> UUID | None:
    """The new follow-up's id; None when `origin` already created one. A scheduled
    follow-up gets its timer in the same transaction."""
    new_id = followup_id or uuid.uuid4()
    inserted = await conn.fetchval(
        """INSERT INTO followups (followup_id, origin, kind, case_id, reference, referral_id,
                                  agency_id, caseworker_id, risk_level, due_at, status,
                                  reopened_from)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
           ON CONFLICT (origin) DO NOTHING RETURNING true""",
        new_id,
        origin,
        kind,
        case_id,
        reference,
        referral_id,
        agency_id,
        caseworker_id,
        risk_level,
        due_at,
        status,
        reopened_from,
    )
    if not inserted:
        return None
    if status is FollowupStatus.SCHEDULED:
        await conn.execute(
            """INSERT INTO timers (timer_id, kind, case_id, referral_id, followup_id,
                                   started_at, due_at, fire_at)
               VALUES ($1, 'followup', $2, $3, $4, $5, $5, $5)""",
            uuid.uuid4(),
            case_id,
            referral_id,
            new_id,
            due_at,
        )
    return new_id


async def mark_followups_due(conn: Conn, followup_ids: Sequence[UUID]) -> None:
    if followup_ids:
        await conn.execute(
            "UPDATE followups SET status = 'due' WHERE followup_id = ANY($1::uuid[]) "
            "AND status = 'scheduled'",
            list(followup_ids),
        )


async def get_followup(conn: Conn, followup_id: UUID, *, lock: bool = False) -> Followup | None:
    sql = "SELECT * FROM followups WHERE followup_id = $1" + (" FOR UPDATE" if lock else "")
    row = await conn.fetchrow(sql, followup_id)
    return Followup.from_row(row) if row else None


async def list_followups(
    conn: Conn, agency_id: str, status: FollowupStatus | None, limit: int
) -> list[Followup]:
    rows = await conn.fetch(
        """SELECT * FROM followups WHERE agency_id = $1 AND ($2::text IS NULL OR status = $2)
           ORDER BY due_at, followup_id LIMIT $3""",
        agency_id,
        status,
        limit,
    )
    return [Followup.from_row(r) for r in rows]


async def complete_followup(
    conn: Conn,
    followup_id: UUID,
    *,
    child_reached: bool,
    service_received: bool,
    current_risk: RiskLevel,
    completed_at: datetime,
    reopened_as: UUID | None,
) -> None:
    await conn.execute(
        """UPDATE followups SET status = 'completed', child_reached = $2, service_received = $3,
                  current_risk = $4, completed_at = $5, reopened_as = $6
           WHERE followup_id = $1""",
        followup_id,
        child_reached,
        service_received,
        current_risk,
        completed_at,
        reopened_as,
    )
    await conn.execute(
        """UPDATE timers SET status = 'finished', finished_by = 'followup.completed',
                  updated_at = now()
           WHERE kind = 'followup' AND followup_id = $1 AND status <> 'finished'""",
        followup_id,
    )
