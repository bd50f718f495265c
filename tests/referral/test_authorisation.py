"""A third agency, on every endpoint, learns nothing and changes nothing: it is
answered exactly like a missing object."""

from __future__ import annotations

import uuid

import asyncpg
import httpx

from tests.factories import piura_adolescent_girl
from tests.helpers import auth
from tests.referral.conftest import by_service, referrals_of, register

THIRD = "uavt-do"


async def test_third_agency_sees_and_changes_nothing(
    intake: httpx.AsyncClient, referral: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    case_id = await register(intake, piura_adolescent_girl(), "ong-amanecer")
    outgoing = by_service(await referrals_of(referral, "ong-amanecer", case_id, 5))
    upe = outgoing["upe-piura-proteccion"]
    proposal = outgoing["dsf-regularizacion"]
    url = f"/v1/referrals/{upe['referral_id']}"
    for step in ("acknowledge", "accept"):
        assert (await referral.post(f"{url}/{step}", headers=auth("upe-piura"))).status_code == 200
    missing = await referral.get(f"/v1/referrals/{uuid.uuid4()}", headers=auth(THIRD))
    assert missing.status_code == 404

    third = auth(THIRD)
    for referral_id in (upe["referral_id"], proposal["referral_id"]):
        read = await referral.get(f"/v1/referrals/{referral_id}", headers=third)
        assert (read.status_code, read.json()) == (404, missing.json())
        for step, body in (
            ("confirm", None),
            ("acknowledge", None),
            ("accept", None),
            ("reject", {"reason": "no_capacity"}),
            ("start", None),
            ("close", {"outcome": "service_provided"}),
            ("cancel", {"reason": "sent_in_error"}),
        ):
            response = await referral.post(
                f"/v1/referrals/{referral_id}/{step}", json=body, headers=third
            )
            assert (response.status_code, response.json()) == (404, missing.json()), step
    for params in ({}, {"direction": "incoming"}, {"direction": "outgoing"}, {"case_id": case_id}):
        listing = await referral.get("/v1/referrals", params=params, headers=third)
        assert listing.status_code == 200
        assert all(item["case_id"] != case_id for item in listing.json()["items"])
    by_hand = await referral.post(
        "/v1/referrals", headers=third, json={"case_id": case_id, "service_id": "uavt-do-atencion"}
    )
    assert by_hand.status_code == 404
    for method, path in (
        ("GET", "/v1/admin/directory"),
        ("PUT", "/v1/admin/directory/organizations/uavt-do"),
        ("DELETE", "/v1/admin/directory/organizations/uavt-do"),
    ):
        admin = await referral.request(method, path, headers=third, json={})
        assert admin.status_code == 404, path

    # Nothing changed, nothing was disclosed to anyone but the receiver.
    rows = await db.fetch(
        "SELECT service_id, state FROM referrals WHERE case_id = $1", uuid.UUID(case_id)
    )
    states = {r["service_id"]: r["state"] for r in rows}
    assert states["upe-piura-proteccion"] == "accepted"
    assert states["dsf-regularizacion"] == "proposed"
    assert await db.fetchval("SELECT count(*) FROM disclosures WHERE agency_id = $1", THIRD) == 0

    # A party to the referral may not take the other party's step.
    sender_accepts = await referral.post(
        f"{url}/close", json={"outcome": "service_provided"}, headers=auth("ong-amanecer")
    )
    assert sender_accepts.status_code == 403
    receiver_cancels = await referral.post(
        f"{url}/cancel", json={"reason": "other"}, headers=auth("upe-piura")
    )
    assert receiver_cancels.status_code == 403
    # The sender sees the referral but never the child's identifying details.
    sender_view = (await referral.get(url, headers=auth("ong-amanecer"))).json()
    assert sender_view["identity"] is None
    unauthenticated = await referral.get(url)
    assert unauthenticated.status_code == 401
