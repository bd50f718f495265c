"""The `referrals` table (one row per referral, its state and version) and the
append-only `disclosures` audit. A referral row changes only under its case's lock
(`lock_case`), so `save_transition` never loses a race."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar
from uuid import UUID

import asyncpg

from contracts.codes import (
    CancellationReason,
    ClosureOutcome,
    ReferralState,
    RejectionReason,
    RiskLevel,
    ServiceType,
)
from contracts.events import CaseCreatedV1
from services.kit.db import Conn
from services.referral.domain.lifecycle import Party, ReferralFacts


@dataclass(frozen=True)
class StoredReferral:
    facts: ReferralFacts
    state: ReferralState
    version: int
    routing_rule: str | None
    mandatory: bool
    respond_by: datetime | None
    rejection_reason: RejectionReason | None
    closure_outcome: ClosureOutcome | None
    cancellation_reason: CancellationReason | None
    best_interest: dict[str, Any] | None  # the documented decision (who, when, why)
    created_at: datetime
    sent_at: datetime | None  # None while proposed: the receiver cannot see it yet
    updated_at: datetime

    @property
    def referral_id(self) -> UUID:
        return self.facts.referral_id

    @property
    def case_id(self) -> UUID:
        return self.facts.case_id

    def party_of(self, agency_id: str) -> Party | None:
        """The agency's part in this referral, or None (see `ReferralFacts.party_of`)."""
        return self.facts.party_of(agency_id, sent=self.sent_at is not None)


E = TypeVar("E", bound=StrEnum)


def _optional(kind: type[E], value: str | None) -> E | None:
    return None if value is None else kind(value)


def _value(member: StrEnum | None) -> str | None:
    return None if member is None else member.value


def _referral(row: asyncpg.Record) -> StoredReferral:
    facts = ReferralFacts(
        referral_id=row["referral_id"],
        case_id=row["case_id"],
        reference=row["reference"],
        from_agency_id=row["from_agency_id"],
        to_agency_id=row["to_agency_id"],
        service_id=row["service_id"],
        service_type=ServiceType(row["service_type"]),
        urgency=RiskLevel(row["urgency"]),
        case_country=row["case_country"],
        case_region=row["case_region"],
        service_country=row["service_country"],
    )
    return StoredReferral(
        facts=facts,
        state=ReferralState(row["state"]),
        version=row["version"],
        routing_rule=row["routing_rule"],
        mandatory=row["mandatory"],
        respond_by=row["respond_by"],
        rejection_reason=_optional(RejectionReason, row["rejection_reason"]),
        closure_outcome=_optional(ClosureOutcome, row["closure_outcome"]),
        cancellation_reason=_optional(CancellationReason, row["cancellation_reason"]),
        best_interest=row["best_interest"],
        created_at=row["created_at"],
        sent_at=row["sent_at"],
        updated_at=row["updated_at"],
    )


_INSERT_REFERRAL = """
INSERT INTO referrals (referral_id, case_id, reference, from_agency_id, to_agency_id, service_id,
                       service_type, urgency, case_country, case_region, service_country, state,
                       version, routing_rule, mandatory, respond_by, best_interest, created_at,
                       sent_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1, $13, $14, $15, $16, $17, $18, $17)
"""


@dataclass(frozen=True)
class NewReferral:
    facts: ReferralFacts
    state: ReferralState
    routing_rule: str | None
    mandatory: bool
    respond_by: datetime | None
    best_interest: dict[str, Any] | None
    created_at: datetime

    def row(self) -> tuple[Any, ...]:
        f = self.facts
        sent_at = self.created_at if self.state is ReferralState.SENT else None
        return (
            f.referral_id,
            f.case_id,
            f.reference,
            f.from_agency_id,
            f.to_agency_id,
            f.service_id,
            f.service_type.value,
            f.urgency.value,
            f.case_country,
            f.case_region,
            f.service_country,
            self.state.value,
            self.routing_rule,
            self.mandatory,
            self.respond_by,
            self.best_interest,
            self.created_at,
            sent_at,
        )


async def insert_referrals(conn: Conn, referrals: list[NewReferral]) -> None:
    if referrals:
        await conn.executemany(_INSERT_REFERRAL, [r.row() for r in referrals])


_REFERRAL_COLUMNS = """referral_id, case_id, reference, from_agency_id, to_agency_id, service_id,
    service_type, urgency, case_country, case_region, service_country, state, routing_rule,
    mandatory, respond_by, best_interest, created_at, sent_at"""
_UNNEST_TYPES = (
    "uuid",
    "uuid",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "bool",
    "timestamptz",
    "jsonb",
    "timestamptz",
    "timestamptz",
)


async def insert_routed_case(
    conn: Conn,
    event_data: dict[str, Any],
    event: CaseCreatedV1,
    referrals: list[NewReferral],
    routed_at: datetime,
) -> bool:
    """Insert a new case and its routed referrals in one round trip; False (and nothing
    written) when the case is already known (it was routed before) or was erased (a
    replay must not bring it back). The inserted case row stays locked until commit:
    it is the per-case lock."""
    rows = [r.row() for r in referrals]
    columns: list[Any] = list(zip(*rows, strict=True)) if rows else [() for _ in _UNNEST_TYPES]
    unnest = ", ".join(f"${i + 8}::{t}[]" for i, t in enumerate(_UNNEST_TYPES))
    inserted = await conn.fetchval(
        f"""WITH new_case AS (
                INSERT INTO cases (case_id, reference, registering_agency_id, country, region,
                                   profile, routed_at)
                SELECT $1::uuid, $2::text, $3::text, $4::text, $5::text, $6::jsonb,
                       $7::timestamptz
                WHERE NOT EXISTS (SELECT 1 FROM erasures WHERE case_id = $1::uuid)
                ON CONFLICT (case_id) DO NOTHING RETURNING case_id),
            new_referrals AS (
                INSERT INTO referrals ({_REFERRAL_COLUMNS}, version, updated_at)
                SELECT r.*, 1, $7 FROM unnest({unnest}) AS r
                WHERE EXISTS (SELECT 1 FROM new_case))
            SELECT count(*) > 0 FROM new_case""",
        event.case_id,
        event.reference,
        event.registering_agency_id,
        event.country,
        event.region,
        event_data,
        routed_at,
        *[list(c) for c in columns],
    )
    return bool(inserted)


async def has_open_referral(conn: Conn, case_id: UUID, service_id: str) -> bool:
    found = await conn.fetchval(
        """SELECT true FROM referrals WHERE case_id = $1 AND service_id = $2
           AND state IN ('proposed', 'sent', 'acknowledged', 'accepted', 'in_progress')""",
        case_id,
        service_id,
    )
    return bool(found)


async def get_referral(conn: Conn, referral_id: UUID) -> StoredReferral | None:
    row = await conn.fetchrow("SELECT * FROM referrals WHERE referral_id = $1", referral_id)
    return _referral(row) if row else None


async def open_referrals_of_case(conn: Conn, case_id: UUID) -> list[StoredReferral]:
    rows = await conn.fetch(
        """SELECT * FROM referrals WHERE case_id = $1
           AND state IN ('proposed', 'sent', 'acknowledged', 'accepted', 'in_progress')
           ORDER BY created_at, referral_id""",
        case_id,
    )
    return [_referral(r) for r in rows]


async def save_transition(
    conn: Conn,
    referral: StoredReferral,
    *,
    state: ReferralState,
    at: datetime,
    respond_by: datetime | None = None,
    rejection_reason: RejectionReason | None = None,
    closure_outcome: ClosureOutcome | None = None,
    cancellation_reason: CancellationReason | None = None,
    best_interest: dict[str, Any] | None = None,
) -> StoredReferral:
    row = await conn.fetchrow(
        """UPDATE referrals SET
               state = $2, version = version + 1, updated_at = $3,
               sent_at = CASE WHEN $2 = 'sent' THEN $3 ELSE sent_at END,
               respond_by = COALESCE($4, respond_by),
               rejection_reason = COALESCE($5, rejection_reason),
               closure_outcome = COALESCE($6, closure_outcome),
               cancellation_reason = COALESCE($7, cancellation_reason),
               best_interest = COALESCE($8, best_interest)
           WHERE referral_id = $1 AND version = $9
           RETURNING *""",
        referral.referral_id,
        state.value,
        at,
        respond_by,
        _value(rejection_reason),
        _value(closure_outcome),
        _value(cancellation_reason),
        best_interest,
        referral.version,
    )
    if row is None:  # callers hold the case lock, so this would be a bug, not a race
        raise RuntimeError("referral changed under the case lock")
    return _referral(row)


@dataclass(frozen=True)
class Page:
    items: list[StoredReferral]
    has_more: bool


async def list_referrals(
    conn: Conn,
    *,
    agency_id: str,
    party: Party | None,
    states: list[ReferralState],
    case_id: UUID | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> Page:
    """Referrals addressed to (once sent) or sent by `agency_id`, oldest first; only
    those where it is `party` when one is given."""
    incoming = "(to_agency_id = $1 AND sent_at IS NOT NULL)"
    outgoing = "from_agency_id = $1"
    if party is Party.RECEIVER:
        where = incoming
    elif party is Party.SENDER:
        where = outgoing
    else:
        where = f"({incoming} OR {outgoing})"
    sql = f"""SELECT * FROM referrals WHERE {where}
              AND (cardinality($2::text[]) = 0 OR state = ANY($2::text[]))
              AND ($3::uuid IS NULL OR case_id = $3)
              AND ($4::timestamptz IS NULL OR (created_at, referral_id) > ($4, $5::uuid))
              ORDER BY created_at, referral_id LIMIT $6"""
    rows = await conn.fetch(
        sql,
        agency_id,
        [s.value for s in states],
        case_id,
        after[0] if after else None,
        after[1] if after else None,
        limit + 1,
    )
    return Page([_referral(r) for r in rows[:limit]], has_more=len(rows) > limit)


async def record_disclosure(
    conn: Conn,
    *,
    referral_id: UUID,
    case_id: UUID,
    agency_id: str,
    fields: list[str],
    purpose: str,
    at: datetime,
) -> None:
    await conn.execute(
        """INSERT INTO disclosures (referral_id, case_id, agency_id, fields, purpose, disclosed_at)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        referral_id,
        case_id,
        agency_id,
        fields,
        purpose,
        at,
    )
