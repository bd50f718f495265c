"""Referral's client of intake's identity API, against the real intake: what each of
intake's refusals becomes for the receiving agency."""

from __future__ import annotations

import uuid

import httpx

from services.referral.domain.disclosure import IdentityRequest, IdentityStatus
from services.referral.intake import IntakeIdentities
from tests.factories import piura_adolescent_girl
from tests.helpers import DEMO_KEYS, auth
from tests.referral.conftest import register


async def test_an_erased_case_is_reported_erased_and_a_withdrawn_one_withdrawn(
    intake: httpx.AsyncClient,
) -> None:
    identities = IntakeIdentities(lambda: intake, DEMO_KEYS["svc-referral"])
    withdrawn = await register(intake, piura_adolescent_girl(), "ong-amanecer")
    erased = await register(intake, piura_adolescent_girl(), "ong-amanecer")
    answer = await intake.post(
        f"/v1/cases/{withdrawn}/consent-withdrawal", json={}, headers=auth("ong-amanecer")
    )
    assert answer.status_code == 200, answer.text
    answer = await intake.post(
        f"/v1/cases/{erased}/erasure",
        json={"reason": "registered_in_error"},
        headers=auth("ong-amanecer"),
    )
    assert answer.status_code == 200, answer.text

    def ask(case_id: str) -> IdentityRequest:
        return IdentityRequest(uuid.UUID(case_id), uuid.uuid4(), "upe-piura", "accepted referral")

    assert await identities.identity(ask(erased)) is IdentityStatus.ERASED
    assert await identities.identity(ask(withdrawn)) is IdentityStatus.CONSENT_WITHDRAWN
    # No grant yet (intake has not seen an acceptance): try again later.
    live = await register(intake, piura_adolescent_girl(), "ong-amanecer")
    assert await identities.identity(ask(live)) is IdentityStatus.UNAVAILABLE
