"""The `cases` table: the codes of each routed case (from case.created, no
identifiers), when its consent was withdrawn, and (from `erasures`) when it was
erased. The row is also the per-case lock: every write about a case locks it first,
so a case's events leave in commit order."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from contracts.events import CaseCreatedV1
from services.kit.db import Conn


@dataclass(frozen=True)
class StoredCase:
    case_id: UUID
    reference: str
    registering_agency_id: str
    profile: dict[str, Any]
    consent_withdrawn_at: datetime | None
    erased_at: datetime | None  # its profile is empty then: read `event` only before

    @property
    def event(self) -> CaseCreatedV1:
        assert self.erased_at is None, "an erased case has no profile"
        return CaseCreatedV1.model_validate(self.profile)


def _case(row: asyncpg.Record) -> StoredCase:
    return StoredCase(
        case_id=row["case_id"],
        reference=row["reference"],
        registering_agency_id=row["registering_agency_id"],
        profile=row["profile"],
        consent_withdrawn_at=row["consent_withdrawn_at"],
        erased_at=row["erased_at"],
    )


_SELECT = """SELECT c.*, e.erased_at FROM cases c LEFT JOIN erasures e ON e.case_id = c.case_id
             WHERE c.case_id = $1"""


async def lock_case(conn: Conn, case_id: UUID) -> StoredCase | None:
    row = await conn.fetchrow(_SELECT + " FOR UPDATE OF c", case_id)
    return _case(row) if row else None


async def get_case(conn: Conn, case_id: UUID) -> StoredCase | None:
    row = await conn.fetchrow(_SELECT, case_id)
    return _case(row) if row else None


async def mark_consent_withdrawn(conn: Conn, case_id: UUID, at: datetime) -> None:
    await conn.execute(
        """UPDATE cases SET consent_withdrawn_at = $2
           WHERE case_id = $1 AND consent_withdrawn_at IS NULL""",
        case_id,
        at,
    )
