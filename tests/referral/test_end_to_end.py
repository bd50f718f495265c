"""Intake → case.created on Kafka → referral routes it → referral.* on the real topic →
the receiving agency works the referral to a closed loop."""

from __future__ import annotations

import uuid

import asyncpg
import httpx

from contracts.topics import Topic
from tests.factories import piura_adolescent_girl
from tests.helpers import TopicReader, auth
from tests.referral.conftest import disclosed, referrals_of, register


async def test_case_to_closed_loop(
    intake: httpx.AsyncClient,
    referral: httpx.AsyncClient,
    topics: TopicReader,
    db: asyncpg.Connection,
) -> None:
    case_id = await register(intake, piura_adolescent_girl(), "ong-amanecer")

    records = await topics.for_case(Topic.REFERRALS, case_id, 5)
    assert all(r.key == case_id for r in records)
    sent = {r.value["service_id"]: r for r in records if r.type == "referral.sent"}
    proposed = {r.value["service_id"] for r in records if r.type == "referral.proposed"}
    assert set(sent) == {"upe-piura-proteccion", "cem-piura-atencion"}
    assert proposed == {
        "casa-refugio-acogida",
        "ninas-lideres-empoderamiento",
        "dsf-regularizacion",
    }
    upe_sent = sent["upe-piura-proteccion"].value
    assert upe_sent["to_agency_id"] == "upe-piura"
    assert upe_sent["from_agency_id"] == "ong-amanecer"
    assert upe_sent["mandatory"] is True
    assert upe_sent["routing_rule"] == "unaccompanied-migrant-special-protection"
    assert upe_sent["urgency"] == "high"
    assert upe_sent["cross_border"] is False

    (upe,) = await referrals_of(referral, "upe-piura", case_id, 1, direction="incoming")
    assert upe["state"] == "sent"
    assert upe["allowed_actions"] == ["acknowledge"]
    before = await referral.get(f"/v1/referrals/{upe['referral_id']}", headers=auth("upe-piura"))
    assert before.json()["identity"] is None
    assert before.json()["identity_status"] == "after_acceptance_only"

    url = f"/v1/referrals/{upe['referral_id']}"
    ack = await referral.post(
        f"{url}/acknowledge", headers={**auth("upe-piura"), "If-Match": '"1"'}
    )
    assert ack.status_code == 200, ack.text
    assert ack.headers["ETag"] == '"2"'
    accept = await referral.post(f"{url}/accept", headers={**auth("upe-piura"), "If-Match": '"2"'})
    assert accept.status_code == 200, accept.text

    body = await disclosed(referral, url, "upe-piura")
    assert body["identity_status"] == "disclosed"
    assert body["identity"]["child"]["given_names"] == "Daniela Valentina"
    audit = await db.fetch(
        "SELECT * FROM disclosures WHERE referral_id = $1", uuid.UUID(body["referral_id"])
    )
    assert len(audit) == 1
    assert audit[0]["agency_id"] == "upe-piura"
    assert set(audit[0]["fields"]) == {"child", "location"}

    close = await referral.post(
        f"{url}/close",
        json={"outcome": "service_provided"},
        headers={**auth("upe-piura"), "If-Match": '"3"'},
    )
    assert close.status_code == 200, close.text
    assert close.json()["state"] == "closed"

    records = await topics.for_case(Topic.REFERRALS, case_id, 8)
    mine = [r for r in records if r.value.get("referral_id") == upe["referral_id"]]
    assert [r.type for r in mine] == [
        "referral.sent",
        "referral.acknowledged",
        "referral.accepted",
        "referral.closed",
    ]
    assert [r.value["version"] for r in mine] == [1, 2, 3, 4]
    assert mine[-1].value["outcome"] == "service_provided"
    assert {r.key for r in records} == {case_id}
    assert len({r.partition for r in records}) == 1
    offsets = [r.offset for r in mine]
    assert offsets == sorted(offsets)
    raw = str([r.value for r in records])
    for identifier in ("Daniela", "Rojas", "V-31234567", "+51987654321"):
        assert identifier not in raw
