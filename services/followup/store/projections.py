"""The referrals and cases follow-up keeps, projected from the referrals and cases
topics: enough to route a timer's event and to compute the report without asking
another service."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from contracts.codes import ClosureOutcome, RiskLevel
from contracts.events import ReferralEventV1
from services.followup.domain import OPEN_STATES
from services.kit.db import Conn

MILESTONES = (
    "sent_at",
    "acknowledge_due_at",
    "acknowledged_at",
    "decided_at",
    "service_started_at",
    "closed_at",
    "finished_at",
)
_OPEN = [s.value for s in OPEN_STATES]


async def record_referral_event(
    conn: Conn,
    ev: ReferralEventV1,
    milestones: Mapping[str, datetime],
    outcome: ClosureOutcome | None = None,
) -> bool:
    """Apply one referral event to the projection; True when it is the newest version
    seen (it then also sets the state). Milestones are facts and are kept whatever the
    order: the earliest time wins. An older event that brings no earlier milestone
    leaves the row untouched (updated_at included)."""
    unknown = set(milestones) - set(MILESTONES)
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
    changes: list[str] = []  # for an older event: what would make the update a change
    value: Any
    args: list[Any] = [ev.referral_id]
    for name, value in milestones.items():
        args.append(value)
        sets.append(f"{name} = LEAST({name}, ${len(args)})")  # LEAST ignores NULL
        changes.append(f"{name} IS DISTINCT FROM LEAST({name}, ${len(args)})")
    if outcome is not None:
        args.append(outcome)
        sets.append(f"outcome = COALESCE(outcome, ${len(args)})")
        changes.append("outcome IS NULL")
    if is_latest:
        for name, value in fields.items():
            args.append(value)
            sets.append(f"{name} = ${len(args)}")
        changes = []  # the version moves: always a change
    elif not changes:
        return False
    condition = f" AND ({' OR '.join(changes)})" if changes else ""
    await conn.execute(
        f"UPDATE referrals SET {', '.join(sets)}, updated_at = now() "
        f"WHERE referral_id = $1{condition}",
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
    risk_level: RiskLevel,
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
