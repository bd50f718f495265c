"""Intake discloses a child's identity only under its own grant, kept from this
service's real referral events: the referral service's reads work once intake has
consumed the acceptance, and intake refuses the same call, on its own, after the
referral is closed, cancelled or rejected."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.factories import piura_adolescent_girl
from tests.helpers import auth, poll_until
from tests.referral.conftest import by_service, disclosed, referrals_of, register


@pytest.fixture
async def intake_db(intake_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(intake_dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def _ask_intake(
    intake: httpx.AsyncClient, referral: dict[str, Any], agency: str
) -> httpx.Response:
    """The call services/referral/intake.py makes, on behalf of `agency`."""
    return await intake.get(
        f"/internal/v1/cases/{referral['case_id']}/identity",
        params={
            "on_behalf_of": agency,
            "purpose": "test",
            "referral_id": referral["referral_id"],
        },
        headers=auth("svc-referral"),
    )


async def _refused_by_intake(
    intake: httpx.AsyncClient, referral: dict[str, Any], agency: str
) -> None:
    async def probe() -> int:
        return (await _ask_intake(intake, referral, agency)).status_code

    await poll_until(probe, lambda status: status == 403, timeout=30, what="intake's refusal")


async def _steps(
    referral: httpx.AsyncClient, item: dict[str, Any], agency: str, *steps: str
) -> None:
    url = f"/v1/referrals/{item['referral_id']}"
    for step in steps:
        body = {
            "close": {"outcome": "service_provided"},
            "reject": {"reason": "no_capacity"},
            "cancel": {"reason": "no_longer_needed"},
        }
        response = await referral.post(f"{url}/{step}", json=body.get(step), headers=auth(agency))
        assert response.status_code == 200, f"{step}: {response.text}"


async def test_intake_discloses_from_acceptance_until_close_cancel_or_reject(
    intake: httpx.AsyncClient, referral: httpx.AsyncClient, intake_db: asyncpg.Connection
) -> None:
    case_id = await register(intake, piura_adolescent_girl(), "ong-amanecer")
    outgoing = by_service(await referrals_of(referral, "ong-amanecer", case_id, 5))
    upe, cem = outgoing["upe-piura-proteccion"], outgoing["cem-piura-atencion"]
    dsf = outgoing["dsf-regularizacion"]  # a proposal, sent by hand below

    # Sent is not accepted: intake refuses even the referral service.
    refused = await _ask_intake(intake, upe, "upe-piura")
    assert refused.status_code == 403
    assert refused.json()["reason"] == "no_grant"

    for item, agency in ((upe, "upe-piura"), (cem, "cem-piura")):
        await _steps(referral, item, agency, "acknowledge", "accept")
        view = await disclosed(referral, f"/v1/referrals/{item['referral_id']}", agency)
        assert view["identity"]["child"]["given_names"] == "Daniela Valentina"
    audit = await intake_db.fetch(
        "SELECT requested_by, on_behalf_of, referral_id FROM disclosures WHERE case_id = $1",
        uuid.UUID(case_id),
    )
    assert sorted((r["on_behalf_of"], str(r["referral_id"])) for r in audit) == sorted(
        [("upe-piura", upe["referral_id"]), ("cem-piura", cem["referral_id"])]
    )
    assert {r["requested_by"] for r in audit} == {"svc-referral"}

    # The receiver closes one, the sender cancels the other: intake ends each grant.
    await _steps(referral, upe, "upe-piura", "close")
    await _steps(referral, cem, "ong-amanecer", "cancel")
    await _refused_by_intake(intake, upe, "upe-piura")
    await _refused_by_intake(intake, cem, "cem-piura")

    # Rejected: never granted.
    await _steps(referral, dsf, "ong-amanecer", "confirm")
    await _steps(referral, dsf, "ong-derechos-sin-fronteras", "acknowledge", "reject")

    async def dsf_grant() -> asyncpg.Record | None:
        return await intake_db.fetchrow(
            "SELECT * FROM grants WHERE referral_id = $1", uuid.UUID(dsf["referral_id"])
        )

    rejected = await poll_until(dsf_grant, lambda row: row is not None, what="rejection seen")
    assert rejected is not None
    assert (rejected["opened_at"], rejected["end_reason"]) == (None, "rejected")
    assert (await _ask_intake(intake, dsf, "ong-derechos-sin-fronteras")).status_code == 403

    ended = await intake_db.fetch(
        "SELECT referral_id, end_reason FROM grants WHERE case_id = $1 AND opened_at IS NOT NULL",
        uuid.UUID(case_id),
    )
    assert {(str(r["referral_id"]), r["end_reason"]) for r in ended} == {
        (upe["referral_id"], "closed"),
        (cem["referral_id"], "cancelled"),
    }
