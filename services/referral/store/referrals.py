"""Referral's SQL. Every function takes the caller's connection, so the caller owns
the transaction. Writers about a case lock its `cases` row first (`lock_case`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from uuid import UUID

import asyncpg

from contracts.codes import ReferralState, RiskLevel, ServiceType
from contracts.events import CaseCreatedV1
from services.kit.db import Conn
from services.referral.domain import ReferralFacts


@asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection, typed as the connection it proxies."""
    async with pool.acquire() as conn:
        yield cast(asyncpg.Connection, conn)


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    async with pool.acquire() as conn, conn.transaction():
        yield cast(asyncpg.Connection, conn)


@dataclass(frozen=True)
class StoredCase:
    case_id: UUID
    reference: str
    registering_agency_id: str
    profile: dict[str, Any]
    consent_withdrawn_at: datetime | None

    @property
    def event(self) -> CaseCreatedV1:
        return CaseCreatedV1.model_validate(self.profile)


def _case(row: asyncpg.Record) -> StoredCase:
    return StoredCase(
        case_id=row["case_id"],
        reference=row["reference"],
        registering_agency_id=row["registering_agency_id"],
        profile=row["profile"],
        consent_withdrawn_at=row["consent_withdrawn_at"],
    )


@dataclass(frozen=True)
class StoredReferral:
    facts: ReferralFacts
    state: ReferralState
    version: int
    routing_rule: str | None
    mandatory: bool
    respond_by: datetime | None
    rejection_reason: str | None
    closure_outcome: str | None
    cancellation_reason: str | None
    best_interest: dict[str, Any] | None
    created_at: datetime
    sent_at: datetime | None
    updated_at: datetime

    @property
    def referral_id(self) -> UUID:
        return self.facts.referral_id

    @property
    def case_id(self) -> UUID:
        return self.facts.case_id


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
        rejection_reason=row["rejection_reason"],
        closure_outcome=row["closure_outcome"],
        cancellation_reason=row["cancellation_reason"],
        best_interest=row["best_interest"],
        created_at=row["created_at"],
        sent_at=row["sent_at"],
        updated_at=row["updated_at"],
    )


# --- cases ------------------------------------------------------------------------------


async def insert_case(conn: Conn, event: CaseCreatedV1, routed_at: datetime) -> bool:
    """False when the case is already known: it was routed before."""
    inserted = await conn.fetchval(
        """INSERT INTO cases (case_id, reference, registering_agency_id, country, region,
                              profile, routed_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (case_id) DO NOTHING RETURNING true""",
        event.case_id,
        event.reference,
        event.registering_agency_id,
        event.country,
        event.region,
        event.model_dump(mode="json"),
        routed_at,
    )
    return bool(inserted)


async def lock_case(conn: Conn, case_id: UUID) -> StoredCase | None:
    row = await conn.fetchrow("SELECT * FROM cases WHERE case_id = $1 FOR UPDATE", case_id)
    return _case(row) if row else None


async def get_case(conn: Conn, case_id: UUID) -> StoredCase | None:
    row = await conn.fetchrow("SELECT * FROM cases WHERE case_id = $1", case_id)
    return _case(row) if row else None


async def mark_consent_withdrawn(conn: Conn, case_id: UUID, at: datetime) -> None:
    await conn.execute(
        """UPDATE cases SET consent_withdrawn_at = $2
           WHERE case_id = $1 AND consent_withdrawn_at IS NULL""",
        case_id,
        at,
    )


# --- referrals ----------------------------------------------------------------------------

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
    written) when the case is already known: it was routed before. The inserted case
    row stays locked until commit: it is the per-case lock."""
    rows = [r.row() for r in referrals]
    columns: list[Any] = list(zip(*rows, strict=True)) if rows else [() for _ in _UNNEST_TYPES]
    unnest = ", ".join(f"${i + 8}::{t}[]" for i, t in enumerate(_UNNEST_TYPES))
    inserted = await conn.fetchval(
        f"""WITH new_case AS (
                INSERT INTO cases (case_id, reference, registering_agency_id, country, region,
                                   profile, routed_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7)
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
    rejection_reason: str | None = None,
    closure_outcome: str | None = None,
    cancellation_reason: str | None = None,
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
        rejection_reason,
        closure_outcome,
        cancellation_reason,
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
    direction: str | None,
    states: list[str],
    case_id: UUID | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> Page:
    """Referrals addressed to (once sent) or sent by `agency_id`, oldest first."""
    incoming = "(to_agency_id = $1 AND sent_at IS NOT NULL)"
    outgoing = "from_agency_id = $1"
    both = f"({incoming} OR {outgoing})"
    where = {"incoming": incoming, "outgoing": outgoing}.get(direction or "", both)
    sql = f"""SELECT * FROM referrals WHERE {where}
              AND (cardinality($2::text[]) = 0 OR state = ANY($2::text[]))
              AND ($3::uuid IS NULL OR case_id = $3)
              AND ($4::timestamptz IS NULL OR (created_at, referral_id) > ($4, $5::uuid))
              ORDER BY created_at, referral_id LIMIT $6"""
    rows = await conn.fetch(
        sql,
        agency_id,
        states,
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


# --- directory ----------------------------------------------------------------------------


async def directory_version(conn: Conn) -> int:
    version: int = await conn.fetchval("SELECT version FROM directory_version")
    return version


async def directory_documents(conn: Conn) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT document FROM directory_organizations ORDER BY position, organization_id"
    )
    return [r["document"] for r in rows]


async def seed_directory(conn: Conn, documents: list[dict[str, Any]]) -> int:
    """Add the seed's organisations the database does not have yet; returns how many.
    Existing ones are left alone: admin edits survive a restart."""
    added = 0
    for position, doc in enumerate(documents):
        inserted = await conn.fetchval(
            """INSERT INTO directory_organizations (organization_id, position, document)
               VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING true""",
            doc["id"],
            position,
            doc,
        )
        added += bool(inserted)
    if added:
        await bump_directory_version(conn)
    return added


async def upsert_organization(conn: Conn, document: dict[str, Any]) -> bool:
    """True when the organisation is new."""
    created = await conn.fetchval(
        """INSERT INTO directory_organizations (organization_id, position, document)
           VALUES ($1, (SELECT COALESCE(max(position), 0) + 1 FROM directory_organizations), $2)
           ON CONFLICT (organization_id) DO UPDATE SET document = $2, updated_at = now()
           RETURNING (xmax = 0)""",
        document["id"],
        document,
    )
    await bump_directory_version(conn)
    return bool(created)


async def delete_organization(conn: Conn, organization_id: str) -> bool:
    deleted = await conn.fetchval(
        "DELETE FROM directory_organizations WHERE organization_id = $1 RETURNING true",
        organization_id,
    )
    if deleted:
        await bump_directory_version(conn)
    return bool(deleted)


async def bump_directory_version(conn: Conn) -> None:
    await conn.execute("UPDATE directory_version SET version = version + 1")
