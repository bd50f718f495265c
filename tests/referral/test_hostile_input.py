"""A tampered cursor and a control character in a best-interest reason are refused
with 422 naming the field; the referral is left as it was."""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest

from tests.factories import guatemala_trafficking_boy
from tests.helpers import auth
from tests.referral.conftest import by_service, referrals_of, register

SENDER = "comunidad-segura-gt"


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor(f"0001-01-01T00:00:00+14:00|{uuid.uuid4()}"),
        _cursor(f"9999-12-31T23:59:59-14:00|{uuid.uuid4()}"),
        _cursor(f"2026-11-20T10:00:00|{uuid.uuid4()}"),  # no offset
        _cursor(f"2026-11-20T10:00:00+00:00|{uuid.uuid4()}") + "==",  # not the form handed out
        _cursor(f"2026-11-20T10:00:00Z|{uuid.uuid4()}"),
        _cursor("2026-11-20T10:00:00+00:00|not-an-id"),
        _cursor(f"2026-11-20T10:00:00+00:00\u0000|{uuid.uuid4()}"),
        "%00",
    ],
)
async def test_a_tampered_cursor_is_refused(referral: httpx.AsyncClient, cursor: str) -> None:
    response = await referral.get(
        "/v1/referrals", params={"cursor": cursor}, headers=auth("uavt-gt")
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "query.cursor"


async def test_a_nul_in_a_best_interest_reason_changes_nothing(
    intake: httpx.AsyncClient, referral: httpx.AsyncClient
) -> None:
    case_id = await register(intake, guatemala_trafficking_boy(), SENDER)
    items = await referrals_of(referral, SENDER, case_id, 5)
    proposed = next(item for item in by_service(items).values() if item["state"] == "proposed")
    url = f"/v1/referrals/{proposed['referral_id']}"
    before = (await referral.get(url, headers=auth(SENDER))).json()
    reason = "Paola Andrea Cruz, aged 13\u0000"
    response = await referral.post(
        f"{url}/confirm",
        json={
            "best_interest": {
                "decided_by": "cw-ana",
                "decided_at": "2026-11-20T10:00:00-06:00",
                "reason": reason,
            }
        },
        headers=auth(SENDER),
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "best_interest.reason"
    assert "Paola" not in response.text
    after = (await referral.get(url, headers=auth(SENDER))).json()
    assert (after["state"], after["version"]) == (before["state"], before["version"])
