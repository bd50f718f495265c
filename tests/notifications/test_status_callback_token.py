"""The SMS status callback trusts only signatures made with the token the service is
configured with: not the token that was once the code default, and nothing at all
when no token is configured. In-process, before the callback touches the database."""

from __future__ import annotations

import secrets

import httpx
import pytest

from services.notifications.app import NotificationsSettings, create_app
from services.notifications.channels.sms import sign_request

URL = "http://127.0.0.1:8004/v1/sms/status"
PARAMS = {"MessageStatus": "delivered", "AccountSid": "AC" + "0" * 32}  # no MessageSid
FORMER_CODE_DEFAULT = "local-sms-auth-token"


async def post_signed(token: str, signing_key: str) -> httpx.Response:
    settings = NotificationsSettings(env="local", sms_auth_token=token, sms_status_callback_url=URL)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        return await client.post(
            "/v1/sms/status",
            data=PARAMS,
            headers={"X-Twilio-Signature": sign_request(URL, PARAMS, signing_key)},
        )


@pytest.mark.parametrize(
    ("token", "signing_key"),
    [(secrets.token_urlsafe(32), FORMER_CODE_DEFAULT), ("", ""), ("", FORMER_CODE_DEFAULT)],
    ids=["former-default", "no-token-empty-key", "no-token-former-default"],
)
async def test_a_signature_not_made_with_the_configured_token_is_refused(
    token: str, signing_key: str
) -> None:
    response = await post_signed(token, signing_key)
    assert response.status_code == 403
    assert response.json()["errors"] == [
        {"field": "header.X-Twilio-Signature", "message": "signature mismatch"}
    ]


async def test_the_configured_token_signs_for_real() -> None:
    """The same request signed with the configured token passes the signature check
    (and is then judged on its content: MessageSid is missing)."""
    token = secrets.token_urlsafe(32)
    response = await post_signed(token, token)
    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": "body.MessageSid", "message": "required"}]
