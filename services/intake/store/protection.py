"""Intake's SQL for the protection of identities at rest: data keys (rotation),
erasure and its audit, the referrals retention waits for, and cases registered
before sealing existed. Every function takes the caller's connection."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from services.intake.keks import WrappedKey
from services.intake.sealing import Sealed
from services.kit.db import Conn


@dataclass(frozen=True)
class KeyRow:
    case_id: UUID
    wrapped: WrappedKey


async def keys_not_on(conn: Conn, kek_version: str, limit: int) -> list[KeyRow]:
    """Up to `limit` data keys wrapped by another KEK than `kek_version`, locked."""
    rows = await conn.fetch(
        """SELECT case_id, kek_version, wrapped FROM case_keys
           WHERE kek_version <> $1 ORDER BY case_id LIMIT $2
           FOR UPDATE SKIP LOCKED""",
        kek_version,
        limit,
    )
    return [KeyRow(r["case_id"], WrappedKey(r["kek_version"], r["wrapped"])) for r in rows]


async def save_wrapped(conn: Conn, keys: list[KeyRow]) -> None:
    await conn.executemany(
        """UPDATE case_keys SET kek_version = $2, wrapped = $3, wrapped_at = now()
           WHERE case_id = $1""",
        [(k.case_id, k.wrapped.kek_version, k.wrapped.blob) for k in keys],
    )


async def keys_per_kek(conn: Conn) -> dict[str, int]:
    rows = await conn.fetch("SELECT kek_version, count(*) AS n FROM case_keys GROUP BY 1")
    return {r["kek_version"]: r["n"] for r in rows}


# --- erasure ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Erasure:
    case_id: UUID
    reason: str
    requested_by: str
    requester_role: str
    basis: str | None
    erased_at: datetime


async def erase(conn: Conn, erasure: Erasure) -> None:
    """Destroy the case's data key and everything derived from its identity (sealed
    fields, duplicate key, idempotency hashes of its request), and write the audit
    row. The caller holds the case row's lock."""
    await conn.execute("DELETE FROM case_keys WHERE case_id = $1", erasure.case_id)
    await conn.execute("DELETE FROM idempotency_keys WHERE case_id = $1", erasure.case_id)
    await conn.execute(
        """UPDATE cases SET sealed = NULL, data_key_version = NULL, dedup_key = NULL,
                            erased_at = $2, version = version + 1
           WHERE case_id = $1""",
        erasure.case_id,
        erasure.erased_at,
    )
    await conn.execute(
        """INSERT INTO erasures (case_id, reason, requested_by, requester_role, basis,
                                 erased_at)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        erasure.case_id,
        erasure.reason,
        erasure.requested_by,
        erasure.requester_role,
        erasure.basis,
        erasure.erased_at,
    )


async def erasure_of(conn: Conn, case_id: UUID) -> Erasure | None:
    row = await conn.fetchrow("SELECT * FROM erasures WHERE case_id = $1", case_id)
    if row is None:
        return None
    return Erasure(
        row["case_id"],
        row["reason"],
        row["requested_by"],
        row["requester_role"],
        row["basis"],
        row["erased_at"],
    )


# --- the referrals retention waits for -------------------------------------------------


async def record_case_referral(
    conn: Conn, referral_id: UUID, case_id: UUID, version: int, ended_at: datetime | None
) -> None:
    """Keep the newest state of one referral: open, or ended at `ended_at` (an ended
    referral never reopens)."""
    await conn.execute(
        """INSERT INTO case_referrals (referral_id, case_id, version, ended_at)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (referral_id) DO UPDATE SET
               version = EXCLUDED.version,
               ended_at = COALESCE(case_referrals.ended_at, EXCLUDED.ended_at)
           WHERE case_referrals.version < EXCLUDED.version""",
        referral_id,
        case_id,
        version,
        ended_at,
    )


@dataclass(frozen=True)
class RetentionCandidate:
    case_id: UUID
    reference: str
    agency_id: str
    registered_at: datetime
    last_activity: datetime  # the last referral's end, or the registration without any


async def retention_candidates(
    conn: Conn, before: datetime, limit: int
) -> list[RetentionCandidate]:
    """Cases not erased with no open referral whose last referral ended (or, with no
    referral, which were registered) before `before`, oldest first. Cases registered
    before intake tracked referrals are never candidates."""
    rows = await conn.fetch(
        """SELECT c.case_id, c.reference, c.agency_id, c.registered_at,
                  COALESCE(max(r.ended_at), c.registered_at) AS last_activity
           FROM cases c LEFT JOIN case_referrals r ON r.case_id = c.case_id
           WHERE c.erased_at IS NULL AND c.registered_at < $1 AND c.referrals_tracked
           GROUP BY c.case_id
           HAVING bool_and(r.referral_id IS NULL OR r.ended_at IS NOT NULL)
              AND COALESCE(max(r.ended_at), c.registered_at) < $1
           ORDER BY last_activity, c.case_id
           LIMIT $2""",
        before,
        limit,
    )
    return [
        RetentionCandidate(
            r["case_id"], r["reference"], r["agency_id"], r["registered_at"], r["last_activity"]
        )
        for r in rows
    ]


# --- cases registered before sealing ---------------------------------------------------


@dataclass(frozen=True)
class UnsealedCase:
    case_id: UUID
    region: str
    registration: dict[str, Any]


async def unsealed_cases(conn: Conn, limit: int) -> list[UnsealedCase]:
    """Cases still holding a plain registration (from before migration 004), locked."""
    rows = await conn.fetch(
        """SELECT case_id, region, registration FROM cases
           WHERE sealed IS NULL AND erased_at IS NULL
           ORDER BY case_id LIMIT $1 FOR UPDATE SKIP LOCKED""",
        limit,
    )
    return [UnsealedCase(r["case_id"], r["region"], r["registration"]) for r in rows]


async def seal_case(
    conn: Conn,
    case_id: UUID,
    *,
    registration: dict[str, Any],
    sealed: Sealed,
    data_key_version: int,
    wrapped_key: WrappedKey,
    dedup_key: str | None,
) -> None:
    await conn.execute(
        """UPDATE cases SET registration = $2, sealed = $3, data_key_version = $4,
                            dedup_key = $5
           WHERE case_id = $1""",
        case_id,
        registration,
        sealed,
        data_key_version,
        dedup_key,
    )
    await conn.execute(
        "INSERT INTO case_keys (case_id, kek_version, wrapped) VALUES ($1, $2, $3)",
        case_id,
        wrapped_key.kek_version,
        wrapped_key.blob,
    )
