"""One role per key: an agency's, a service's (internal) or an operator's. Service
and operator keys cannot register or change cases (403, naming the key's role); a
file giving one principal two roles stops intake at start, naming it."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import httpx
import pytest

from services.intake.app import IntakeSettings, create_app
from tests.factories import piura_adolescent_girl
from tests.helpers import auth

NOT_AGENCIES = ("svc-referral", "svc-followup", "svc-notifications", "enlace-ops")


@pytest.mark.parametrize("caller", NOT_AGENCIES)
async def test_service_and_operator_keys_cannot_register_or_change_cases(
    intake: httpx.AsyncClient, intake_db: asyncpg.Pool, caller: str
) -> None:
    body = piura_adolescent_girl()
    refused = await intake.post("/v1/cases", json=body, headers=auth(caller))
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["title"] == "Not permitted for this key"
    role = "operations" if caller == "enlace-ops" else "internal"
    assert problem["errors"] == [
        {
            "field": "header.Authorization",
            "message": f"a {role} key may not do this",
            "type": "role_not_permitted",
        }
    ]
    assert not await intake_db.fetchval(
        "SELECT count(*) FROM cases WHERE external_id = $1", body["external_id"]
    )

    created = await intake.post("/v1/cases", json=body, headers=auth("ong-amanecer"))
    case_id = created.json()["case_id"]
    withdrawal = await intake.post(
        f"/v1/cases/{case_id}/consent-withdrawal", json={}, headers=auth(caller)
    )
    read = await intake.get(f"/v1/cases/{case_id}", headers=auth(caller))
    assert (withdrawal.status_code, read.status_code) == (403, 403)
    status = await intake_db.fetchval(
        "SELECT consent_status FROM cases WHERE case_id = $1::uuid", case_id
    )
    assert status == "active"


def test_a_principal_with_two_roles_stops_intake_at_start(tmp_path: Path) -> None:
    agencies = tmp_path / "agencies.yaml"
    agencies.write_text(
        "agencies:\n"
        "  - {id: upe-lima, name: UPE Lima, country: PE, roles: [agency]}\n"
        "  - {id: svc-referral, name: Referral, country: PE, roles: [internal, agency]}\n"
    )
    with pytest.raises(ValueError, match="one role per key") as refused:
        create_app(IntakeSettings(agencies_file=agencies))
    assert "agency 'svc-referral'" in str(refused.value)
    assert "[internal, agency]" in str(refused.value)


def test_the_identity_principal_must_be_a_service(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ENLACE_IDENTITY_PRINCIPAL") as refused:
        create_app(IntakeSettings(identity_principal="upe-piura"))
    assert "'upe-piura' is not an internal principal" in str(refused.value)
