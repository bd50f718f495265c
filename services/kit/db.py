"""asyncpg pool and ordered SQL migrations, applied at start-up.

Migrations are plain `NNN_name.sql` files. The kit's own (outbox, processed events)
run first under the `kit` namespace, then the service's. Concurrent replicas
starting at once are serialised by an advisory lock, so each file runs once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import orjson

from services.kit.logging import get_logger

KIT_MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 0x656E6C6163650001  # "enlace" + 1

log = get_logger(__name__)

Pool = asyncpg.Pool
if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # What code receives: a plain connection or one borrowed from a pool.
    Conn: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
else:
    Conn = asyncpg.Connection


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name,
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


class PoolConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pool connection returned without asyncpg's reset query (`pg_advisory_unlock_all();
    CLOSE ALL; UNLISTEN *; RESET ALL`): one more round trip on every release, for
    every request, batch and delivery. Pool connections carry no session state here:
    LISTEN and the relay's session lock use connections of their own, every other
    lock is transaction-scoped. An open transaction is still rolled back and
    listeners dropped (asyncpg always does that, whatever the query)."""

    def get_reset_query(self) -> str:
        return ""


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        command_timeout=30,
        connection_class=PoolConnection,
    )
    assert pool is not None
    return pool


def _migration_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.sql") if p.name[:3].isdigit())


async def migrate(pool: asyncpg.Pool, service_migrations: Path | None, service: str) -> list[str]:
    """Apply pending migrations; returns the ones applied now."""
    applied_now: list[str] = []
    sets: list[tuple[str, Path]] = [("kit", KIT_MIGRATIONS)]
    if service_migrations is not None:
        sets.append((service, service_migrations))
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   id TEXT PRIMARY KEY,
                   checksum TEXT NOT NULL,
                   applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
        )
        done: dict[str, Any] = {
            r["id"]: r["checksum"] for r in await conn.fetch("SELECT * FROM schema_migrations")
        }
        for namespace, directory in sets:
            for path in _migration_files(directory):
                migration_id = f"{namespace}:{path.name}"
                sql = path.read_text()
                checksum = hashlib.sha256(sql.encode()).hexdigest()
                if migration_id in done:
                    if done[migration_id] != checksum:
                        raise RuntimeError(
                            f"migration {migration_id} was edited after it was applied; "
                            "add a new migration instead"
                        )
                    continue
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (id, checksum) VALUES ($1, $2)",
                    migration_id,
                    checksum,
                )
                applied_now.append(migration_id)
    if applied_now:
        log.info("migrations applied", migrations=applied_now)
    return applied_now
