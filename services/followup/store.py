"""Follow-up's SQL. Every function takes the caller's connection, so the caller owns
the transaction."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from contracts.codes import DeadlineKind, RiskLevel
from contracts.envelope import CloudEvent
from contracts.events import ReferralEventV1
from services.followup.domain import OPEN_STATES, ReferralFacts
from services.kit import outbox

# A plain connection or one borrowed from the pool: every function takes either.
Conn = asyncpg.Connection | PoolConnectionProxy

_MILESTONES = (
    "sent_at",
    "acknowledge_due_at",
    "acknowledged_at",
    "decided_at",
    "service_started_at",
    "closed_at",
    "finished_at",
)
_OPEN = [s.value for s in OPEN_STATES]


# --- referrals and cases (projections of the topics) -----------------------------------


async def record_referral_event(
    conn: Conn,
    ev: ReferralEventV1,
    milestones: Mapping[str, datetime],
    outcome: str | None = None,
) -> bool:
    """Apply one referral event to the projection; True when it is the newest version
    seen (it then also sets the state). Milestones are facts and are kept whatever the
    order: the earliest time wins."""
    unknown = set(milestones) - set(_MILESTONES)
    if unknown:
        raise ValueError(f"unknown milestones {sorted(unknown)}")
    # Row lock: events of one referral (and the timer loop) apply one at a time.
    stored = await conn.fetchval(
        "SELECT version FROM referrals WHERE referral_id = $1 FOR UPDATE", ev.referral_id
    )
    is_latest = stored is None or stored < ev.version
    fields = dict(
        case_id=ev.case_id,
        reference=ev.reference,
        state=ev.state.value,
        version=ev.version,
        from_agency_id=ev.from_agency_id,
        to_agency_id=ev.to_agency_id,
        service_id=ev.service_id,
        service_type=ev.service_type.value,
        urgency=ev.urgency.value,
        case_country=ev.case_country,
        case_region=ev.case_region,
        service_country=ev.service_country,
        cross_border=ev.cross_border,
    )
    if stored is None:
        cols = [*fields, *milestones, "outcome"]
        values = [*fields.values(), *milestones.values(), outcome]
        placeholders = ", ".join(f"${i}" for i in range(2, len(values) + 2))
        await conn.execute(
            f"INSERT INTO referrals (referral_id, {', '.join(cols)}) VALUES ($1, {placeholders})",
            ev.referral_id,
            *values,
        )
        return True
    sets: list[str] = []
    value: Any
    args: list[Any] = [ev.referral_id]
    for name, value in milestones.items():
        args.append(value)
        sets.append(f"{name} = LEAST({name}, ${len(args)})")  # LEAST ignores NULL
    if outcome is not None:
        args.append(outcome)
        sets.append(f"outcome = COALESCE(outcome, ${len(args)})")
    if is_latest:
        for name, value in fields.items():
            args.append(value)
            sets.append(f"{name} = ${len(args)}")
    if sets:
        await conn.execute(
            f"UPDATE referrals SET {', '.join(sets)}, updated_at = now() WHERE referral_id = $1",
            *args,
        )
    return is_latest


async def upsert_case(
    conn: Conn,
    *,
    case_id: UUID,
    reference: str,
    registering_agency_id: str,
    region: str,
    risk_level: str,
    caseworker_id: str,
) -> None:
    await conn.execute(
        """INSERT INTO cases (case_id, reference, registering_agency_id, region, risk_level,
                              caseworker_id)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (case_id) DO UPDATE SET risk_level = EXCLUDED.risk_level,
                                               caseworker_id = EXCLUDED.caseworker_id""",
        case_id,
        reference,
        registering_agency_id,
        region,
        risk_level,
        caseworker_id,
    )


@dataclass(frozen=True)
class CaseInfo:
    case_id: UUID
    reference: str
    registering_agency_id: str
    risk_level: RiskLevel
    caseworker_id: str


async def get_case(conn: Conn, case_id: UUID) -> CaseInfo | None:
    row = await conn.fetchrow("SELECT * FROM cases WHERE case_id = $1", case_id)
    if row is None:
        return None
    return CaseInfo(
        row["case_id"],
        row["reference"],
        row["registering_agency_id"],
        RiskLevel(row["risk_level"]),
        row["caseworker_id"],
    )


@dataclass(frozen=True)
class OpenReferrals:
    count: int
    first_sent_at: datetime | None
    highest_urgency: RiskLevel | None
    sender: str | None  # the agency that sent the earliest open referral
    reference: str | None


async def open_referrals(conn: Conn, case_id: UUID) -> OpenReferrals:
    rows = await conn.fetch(
        """SELECT urgency, sent_at, from_agency_id, reference FROM referrals
           WHERE case_id = $1 AND state = ANY($2::text[]) ORDER BY sent_at NULLS LAST""",
        case_id,
        _OPEN,
    )
    if not rows:
        return OpenReferrals(0, None, None, None, None)
    return OpenReferrals(
        count=len(rows),
        first_sent_at=rows[0]["sent_at"],
        highest_urgency=RiskLevel.highest(*(RiskLevel(r["urgency"]) for r in rows)),
        sender=rows[0]["from_agency_id"],
        reference=rows[0]["reference"],
    )


# --- timers ----------------------------------------------------------------------------


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
    timer_id: UUID
    status: str  # pending | escalated | finished
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


# --- follow-ups ------------------------------------------------------------------------


@dataclass(frozen=True)
class Followup:
    followup_id: UUID
    kind: str
    case_id: UUID
    reference: str
    referral_id: UUID | None
    agency_id: str
    caseworker_id: str | None
    risk_level: str
    due_at: datetime
    status: str
    child_reached: bool | None
    service_received: bool | None
    current_risk: str | None
    reopened_as: UUID | None
    reopened_from: UUID | None
    completed_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Followup:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


async def create_followup(
    conn: Conn,
    *,
    origin: str,
    kind: str,
    case_id: UUID,
    reference: str,
    referral_id: UUID | None,
    agency_id: str,
    caseworker_id: str | None,
    risk_level: str,
    due_at: datetime,
    status: str = "scheduled",
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
    if status == "scheduled":
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
    conn: Conn, agency_id: str, status: str | None, limit: int
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
    current_risk: str,
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


# --- reports ---------------------------------------------------------------------------


async def report_facts(
    conn: Conn,
    *,
    agency_id: str | None,
    period_from: datetime | None,
    period_to: datetime | None,
    service_type: str | None,
    region: str | None,
    now: datetime,
) -> list[ReferralFacts]:
    rows = await conn.fetch(
        """SELECT r.referral_id, r.from_agency_id, r.to_agency_id, r.service_type,
                  r.case_region, r.urgency, r.sent_at, r.acknowledge_due_at, r.acknowledged_at,
                  r.closed_at, r.outcome,
                  EXISTS (SELECT 1 FROM timers t
                          WHERE t.kind = 'deadline' AND t.referral_id = r.referral_id
                            AND t.status <> 'finished' AND t.due_at <= $6) AS overdue_now
           FROM referrals r
           WHERE r.sent_at IS NOT NULL
             AND ($1::text IS NULL OR r.from_agency_id = $1 OR r.to_agency_id = $1)
             AND ($2::timestamptz IS NULL OR r.sent_at >= $2)
             AND ($3::timestamptz IS NULL OR r.sent_at < $3)
             AND ($4::text IS NULL OR r.service_type = $4)
             AND ($5::text IS NULL OR r.case_region = $5)""",
        agency_id,
        period_from,
        period_to,
        service_type,
        region,
        now,
    )
    return [
        ReferralFacts(
            referral_id=r["referral_id"],
            from_agency_id=r["from_agency_id"],
            to_agency_id=r["to_agency_id"],
            service_type=r["service_type"],
            region=r["case_region"],
            urgency=r["urgency"],
            sent_at=r["sent_at"],
            acknowledge_due_at=r["acknowledge_due_at"],
            acknowledged_at=r["acknowledged_at"],
            closed_at=r["closed_at"],
            outcome=r["outcome"],
            overdue_now=r["overdue_now"],
        )
        for r in rows
    ]


async def enqueue(conn: Conn, topic: str, *events: CloudEvent) -> None:
    """The kit outbox, from a pooled connection too (the kit types only asyncpg.Connection)."""
    await outbox.enqueue(conn, topic, *events)  # type: ignore[arg-type]
