"""The directory tables: one JSON document per organisation, in directory order,
and a version bumped on every edit so that every replica reloads its copy."""

from __future__ import annotations

from typing import Any

from services.kit.db import Conn


async def directory_version(conn: Conn) -> int:
    version: int = await conn.fetchval("SELECT version FROM directory_version")
    return version


async def lock_directory(conn: Conn) -> None:
    """Serialise directory edits across replicas (until the transaction ends)."""
    await conn.execute("SELECT version FROM directory_version FOR UPDATE")


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
