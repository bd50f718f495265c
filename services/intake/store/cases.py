"""Intake's SQL for cases, idempotency keys, disclosures and grants. Every function
takes the caller's connection, so the caller owns the transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from contracts.codes import RiskLevel
from services.intake.domain import ConsentStatus, Grant, GrantEnd
from services.intake.duplicates import CaseRef, Position, PossibleDuplicate
from services.intake.keks import WrappedKey
from services.intake.sealing import Sealed
from services.kit.db import Conn


@dataclass(frozen=True)
class StoredCase:
    case_id: UUID
    reference: str
    agency_id: str
    external_id: str
    risk_level: RiskLevel
    registration: dict[str, Any]  # the plain part: nothing that names the child
    sealed: Sealed | None  # the identifying part; None once erased
    data_key_version: int | None
    possible_duplicate_of: list[UUID]
    consent_status: ConsentStatus
    consent_withdrawn_at: datetime | None
    registered_at: datetime
    version: int
    erased_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> StoredCase:
        return cls(
            case_id=row["case_id"],
            reference=row["reference"],
            agency_id=row["agency_id"],
            external_id=row["external_id"],
            risk_level=RiskLevel(row["risk_level"]),
            registration=row["registration"],
            sealed=row["sealed"],
            data_key_version=row["data_key_version"],
            possible_duplicate_of=list(row["possible_duplicate_of"]),
            consent_status=ConsentStatus(row["consent_status"]),
            consent_withdrawn_at=row["consent_withdrawn_at"],
            registered_at=row["registered_at"],
            version=row["version"],
            erased_at=row["erased_at"],
        )


async def get_case(conn: Conn, case_id: UUID, *, lock: bool = False) -> StoredCase | None:
    sql = "SELECT * FROM cases WHERE case_id = $1" + (" FOR UPDATE" if lock else "")
    row = await conn.fetchrow(sql, case_id)
    return StoredCase.from_row(row) if row else None


async def find_idempotency_key(conn: Conn, agency_id: str, key: str) -> tuple[str, UUID] | None:
    row = await conn.fetchrow(
        "SELECT request_hash, case_id FROM idempotency_keys WHERE agency_id = $1 AND key = $2",
        agency_id,
        key,
    )
    return (row["request_hash"], row["case_id"]) if row else None


async def save_idempotency_key(
    conn: Conn, agency_id: str, key: str, request_hash: str, case_id: UUID
) -> None:
    await conn.execute(
        "INSERT INTO idempotency_keys (agency_id, key, request_hash, case_id) VALUES ($1,$2,$3,$4)",
        agency_id,
        key,
        request_hash,
        case_id,
    )


async def existing_or_reserve_number(
    conn: Conn, agency_id: str, external_id: str, prefix: str
) -> tuple[UUID | None, int | None]:
    """One round trip: the case already registered under this external id, or else the
    next reference number of `prefix` (a statement of its own, so concurrent
    registrations never queue on the counter row; a registration that then fails
    leaves a gap in the sequence, which is harmless)."""
    row = await conn.fetchrow(
        """WITH existing AS (
               SELECT case_id FROM cases WHERE agency_id = $1 AND external_id = $2
           ), reserved AS (
               INSERT INTO reference_counters (prefix, last_value)
               SELECT $3, 1 WHERE NOT EXISTS (SELECT 1 FROM existing)
               ON CONFLICT (prefix) DO UPDATE SET last_value = reference_counters.last_value + 1
               RETURNING last_value
           )
           SELECT (SELECT case_id FROM existing) AS existing_case,
                  (SELECT last_value FROM reserved) AS number""",
        agency_id,
        external_id,
        prefix,
    )
    assert row is not None
    return row["existing_case"], row["number"]


async def insert_case(
    conn: Conn,
    *,
    case_id: UUID,
    reference: str,
    agency_id: str,
    external_id: str,
    country: str,
    region: str,
    risk_level: RiskLevel,
    registration: dict[str, Any],
    sealed: Sealed,
    data_key_version: int,
    wrapped_key: WrappedKey,
    dedup_key: str | None,
    registered_at: datetime,
) -> list[UUID] | None:
    """Insert the case and its wrapped data key, flagging other agencies' cases with
    the same duplicate key in the same statement; returns those possible duplicates,
    or None when (agency, external_id) already exists because a concurrent twin
    request won."""
    row = await conn.fetchrow(
        """WITH inserted AS (
               INSERT INTO cases (case_id, reference, agency_id, external_id, country, region,
                                  risk_level, registration, dedup_key, possible_duplicate_of,
                                  registered_at, sealed, data_key_version)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
                       ARRAY(SELECT case_id FROM cases
                             WHERE $9::text IS NOT NULL AND dedup_key = $9 AND agency_id <> $3
                             ORDER BY registered_at LIMIT 20),
                       $10, $11, $12)
               ON CONFLICT (agency_id, external_id) DO NOTHING
               RETURNING case_id, possible_duplicate_of
           ), key AS (
               INSERT INTO case_keys (case_id, kek_version, wrapped)
               SELECT case_id, $13, $14 FROM inserted
           )
           SELECT possible_duplicate_of FROM inserted""",
        case_id,
        reference,
        agency_id,
        external_id,
        country,
        region,
        risk_level,
        registration,
        dedup_key,
        registered_at,
        sealed,
        data_key_version,
        wrapped_key.kek_version,
        wrapped_key.blob,
    )
    return list(row["possible_duplicate_of"]) if row else None


async def case_key(conn: Conn, case_id: UUID) -> WrappedKey | None:
    row = await conn.fetchrow(
        "SELECT kek_version, wrapped FROM case_keys WHERE case_id = $1", case_id
    )
    return WrappedKey(row["kek_version"], row["wrapped"]) if row else None


async def possible_duplicates(
    conn: Conn, after: Position | None, limit: int
) -> list[PossibleDuplicate]:
    """Up to `limit` cases flagged as possible duplicates, newest first, older than
    `after`, each with the cases it matched (in the order they were matched)."""
    flagged = """SELECT case_id, reference, agency_id, registered_at, possible_duplicate_of
                 FROM cases WHERE possible_duplicate_of <> '{}'"""
    order = " ORDER BY registered_at DESC, case_id DESC LIMIT $1"
    if after is None:
        rows = await conn.fetch(flagged + order, limit)
    else:
        rows = await conn.fetch(
            flagged + " AND (registered_at, case_id) < ($2, $3)" + order,
            limit,
            after.registered_at,
            after.case_id,
        )
    matched_ids = list({m for row in rows for m in row["possible_duplicate_of"]})
    matched = {
        row["case_id"]: _case_ref(row)
        for row in await conn.fetch(
            """SELECT case_id, reference, agency_id, registered_at FROM cases
               WHERE case_id = ANY($1::uuid[])""",
            matched_ids,
        )
    }
    return [
        PossibleDuplicate(
            case=_case_ref(row),
            matches=[matched[m] for m in row["possible_duplicate_of"] if m in matched],
        )
        for row in rows
    ]


def _case_ref(row: asyncpg.Record) -> CaseRef:
    return CaseRef(
        case_id=row["case_id"],
        reference=row["reference"],
        registering_agency_id=row["agency_id"],
        registered_at=row["registered_at"],
    )


async def withdraw_consent(conn: Conn, case_id: UUID, at: datetime) -> None:
    await conn.execute(
        """UPDATE cases SET consent_status = $3, consent_withdrawn_at = $2,
                            version = version + 1
           WHERE case_id = $1""",
        case_id,
        at,
        ConsentStatus.WITHDRAWN,
    )


async def record_disclosure(
    conn: Conn,
    *,
    case_id: UUID,
    requested_by: str,
    on_behalf_of: str,
    referral_id: UUID | None,
    purpose: str,
) -> None:
    await conn.execute(
        """INSERT INTO disclosures (case_id, requested_by, on_behalf_of, referral_id, purpose)
           VALUES ($1, $2, $3, $4, $5)""",
        case_id,
        requested_by,
        on_behalf_of,
        referral_id,
        purpose,
    )


async def latest_caseworker(conn: Conn, agency_id: str, staff_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        """SELECT registration->'caseworker' AS caseworker FROM cases
           WHERE agency_id = $1 AND registration->'caseworker'->>'id' = $2
           ORDER BY registered_at DESC LIMIT 1""",
        agency_id,
        staff_id,
    )
    return row["caseworker"] if row else None


# --- grants ----------------------------------------------------------------------------


def _grant(row: asyncpg.Record) -> Grant:
    return Grant(
        referral_id=row["referral_id"],
        case_id=row["case_id"],
        agency_id=row["agency_id"],
        version=row["version"],
        opened_at=row["opened_at"],
        ended_at=row["ended_at"],
        end_reason=GrantEnd(row["end_reason"]) if row["end_reason"] else None,
    )


@dataclass(frozen=True)
class Sharing:
    consent_status: ConsentStatus
    erased: bool


async def sharing_for_share(conn: Conn, case_id: UUID) -> Sharing | None:
    """The case's consent status and whether it was erased, the row share-locked until
    the caller's transaction ends: a concurrent withdrawal or erasure waits, then ends
    the grants written here."""
    row = await conn.fetchrow(
        "SELECT consent_status, erased_at FROM cases WHERE case_id = $1 FOR SHARE", case_id
    )
    if row is None:
        return None
    return Sharing(ConsentStatus(row["consent_status"]), row["erased_at"] is not None)


async def get_grant(conn: Conn, referral_id: UUID) -> Grant | None:
    row = await conn.fetchrow("SELECT * FROM grants WHERE referral_id = $1", referral_id)
    return _grant(row) if row else None


async def save_grant(conn: Conn, grant: Grant) -> None:
    await conn.execute(
        """INSERT INTO grants (referral_id, case_id, agency_id, version, opened_at, ended_at,
                               end_reason)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (referral_id) DO UPDATE SET
               version = EXCLUDED.version, opened_at = EXCLUDED.opened_at,
               ended_at = EXCLUDED.ended_at, end_reason = EXCLUDED.end_reason""",
        grant.referral_id,
        grant.case_id,
        grant.agency_id,
        grant.version,
        grant.opened_at,
        grant.ended_at,
        grant.end_reason,
    )


async def live_grant(
    conn: Conn, case_id: UUID, agency_id: str, referral_id: UUID | None
) -> Grant | None:
    """The agency's live grant on the case (for `referral_id` when given; else the most
    recently opened one), share-locked until the caller's transaction ends."""
    row = await conn.fetchrow(
        """SELECT * FROM grants
           WHERE case_id = $1 AND agency_id = $2 AND ended_at IS NULL
             AND opened_at IS NOT NULL AND ($3::uuid IS NULL OR referral_id = $3)
           ORDER BY opened_at DESC, referral_id LIMIT 1
           FOR SHARE""",
        case_id,
        agency_id,
        referral_id,
    )
    return _grant(row) if row else None


async def end_grants(conn: Conn, case_id: UUID, at: datetime, reason: GrantEnd) -> int:
    """End every grant of the case still live; returns how many."""
    result: str = await conn.execute(
        """UPDATE grants SET ended_at = $2, end_reason = $3
           WHERE case_id = $1 AND ended_at IS NULL""",
        case_id,
        at,
        reason,
    )
    return int(result.rsplit(" ", 1)[-1])
