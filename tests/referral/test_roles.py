"""One role per key: a service or an operator key never acts on referrals (403, naming
the key's role) and changes nothing; operators keep the directory administration and
services the internal contact directory."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import pytest

from tests.factories import piura_adolescent_girl
from tests.helpers import auth
from tests.referral.conftest import by_service, referrals_of, register

NOT_AGENCIES = ("svc-referral", "svc-followup", "svc-notifications", "enlace-ops")


@pytest.mark.parametrize("caller", NOT_AGENCIES)
async def test_service_and_operator_keys_cannot_act_on_referrals(
    intake: httpx.AsyncClient, referral: httpx.AsyncClient, db: asyncpg.Connection, caller: str
) -> None:
    case_id = await register(intake, piura_adolescent_girl(), "ong-amanecer")
    outgoing = by_service(await referrals_of(referral, "ong-amanecer", case_id, 5))
    key = auth(caller)
    role = "operations" if caller == "enlace-ops" else "internal"

    def assert_refused(response: httpx.Response, what: str) -> None:
        assert response.status_code == 403, f"{what}: {response.text}"
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["message"] == f"a {role} key may not do this"

    for item in outgoing.values():
        url = f"/v1/referrals/{item['referral_id']}"
        assert_refused(await referral.get(url, headers=key), "read")
        for step, body in (
            ("confirm", None),
            ("acknowledge", None),
            ("accept", None),
            ("reject", {"reason": "no_capacity"}),
            ("start", None),
            ("close", {"outcome": "service_provided"}),
            ("cancel", {"reason": "sent_in_error"}),
        ):
            assert_refused(await referral.post(f"{url}/{step}", json=body, headers=key), step)
    assert_refused(await referral.get("/v1/referrals", headers=key), "list")
    by_hand = await referral.post(
        "/v1/referrals", headers=key, json={"case_id": case_id, "service_id": "uavt-do-atencion"}
    )
    assert_refused(by_hand, "refer by hand")

    rows = await db.fetch(
        "SELECT service_id, state, version FROM referrals WHERE case_id = $1", uuid.UUID(case_id)
    )
    assert {r["service_id"]: (r["state"], r["version"]) for r in rows} == {
        s: (item["state"], item["version"]) for s, item in outgoing.items()
    }
    # Reading the directory stays open to every key.
    assert (await referral.get("/v1/services", headers=key)).status_code == 200


async def test_directory_organisations_are_partner_agencies_only(
    referral: httpx.AsyncClient,
) -> None:
    ops = auth("enlace-ops")
    directory = (await referral.get("/v1/admin/directory", headers=ops)).json()
    organization = {**directory["organizations"][0], "id": "svc-followup"}
    refused = await referral.put(
        "/v1/admin/directory/organizations/svc-followup", json=organization, headers=ops
    )
    assert refused.status_code == 422, refused.text
    assert [(e["field"], e["message"]) for e in refused.json()["errors"]] == [
        ("id", "is not an agency of agencies.yaml")
    ]
