"""A child's identity is disclosed only under a grant intake holds itself: the
receiving agency of a referral, from its acceptance until it is closed, cancelled or
rejected or consent is withdrawn, learnt from the referral events on the real topic.
Only the referral service's key may ask; every disclosure is audited with the grant's
referral id."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from contracts import events as ev
from services.intake.domain import GRANT_EVENTS
from tests.factories import piura_adolescent_girl
from tests.helpers import auth, consumed
from tests.intake.conftest import Referral, ReferralTopic

PROBLEM = "application/problem+json"


async def _register(intake: httpx.AsyncClient) -> uuid.UUID:
    created = await intake.post(
        "/v1/cases", json=piura_adolescent_girl(), headers=auth("ong-amanecer")
    )
    assert created.status_code == 201, created.text
    return uuid.UUID(created.json()["case_id"])


async def _identity(
    intake: httpx.AsyncClient,
    case_id: uuid.UUID,
    on_behalf_of: str = "upe-piura",
    *,
    caller: str = "svc-referral",
    referral_id: uuid.UUID | None = None,
) -> httpx.Response:
    params: dict[str, Any] = {"on_behalf_of": on_behalf_of, "purpose": "accepted referral"}
    if referral_id is not None:
        params["referral_id"] = str(referral_id)
    return await intake.get(
        f"/internal/v1/cases/{case_id}/identity", params=params, headers=auth(caller)
    )


def _refused_without_grant(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert (body["title"], body["reason"]) == ("No disclosure grant", "no_grant")
    assert "child" not in body
    assert "Rojas" not in response.text


async def _audit(db: asyncpg.Pool, case_id: uuid.UUID) -> list[tuple[str, str, uuid.UUID]]:
    rows = await db.fetch(
        "SELECT requested_by, on_behalf_of, referral_id FROM disclosures "
        "WHERE case_id = $1 ORDER BY id",
        case_id,
    )
    return [(r["requested_by"], r["on_behalf_of"], r["referral_id"]) for r in rows]


async def _grant(db: asyncpg.Pool, referral: Referral) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM grants WHERE referral_id = $1", referral.referral_id)
    assert row is not None
    return row


async def _publish_and_wait(
    topic: ReferralTopic, db: asyncpg.Pool, *models: ev.ReferralEventV1
) -> None:
    """Publish, then wait until intake has applied the last event it handles (one
    case, one partition: the earlier ones were seen too; types it does not handle
    leave no trace)."""
    events = await topic.publish(*models)
    handled = {m.event_type for m in GRANT_EVENTS}
    *_, last = (e for e in events if e.type in handled)
    await consumed(db, last.id)


async def test_an_agency_without_a_grant_is_refused(
    intake: httpx.AsyncClient, intake_db: asyncpg.Pool, referral_topic: ReferralTopic
) -> None:
    case_id = await _register(intake)
    _refused_without_grant(await _identity(intake, case_id))
    # Sent and acknowledged are not enough: the details follow the acceptance.
    referral = Referral(case_id)
    dropped_proposal = Referral(case_id, to_agency="cem-piura", service_id="cem-piura-atencion")
    await _publish_and_wait(
        referral_topic,
        intake_db,
        referral.step(ev.ReferralSentV1),
        referral.step(ev.ReferralAcknowledgedV1),
        dropped_proposal.step(ev.ReferralCancelledV1),  # a marker intake handles
    )
    _refused_without_grant(await _identity(intake, case_id, referral_id=referral.referral_id))
    assert await _audit(intake_db, case_id) == []


async def test_an_accepted_referral_grants_its_receiver_and_the_audit_names_it(
    intake: httpx.AsyncClient, intake_db: asyncpg.Pool, referral_topic: ReferralTopic
) -> None:
    case_id = await _register(intake)
    referral = Referral(case_id)
    await _publish_and_wait(referral_topic, intake_db, *referral.accepted())

    # No referral id from the caller: the audit still records the grant's.
    disclosed = await _identity(intake, case_id)
    assert disclosed.status_code == 200, disclosed.text
    assert disclosed.json()["child"]["family_names"] == "Rojas Méndez"
    named = await _identity(intake, case_id, referral_id=referral.referral_id)
    assert named.status_code == 200
    assert await _audit(intake_db, case_id) == [
        ("svc-referral", "upe-piura", referral.referral_id),
        ("svc-referral", "upe-piura", referral.referral_id),
    ]
    # Another agency, or this one for a referral it holds no grant for: refused.
    _refused_without_grant(await _identity(intake, case_id, "cem-piura"))
    _refused_without_grant(await _identity(intake, case_id, referral_id=uuid.uuid4()))
    assert len(await _audit(intake_db, case_id)) == 2
    grant = await _grant(intake_db, referral)
    assert (grant["agency_id"], grant["version"], grant["ended_at"]) == ("upe-piura", 3, None)


@pytest.mark.parametrize(
    ("ending", "reason"),
    [
        ((ev.ReferralStartedV1, ev.ReferralClosedV1), "closed"),
        ((ev.ReferralCancelledV1,), "cancelled"),
    ],
    ids=["close", "cancel"],
)
async def test_closing_or_cancelling_ends_the_grant(
    intake: httpx.AsyncClient,
    intake_db: asyncpg.Pool,
    referral_topic: ReferralTopic,
    ending: tuple[type[ev.ReferralEventV1], ...],
    reason: str,
) -> None:
    case_id = await _register(intake)
    referral = Referral(case_id)
    await _publish_and_wait(referral_topic, intake_db, *referral.accepted())
    assert (await _identity(intake, case_id)).status_code == 200

    await _publish_and_wait(referral_topic, intake_db, *(referral.step(m) for m in ending))

    _refused_without_grant(await _identity(intake, case_id))
    _refused_without_grant(await _identity(intake, case_id, referral_id=referral.referral_id))
    grant = await _grant(intake_db, referral)
    assert grant["end_reason"] == reason
    assert grant["opened_at"] is not None
    assert grant["ended_at"] >= grant["opened_at"]
    # A stale acceptance redelivered later (new event id) does not reopen it.
    stale = Referral(case_id, referral_id=referral.referral_id, version=2)
    await _publish_and_wait(referral_topic, intake_db, stale.step(ev.ReferralAcceptedV1))
    _refused_without_grant(await _identity(intake, case_id))
    assert len(await _audit(intake_db, case_id)) == 1


async def test_a_rejected_referral_never_grants(
    intake: httpx.AsyncClient, intake_db: asyncpg.Pool, referral_topic: ReferralTopic
) -> None:
    case_id = await _register(intake)
    rejected = Referral(case_id)
    accepted_elsewhere = Referral(case_id, to_agency="cem-piura", service_id="cem-piura-atencion")
    await _publish_and_wait(
        referral_topic,
        intake_db,
        rejected.step(ev.ReferralSentV1),
        rejected.step(ev.ReferralAcknowledgedV1),
        rejected.step(ev.ReferralRejectedV1),
        *accepted_elsewhere.accepted(),
    )

    _refused_without_grant(await _identity(intake, case_id))
    assert (await _identity(intake, case_id, "cem-piura")).status_code == 200
    grant = await _grant(intake_db, rejected)
    assert (grant["opened_at"], grant["end_reason"]) == (None, "rejected")
    # Had it been accepted late (out of order), the rejection would still stand.
    late = Referral(case_id, referral_id=rejected.referral_id, version=2)
    await _publish_and_wait(referral_topic, intake_db, late.step(ev.ReferralAcceptedV1))
    _refused_without_grant(await _identity(intake, case_id))


async def test_consent_withdrawal_ends_every_grant_of_the_case_at_once(
    intake: httpx.AsyncClient, intake_db: asyncpg.Pool, referral_topic: ReferralTopic
) -> None:
    case_id = await _register(intake)
    upe = Referral(case_id)
    cem = Referral(case_id, to_agency="cem-piura", service_id="cem-piura-atencion")
    await _publish_and_wait(referral_topic, intake_db, *upe.accepted(), *cem.accepted())
    assert (await _identity(intake, case_id)).status_code == 200
    assert (await _identity(intake, case_id, "cem-piura")).status_code == 200

    withdrawn = await intake.post(
        f"/v1/cases/{case_id}/consent-withdrawal", json={}, headers=auth("ong-amanecer")
    )
    assert withdrawn.status_code == 200, withdrawn.text

    # Ended by the withdrawal's own transaction: no event had to travel first.
    rows = await intake_db.fetch(
        "SELECT agency_id, end_reason FROM grants WHERE case_id = $1 ORDER BY agency_id", case_id
    )
    assert [(r["agency_id"], r["end_reason"]) for r in rows] == [
        ("cem-piura", "consent_withdrawn"),
        ("upe-piura", "consent_withdrawn"),
    ]
    for agency in ("upe-piura", "cem-piura"):
        refused = await _identity(intake, case_id, agency)
        assert refused.status_code == 409
        assert refused.json()["title"] == "Consent withdrawn"
        assert "child" not in refused.json()
    # An acceptance arriving after the withdrawal opens nothing.
    late = Referral(case_id, to_agency="ong-derechos-sin-fronteras", service_id="dsf")
    await _publish_and_wait(referral_topic, intake_db, *late.accepted())
    grant = await _grant(intake_db, late)
    assert (grant["opened_at"], grant["end_reason"]) == (None, "consent_withdrawn")
    assert len(await _audit(intake_db, case_id)) == 2


async def test_identity_answers_the_referral_service_alone(
    intake: httpx.AsyncClient, intake_db: asyncpg.Pool, referral_topic: ReferralTopic
) -> None:
    case_id = await _register(intake)
    referral = Referral(case_id)
    await _publish_and_wait(referral_topic, intake_db, *referral.accepted())
    # Another service, an operator, even the agency holding the grant: as if the
    # path did not exist.
    for caller in ("svc-followup", "svc-notifications", "enlace-ops", "upe-piura"):
        refused = await _identity(intake, case_id, caller=caller)
        assert refused.status_code == 404, caller
        assert refused.headers["content-type"] == PROBLEM
        assert (refused.json()["title"], refused.json()["detail"]) == (
            "Not found",
            "No such resource.",
        )
    assert await _audit(intake_db, case_id) == []
    assert (await _identity(intake, case_id)).status_code == 200


async def test_caseworker_contact_answers_the_notifications_service_alone(
    intake: httpx.AsyncClient,
) -> None:
    await _register(intake)
    url = "/internal/v1/caseworkers/ong-amanecer/cw-rosa"
    for caller in ("svc-referral", "svc-followup", "enlace-ops", "ong-amanecer"):
        refused = await intake.get(url, headers=auth(caller))
        assert refused.status_code == 404, caller
        assert refused.headers["content-type"] == PROBLEM
        assert "phone" not in refused.text
    served = await intake.get(url, headers=auth("svc-notifications"))
    assert served.status_code == 200
    assert served.json()["phone"] == "+51987654321"
