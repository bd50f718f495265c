"""Key-encryption-key rotation, retirement, and the sealing of cases registered
before sealing existed.

Rotation makes a new KEK version (the current one from then on) and re-wraps every
data key under it, a batch per transaction, without touching any sealed field. A
version is retired (destroyed in its provider) only when no data key refers to it
and it is not the current one. A process that had not yet noticed a rotation may
wrap a few keys under the previous version for up to `keks.CURRENT_TTL_SECONDS`:
`keys status` shows them and another `keys rotate --rewrap-only` moves them.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.intake import duplicates, sealing, store
from services.intake.domain import CaseRegistration
from services.intake.vault import Vault
from services.kit.db import Pool
from services.kit.errors import Conflict
from services.kit.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class KeyStatus:
    current: str
    versions: list[str]  # every KEK version the provider holds
    data_keys: dict[str, int]  # data keys per KEK version


async def key_status(pool: Pool, vault: Vault) -> KeyStatus:
    ring = vault.ring
    ring.forget_current()
    async with pool.acquire() as conn:
        counts = await store.keys_per_kek(conn)
    return KeyStatus(
        ring.version_id(ring.current()),
        [ring.version_id(v) for v in ring.keys.versions()],
        counts,
    )


async def rewrap_all(pool: Pool, vault: Vault, version: int, *, batch: int = 500) -> int:
    """Re-wrap every data key not under `version` with it; returns how many."""
    target = vault.ring.version_id(version)
    moved = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await store.keys_not_on(conn, target, batch)
            if not rows:
                return moved
            rewrapped = [
                store.KeyRow(r.case_id, vault.rewrap(r.case_id, r.wrapped, version)) for r in rows
            ]
            await store.save_wrapped(conn, rewrapped)
        moved += len(rows)


async def rotate(pool: Pool, vault: Vault, *, rewrap_only: bool = False) -> KeyStatus:
    ring = vault.ring
    if rewrap_only:
        ring.forget_current()
        version = ring.current()
    else:
        version = ring.keys.create()
        ring.forget_current()
    moved = await rewrap_all(pool, vault, version)
    log.info("data keys re-wrapped", kek=ring.version_id(version), count=moved)
    return await key_status(pool, vault)


async def retire(pool: Pool, vault: Vault, kek_version: str) -> KeyStatus:
    """Destroy one KEK version for good, once nothing needs it."""
    ring = vault.ring
    version = ring.parse_version(kek_version)
    ring.forget_current()
    if version == ring.current():
        raise Conflict("Current KEK", f"{kek_version} is the current KEK: rotate first.")
    async with pool.acquire() as conn:
        still = (await store.keys_per_kek(conn)).get(kek_version, 0)
    if still:
        raise Conflict(
            "KEK still in use",
            f"{still} data keys are wrapped by {kek_version}: run keys rotate --rewrap-only.",
        )
    ring.keys.destroy(version)
    log.info("KEK retired", kek=kek_version)
    return await key_status(pool, vault)


async def seal_unsealed_cases(pool: Pool, vault: Vault, *, batch: int = 200) -> int:
    """Seal the cases registered before sealing existed (plain registration), and
    replace their unkeyed duplicate key by the keyed one; returns how many. Run at
    each start; a no-op once done. (The plain text of the old rows stays in the
    table's dead tuples until PostgreSQL vacuums them: README, "Data protection".)"""
    sealed = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await store.unsealed_cases(conn, batch)
            for row in rows:
                registration = CaseRegistration.model_validate(row.registration)
                plain, identifying = sealing.split(row.registration)
                identity = vault.seal_new(row.case_id, identifying)
                await store.seal_case(
                    conn,
                    row.case_id,
                    registration=plain,
                    sealed=identity.sealed,
                    data_key_version=identity.data_key_version,
                    wrapped_key=identity.wrapped_key,
                    dedup_key=vault.duplicate_key(duplicates.duplicate_basis(registration)),
                )
        sealed += len(rows)
        if len(rows) < batch:
            break
    if sealed:
        log.info("cases registered before sealing now sealed", count=sealed)
    return sealed
