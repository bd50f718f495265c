"""Identities at rest: what the database holds of a registration, that a sealed
field or a wrapped key moved to another case or field does not open, keyed
duplicate hashes, cases registered before sealing sealed at start, and KEK
rotation re-wrapping every data key without touching the data."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from services.intake import commands, duplicates
from services.intake.commands import keys
from services.intake.domain import CaseRegistration
from services.intake.kek_pkcs11 import Pkcs11Keys
from services.intake.keks import (
    FileKeys,
    KekRing,
    KeyEncryptionKeys,
    KeyUnavailable,
    UnwrapFailed,
)
from services.intake.vault import Vault
from services.kit.clock import MovableClock
from services.kit.errors import Conflict
from tests.factories import piura_adolescent_girl
from tests.intake.conftest import fresh_intake_db, fresh_vault
from tests.intake.test_kek_pkcs11 import MODULE, TOKEN
from tests.intake.test_kek_pkcs11 import _fresh_token as fresh_token

SOURCE = "/enlace/intake"


@pytest.fixture
def vault() -> Vault:
    return fresh_vault()


GUARDIAN = {"name": "Rosa Elvira Méndez", "relationship": "tía", "phone": "+51987650001"}
CLOCK = MovableClock(datetime.now(UTC).replace(microsecond=0))


async def register(pool: asyncpg.Pool, vault: Vault, **overrides: Any) -> uuid.UUID:
    reg = CaseRegistration.model_validate(piura_adolescent_girl(**overrides))
    command = commands.RegisterCase(registration=reg, agency_id="ong-amanecer")
    done = await commands.register_case(pool, command, clock=CLOCK, source=SOURCE, vault=vault)
    return done.receipt.case_id


async def read(pool: asyncpg.Pool, vault: Vault, case_id: uuid.UUID) -> dict[str, Any]:
    async with pool.acquire() as conn:
        return (await commands.read_case(conn, case_id, "ong-amanecer", vault)).registration


async def test_the_database_holds_no_identifying_detail_in_plain(
    pool: asyncpg.Pool, vault: Vault
) -> None:
    canary = f"Canariña{uuid.uuid4().hex[:10]}"
    child = {**piura_adolescent_girl()["child"], "given_names": canary}
    case_id = await register(pool, vault, child=child, guardian=GUARDIAN)
    row = await pool.fetchrow(
        "SELECT row_to_json(c)::text AS r FROM cases c WHERE case_id=$1", case_id
    )
    key_row = await pool.fetchrow("SELECT * FROM case_keys WHERE case_id = $1", case_id)
    assert row is not None
    assert key_row is not None
    stored = row["r"]
    body = piura_adolescent_girl()
    for detail in (
        canary,
        "Rojas",  # family names
        body["child"]["birth_date"],
        body["child"]["documents"][0]["number"],
        GUARDIAN["name"],
        GUARDIAN["phone"],
        body["location"]["district"],
    ):
        assert detail not in stored, f"{detail!r} is stored in plain"
    assert set(orjson.loads(stored)["sealed"]) == {"child", "location", "guardian", "consent"}
    assert key_row["kek_version"] == "file:1"
    assert len(key_row["wrapped"]) == 12 + 32 + 16  # nonce, data key, tag
    registration = await read(pool, vault, case_id)
    assert registration["child"]["given_names"] == canary
    assert registration["guardian"] == {**GUARDIAN, "email": None}
    assert registration["caseworker"] == body["caseworker"]


async def test_a_ciphertext_moved_to_another_case_or_field_does_not_open(
    pool: asyncpg.Pool, vault: Vault
) -> None:
    first = await register(pool, vault, guardian=GUARDIAN)
    second = await register(pool, vault, guardian=GUARDIAN)
    sealed = {
        r["case_id"]: r["sealed"]
        for r in await pool.fetch(
            "SELECT case_id, sealed FROM cases WHERE case_id = ANY($1)", [first, second]
        )
    }
    # The first case's child, copied into the second case: its key, but not its case.
    await pool.execute(
        "UPDATE cases SET sealed = $2 WHERE case_id = $1",
        second,
        {**sealed[second], "child": sealed[first]["child"]},
    )
    with pytest.raises(UnwrapFailed):
        await read(pool, vault, second)
    # The first case's guardian, moved into its own child field: its case, not its field.
    await pool.execute(
        "UPDATE cases SET sealed = $2 WHERE case_id = $1",
        first,
        {**sealed[first], "child": sealed[first]["guardian"]},
    )
    with pytest.raises(UnwrapFailed):
        await read(pool, vault, first)
    # Restored, it opens; the first case's wrapped data key on the second does not.
    await pool.execute("UPDATE cases SET sealed = $2 WHERE case_id = $1", first, sealed[first])
    assert (await read(pool, vault, first))["child"]["family_names"] == "Rojas Méndez"
    await pool.execute(
        """UPDATE case_keys SET wrapped = (SELECT wrapped FROM case_keys WHERE case_id = $1)
           WHERE case_id = $2""",
        first,
        second,
    )
    await pool.execute("UPDATE cases SET sealed = $2 WHERE case_id = $1", second, sealed[second])
    with pytest.raises(UnwrapFailed):
        await read(pool, vault, second)


async def test_duplicates_match_on_a_keyed_hash(pool: asyncpg.Pool, vault: Vault) -> None:
    reg = CaseRegistration.model_validate(piura_adolescent_girl())
    basis = duplicates.duplicate_basis(reg)
    assert basis is not None
    case_id = await register(pool, vault)
    stored = await pool.fetchval("SELECT dedup_key FROM cases WHERE case_id = $1", case_id)
    assert stored == vault.duplicate_key(basis)
    assert stored != hashlib.sha256(basis.encode()).hexdigest()  # not guessable without the key
    assert stored != fresh_vault().duplicate_key(basis)


async def test_cases_registered_before_sealing_are_sealed_at_start(
    pool: asyncpg.Pool, vault: Vault
) -> None:
    body = CaseRegistration.model_validate(piura_adolescent_girl()).model_dump(mode="json")
    case_id = uuid.uuid4()
    await pool.execute(
        """INSERT INTO cases (case_id, reference, agency_id, external_id, country, region,
                              risk_level, registration, dedup_key, registered_at)
           VALUES ($1, $2, 'ong-amanecer', $3, 'PE', 'PE-PIU', 'high', $4, 'unkeyed', now())""",
        case_id,
        f"PE-PIU-1999-{uuid.uuid4().int % 10**6:06d}",
        f"OLD-{case_id.hex[:12]}",
        body,
    )
    assert await keys.seal_unsealed_cases(pool, vault) >= 1
    row = await pool.fetchrow(
        "SELECT registration, sealed, dedup_key FROM cases WHERE case_id=$1", case_id
    )
    assert row is not None
    assert "child" not in row["registration"]
    assert "guardian" not in row["registration"]
    assert set(row["sealed"]) == {"child", "location", "consent"}  # no guardian was given
    assert row["dedup_key"] == vault.duplicate_key(
        duplicates.duplicate_basis(CaseRegistration.model_validate(body))
    )
    assert await read(pool, vault, case_id) == body
    assert await keys.seal_unsealed_cases(pool, vault) == 0  # done once


@pytest.fixture
async def own_pool(databases: Callable[[str], Any]) -> AsyncIterator[asyncpg.Pool]:
    """A database of its own: rotation re-wraps every data key it holds."""
    async with fresh_intake_db(databases) as (_, created):
        yield created


@pytest.fixture(params=["file", "pkcs11"])
def kek_keys(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyEncryptionKeys]:
    """Each provider, with a first KEK: key files in a fresh directory, or a fresh
    SoftHSM2 token."""
    if request.param == "file":
        yield FileKeys(tmp_path / "kek", create_first=True)
        return
    conf, pin = fresh_token(tmp_path)
    with Pkcs11Keys(MODULE, TOKEN, pin, softhsm_conf=conf, create_first=True) as token_keys:
        yield token_keys


async def test_kek_rotation_rewraps_every_data_key_and_retires_the_old_kek(
    own_pool: asyncpg.Pool, kek_keys: KeyEncryptionKeys
) -> None:
    pool = own_pool
    provider = kek_keys.provider
    vault = Vault(KekRing(kek_keys), b"k" * 32)
    cases = [await register(pool, vault) for _ in range(3)]
    sealed_before = await pool.fetch(
        "SELECT case_id, sealed FROM cases WHERE case_id = ANY($1) ORDER BY case_id", cases
    )
    with pytest.raises(Conflict):  # the current KEK cannot be retired
        await keys.retire(pool, vault, f"{provider}:1")

    status = await keys.rotate(pool, vault)

    assert status.current == f"{provider}:2"
    assert status.versions == [f"{provider}:1", f"{provider}:2"]
    assert status.data_keys == {f"{provider}:2": 3}
    # The data was not touched; it opens under the new KEK alone once the old is gone.
    assert sealed_before == await pool.fetch(
        "SELECT case_id, sealed FROM cases WHERE case_id = ANY($1) ORDER BY case_id", cases
    )
    await keys.retire(pool, vault, f"{provider}:1")
    assert kek_keys.versions() == [2]
    for case_id in cases:
        assert (await read(pool, vault, case_id))["child"]["given_names"] == "Daniela Valentina"
    with pytest.raises(KeyUnavailable):
        kek_keys.encrypt(1, b"x", b"y")
