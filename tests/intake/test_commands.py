"""Intake's use cases against a real PostgreSQL database, without HTTP or Kafka: what
each command writes (the case, its outbox events, the audit trail) and the domain
errors it refuses with."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest

from services.intake import commands
from services.intake.domain import CaseRegistration, ConsentStatus
from services.kit.clock import MovableClock
from services.kit.errors import Conflict, InvalidField, NotFound, NotPermitted
from tests.factories import piura_adolescent_girl
from tests.intake.conftest import Referral, fresh_vault

SOURCE = "/enlace/intake"
VAULT = fresh_vault()


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(datetime.now(UTC).replace(microsecond=0))


def registration(**overrides: Any) -> CaseRegistration:
    return CaseRegistration.model_validate(piura_adolescent_girl(**overrides))


async def register(
    pool: asyncpg.Pool,
    clock: MovableClock,
    reg: CaseRegistration,
    agency_id: str = "ong-amanecer",
    key: str | None = None,
) -> commands.Registered:
    command = commands.RegisterCase(registration=reg, agency_id=agency_id, idempotency_key=key)
    return await commands.register_case(pool, command, clock=clock, source=SOURCE, vault=VAULT)


async def outbox_types(pool: asyncpg.Pool, case_id: uuid.UUID) -> list[str]:
    rows = await pool.fetch(
        "SELECT event_type FROM outbox WHERE subject = $1 ORDER BY seq", str(case_id)
    )
    return [r["event_type"] for r in rows]


async def test_registering_the_same_external_id_again_returns_the_original(
    pool: asyncpg.Pool, clock: MovableClock
) -> None:
    reg = registration()
    first = await register(pool, clock, reg)
    clock.advance(timedelta(minutes=5))
    again = await register(pool, clock, reg)
    assert (first.replayed, again.replayed) == (False, True)
    assert again.receipt == first.receipt
    assert first.receipt.registered_at == clock.now() - timedelta(minutes=5)  # injected time
    assert first.receipt.reference.startswith(f"PE-PIU-{clock.now().year}-")
    assert await outbox_types(pool, first.receipt.case_id) == ["case.created"]
    count = await pool.fetchval(
        "SELECT count(*) FROM cases WHERE external_id = $1", reg.external_id
    )
    assert count == 1


async def test_an_idempotency_key_reused_with_another_body_is_refused(
    pool: asyncpg.Pool, clock: MovableClock
) -> None:
    key = f"req-{uuid.uuid4()}"
    first = await register(pool, clock, registration(), key=key)
    replay_body = registration(external_id=f"AMN-{uuid.uuid4().hex[:10]}")
    with pytest.raises(commands.IdempotencyKeyReused):
        await register(pool, clock, replay_body, key=key)
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM cases WHERE external_id = $1", replay_body.external_id
        )
        == 0
    )
    assert first.receipt.case_id == (
        await pool.fetchval("SELECT case_id FROM idempotency_keys WHERE key = $1", key)
    )


async def test_impossible_dates_name_the_field(pool: asyncpg.Pool, clock: MovableClock) -> None:
    body = piura_adolescent_girl()
    body["consent"]["recorded_at"] = (clock.now() + timedelta(hours=1)).isoformat()
    with pytest.raises(InvalidField) as refused:
        await register(pool, clock, CaseRegistration.model_validate(body))
    assert (refused.value.field, refused.value.message) == (
        "consent.recorded_at",
        "is in the future",
    )


async def test_the_same_child_from_another_agency_is_flagged_not_merged(
    pool: asyncpg.Pool, clock: MovableClock
) -> None:
    child = {**piura_adolescent_girl()["child"], "family_names": f"Quispe {uuid.uuid4().hex[:8]}"}
    first = await register(pool, clock, registration(child=child))
    second = await register(pool, clock, registration(child=child), agency_id="cem-piura")
    assert second.receipt.case_id != first.receipt.case_id
    assert (first.receipt.possible_duplicate, second.receipt.possible_duplicate) == (False, True)
    data = orjson.loads(
        await pool.fetchval(
            "SELECT data FROM outbox WHERE subject = $1", str(second.receipt.case_id)
        )
    )
    assert (data["possible_duplicate"], data["possible_duplicate_of"]) == (True, [])
    # who matched whom: coordination's list, newest first
    async with pool.acquire() as conn:
        page = await commands.possible_duplicates(conn, commands.ListPossibleDuplicates(limit=1))
    (item,) = page.items
    assert item.case.case_id == second.receipt.case_id
    assert item.case.registering_agency_id == "cem-piura"
    assert [m.case_id for m in item.matches] == [first.receipt.case_id]
    assert item.matches[0].registering_agency_id == "ong-amanecer"


async def test_only_the_registering_agency_reads_a_case(
    pool: asyncpg.Pool, clock: MovableClock
) -> None:
    created = await register(pool, clock, registration())
    async with pool.acquire() as conn:
        case = (await commands.read_case(conn, created.receipt.case_id, "ong-amanecer", VAULT)).case
        assert case.consent_status is ConsentStatus.ACTIVE
        with pytest.raises(NotFound) as other:
            await commands.read_case(conn, created.receipt.case_id, "cem-piura", VAULT)
        with pytest.raises(NotFound) as missing:
            await commands.read_case(conn, uuid.uuid4(), "cem-piura", VAULT)
    assert other.value.detail == missing.value.detail == "No such case."


async def test_consent_withdrawal_of_another_agencys_case_is_not_found(
    pool: asyncpg.Pool, clock: MovableClock
) -> None:
    created = await register(pool, clock, registration())
    case_id = created.receipt.case_id
    withdraw = commands.WithdrawConsent(case_id=case_id, agency_id="cem-piura")
    async with pool.acquire() as conn:
        with pytest.raises(NotFound):
            await commands.withdraw_consent(conn, withdraw, clock=clock, source=SOURCE)
        assert (
            await commands.read_case(conn, case_id, "ong-amanecer", VAULT)
        ).case.consent_status is (ConsentStatus.ACTIVE)
    assert await outbox_types(pool, case_id) == ["case.created"]


async def test_consent_is_withdrawn_once_and_announced_once(
    pool: asyncpg.Pool, clock: MovableClock
) -> None:
    created = await register(pool, clock, registration())
    case_id = created.receipt.case_id
    withdraw = commands.WithdrawConsent(case_id=case_id, agency_id="ong-amanecer")
    async with pool.acquire() as conn:
        await commands.withdraw_consent(conn, withdraw, clock=clock, source=SOURCE)
        clock.advance(timedelta(hours=1))
        await commands.withdraw_consent(conn, withdraw, clock=clock, source=SOURCE)
        case = (await commands.read_case(conn, case_id, "ong-amanecer", VAULT)).case
        naive = commands.WithdrawConsent(
            case_id=case_id, agency_id="ong-amanecer", withdrawn_at=datetime(2026, 1, 1)
        )
        with pytest.raises(InvalidField) as refused:
            await commands.withdraw_consent(conn, naive, clock=clock, source=SOURCE)
    assert refused.value.field == "withdrawn_at"
    assert case.consent_status is ConsentStatus.WITHDRAWN
    assert case.consent_withdrawn_at == clock.now() - timedelta(hours=1)  # the first one
    assert await outbox_types(pool, case_id) == ["case.created", "case.consent_withdrawn"]


async def test_identity_is_disclosed_under_a_grant_audited_with_its_referral(
    pool: asyncpg.Pool, clock: MovableClock
) -> None:
    created = await register(pool, clock, registration())
    case_id = created.receipt.case_id
    referral = Referral(case_id)

    def disclose(agency: str = "upe-piura", referral_id: uuid.UUID | None = None) -> Any:
        return commands.DiscloseIdentity(
            case_id=case_id,
            requested_by="svc-referral",
            on_behalf_of=agency,
            purpose="accepted referral " + "x" * 300,
            referral_id=referral_id,
        )

    async with pool.acquire() as conn:
        with pytest.raises(NotPermitted) as before_acceptance:
            await commands.disclose_identity(conn, disclose(), VAULT)
        for event in referral.accepted():
            async with conn.transaction():
                await commands.record_referral_event(conn, event)
        identity = await commands.disclose_identity(conn, disclose(), VAULT)  # no referral id given
        with pytest.raises(NotPermitted):  # another agency holds no grant
            await commands.disclose_identity(conn, disclose("cem-piura"), VAULT)
        with pytest.raises(NotPermitted):  # nor does this one for another referral
            await commands.disclose_identity(conn, disclose(referral_id=uuid.uuid4()), VAULT)
        with pytest.raises(NotFound):
            await commands.disclose_identity(
                conn,
                commands.DiscloseIdentity(uuid.uuid4(), "svc-referral", "upe-piura", "x"),
                VAULT,
            )
        await commands.withdraw_consent(
            conn,
            commands.WithdrawConsent(case_id=case_id, agency_id="ong-amanecer"),
            clock=clock,
            source=SOURCE,
        )
        with pytest.raises(Conflict) as refused:
            await commands.disclose_identity(conn, disclose(), VAULT)
    assert before_acceptance.value.title == "No disclosure grant"
    assert before_acceptance.value.extra == {"reason": "no_grant"}
    assert identity.child["family_names"] == "Rojas Méndez"
    assert identity.location["region"] == "PE-PIU"
    assert refused.value.title == "Consent withdrawn"
    audit = await pool.fetch(
        "SELECT requested_by, on_behalf_of, referral_id, purpose FROM disclosures "
        "WHERE case_id = $1",
        case_id,
    )
    assert [(r["requested_by"], r["on_behalf_of"], r["referral_id"]) for r in audit] == [
        ("svc-referral", "upe-piura", referral.referral_id)  # the grant's referral
    ]
    assert len(audit[0]["purpose"]) == 200
    grant = await pool.fetchrow("SELECT * FROM grants WHERE case_id = $1", case_id)
    assert grant is not None
    assert (grant["end_reason"], grant["ended_at"]) == ("consent_withdrawn", clock.now())


async def test_caseworker_contact_is_the_latest_registered(
    pool: asyncpg.Pool, clock: MovableClock
) -> None:
    staff_id = f"cw-{uuid.uuid4().hex[:8]}"
    caseworker = {**piura_adolescent_girl()["caseworker"], "id": staff_id}
    await register(pool, clock, registration(caseworker=caseworker))
    clock.advance(timedelta(minutes=1))
    await register(pool, clock, registration(caseworker={**caseworker, "phone": "+51911122233"}))
    async with pool.acquire() as conn:
        contact = await commands.caseworker_contact(conn, "ong-amanecer", staff_id)
        with pytest.raises(NotFound) as missing:
            await commands.caseworker_contact(conn, "cem-piura", staff_id)
    assert contact["agency_id"] == "ong-amanecer"
    assert contact["phone"] == "+51911122233"
    assert missing.value.what == "caseworker"
