"""Referral's SQL, and nothing else. Every function takes the caller's connection,
so the caller (a use case) owns the transaction; writers about a case lock its
`cases` row first (`lock_case`).

- `cases`: the routed cases, the per-case lock, consent withdrawal;
- `erasures`: erased cases, and the removal of what identifies a person;
- `referrals`: referral rows, their transitions, listing, the disclosure audit;
- `directory`: the directory's organisations and its version.

Callers use `store.<function>`; the functions are re-exported here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import asyncpg

from services.kit.erasures import is_erased, record_erasure
from services.referral.store.cases import (
    StoredCase,
    get_case,
    lock_case,
    mark_consent_withdrawn,
)
from services.referral.store.directory import (
    bump_directory_version,
    delete_organization,
    directory_documents,
    directory_version,
    lock_directory,
    seed_directory,
    upsert_organization,
)
from services.referral.store.erasures import scrub_case
from services.referral.store.referrals import (
    NewReferral,
    Page,
    StoredReferral,
    get_referral,
    has_open_referral,
    insert_referrals,
    insert_routed_case,
    list_referrals,
    open_referrals_of_case,
    record_disclosure,
    save_transition,
)


@asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection, typed as the connection it proxies."""
    async with pool.acquire() as conn:
        yield cast(asyncpg.Connection, conn)


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection inside a transaction, committed when the block ends."""
    async with pool.acquire() as conn, conn.transaction():
        yield cast(asyncpg.Connection, conn)


__all__ = [
    "NewReferral",
    "Page",
    "StoredCase",
    "StoredReferral",
    "bump_directory_version",
    "connection",
    "delete_organization",
    "directory_documents",
    "directory_version",
    "get_case",
    "get_referral",
    "has_open_referral",
    "insert_referrals",
    "insert_routed_case",
    "is_erased",
    "list_referrals",
    "lock_case",
    "lock_directory",
    "mark_consent_withdrawn",
    "open_referrals_of_case",
    "record_disclosure",
    "record_erasure",
    "save_transition",
    "scrub_case",
    "seed_directory",
    "transaction",
    "upsert_organization",
]
