"""Consent: referrals need it (or a documented best-interest decision); withdrawing it
cancels open referrals and stops disclosure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from contracts.topics import Topic
from tests.factories import piura_adolescent_girl
from tests.helpers import TopicReader, auth
from tests.referral.conftest import (
    by_service,
    case_consenting_to_psychosocial_support_only,
    disclosed,
    referrals_of,
    register,
)


async def test_withdrawal_cancels_open_referrals_and_stops_disclosure(
    intake: httpx.AsyncClient, referral: httpx.AsyncClient, topics: TopicReader
) -> None:
    case_id = await register(intake, piura_adolescent_girl(), "ong-amanecer")
    outgoing = by_service(await referrals_of(referral, "ong-amanecer", case_id, 5))
    cem = outgoing["cem-piura-atencion"]
    url = f"/v1/referrals/{cem['referral_id']}"
    for step in ("acknowledge", "accept"):
        assert (await referral.post(f"{url}/{step}", headers=auth("cem-piura"))).status_code == 200
    assert (await disclosed(referral, url, "cem-piura"))["identity"] is not None

    withdrawal = await intake.post(
        f"/v1/cases/{case_id}/consent-withdrawal", json={}, headers=auth("ong-amanecer")
    )
    assert withdrawal.status_code == 200, withdrawal.text

    records = await topics.for_case(Topic.REFERRALS, case_id, 5 + 2 + 5)
    cancelled = [r for r in records if r.type == "referral.cancelled"]
    assert {r.value["service_id"] for r in cancelled} == set(outgoing)
    assert {r.value["reason"] for r in cancelled} == {"consent_withdrawn"}
    cem_cancel = next(r for r in cancelled if r.value["service_id"] == "cem-piura-atencion")
    assert cem_cancel.value["to_agency_id"] == "cem-piura"  # the receiver is told

    after = (await referral.get(url, headers=auth("cem-piura"))).json()
    assert after["state"] == "cancelled"
    assert after["identity"] is None
    assert after["identity_status"] == "consent_withdrawn"
    again = await referral.post(
        "/v1/referrals",
        headers=auth("ong-amanecer"),
        json={"case_id": case_id, "service_id": "cem-piura-atencion"},
    )
    assert again.status_code == 409
    assert again.json()["reason"] == "consent_withdrawn"


async def test_consent_must_cover_the_service_or_a_best_interest_decision_is_documented(
    intake: httpx.AsyncClient, referral: httpx.AsyncClient, topics: TopicReader
) -> None:
    now = datetime.now(UTC)
    case_id, outgoing = await case_consenting_to_psychosocial_support_only(intake, referral, now)
    cem = outgoing["cem-piura-atencion"]
    assert cem["state"] == "proposed"  # mandatory, but the consent does not cover it
    assert cem["mandatory"] is True

    url = f"/v1/referrals/{cem['referral_id']}/confirm"
    refused = await referral.post(url, headers=auth("ong-amanecer"))
    assert refused.status_code == 409
    assert refused.json()["reason"] == "consent_does_not_cover_service"
    assert "violence_emergency_care" in refused.json()["detail"]

    future = await referral.post(
        url,
        headers=auth("ong-amanecer"),
        json={
            "best_interest": {
                "decided_by": "psy-lucia",
                "decided_at": (now + timedelta(days=1)).isoformat(),
                "reason": "Ongoing sexual violence at home; immediate protection needed.",
            }
        },
    )
    assert future.status_code == 422
    assert future.json()["errors"][0]["field"] == "best_interest.decided_at"

    decided = await referral.post(
        url,
        headers=auth("ong-amanecer"),
        json={
            "best_interest": {
                "decided_by": "psy-lucia",
                "decided_at": now.isoformat(),
                "reason": "Ongoing sexual violence at home; immediate protection needed.",
            }
        },
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["best_interest"]["decided_by"] == "psy-lucia"
    records = await topics.for_case(Topic.REFERRALS, case_id, 3)
    assert records[-1].type == "referral.sent"
    assert "immediate protection" not in str(records[-1].value)  # the reason stays in our DB
