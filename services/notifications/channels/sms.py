"""SMS through a provider adapter. `SmsProvider` is the whole interface a provider
must implement; `TwilioSmsProvider` speaks the Twilio Messages REST API (form-encoded
POST with basic auth), so it works with Twilio and with `local_sms`. Status
callbacks are signed the Twilio way (`sign_request` / `signature_is_valid`).

Every send carries a client reference (the delivery's id), and `lookup(reference)`
asks the provider whether a message with it was accepted: the worker asks before
any resend whose first attempt may have reached the provider, so a phone never
gets the same text twice (see README, "At most one message"). The reference travels
as `ClientReference`, which `local_sms` honours; a production provider must offer
the same (a client reference and a lookup by it) for that guarantee to hold."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx

from services.notifications.channels import PermanentSendError, TransientSendError

# Twilio error codes that say the destination can never receive this message.
PERMANENT_TWILIO_CODES = frozenset({21211, 21214, 21217, 21408, 21610, 21612, 21614, 30006})


@dataclass(frozen=True)
class SmsReceipt:
    provider_message_id: str
    status: str


class SmsProvider(Protocol):
    name: str

    async def send(self, to: str, body: str, *, reference: str) -> SmsReceipt: ...

    async def lookup(self, reference: str) -> SmsReceipt | None:
        """The message accepted with this client reference, or None: never sent."""
        ...


class TwilioSmsProvider:
    name = "twilio"

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        account_sid: str,
        auth_token: str,
        from_number: str,
        status_callback_url: str | None = None,
    ) -> None:
        self._client = client
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        credentials = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self._headers = {"Authorization": f"Basic {credentials}"}  # built once, not per send
        self._from = from_number
        self._callback = status_callback_url

    async def send(self, to: str, body: str, *, reference: str) -> SmsReceipt:
        form = {"To": to, "From": self._from, "Body": body, "ClientReference": reference}
        if self._callback:
            form["StatusCallback"] = self._callback
        try:
            response = await self._client.post(self._url, data=form, headers=self._headers)
        except httpx.TimeoutException as exc:
            raise TransientSendError("sms_timeout") from exc
        except httpx.TransportError as exc:
            raise TransientSendError("sms_connection_error", exc.__class__.__name__) from exc
        if response.status_code in (200, 201):
            payload = response.json()
            return SmsReceipt(str(payload["sid"]), str(payload.get("status", "queued")))
        code = _twilio_error_code(response)
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientSendError(f"sms_http_{response.status_code}")
        if code in PERMANENT_TWILIO_CODES or 400 <= response.status_code < 500:
            suffix = f"twilio_{code}" if code else f"sms_http_{response.status_code}"
            raise PermanentSendError(suffix)
        raise TransientSendError(f"sms_http_{response.status_code}")

    async def lookup(self, reference: str) -> SmsReceipt | None:
        try:
            response = await self._client.get(
                self._url, params={"ClientReference": reference}, headers=self._headers
            )
        except httpx.TimeoutException as exc:
            raise TransientSendError("sms_lookup_timeout") from exc
        except httpx.TransportError as exc:
            raise TransientSendError("sms_lookup_connection_error") from exc
        if response.status_code != 200:
            raise TransientSendError(f"sms_lookup_http_{response.status_code}")
        matches = [
            m for m in response.json().get("messages", []) if m.get("client_reference") == reference
        ]
        if not matches:
            return None
        return SmsReceipt(str(matches[0]["sid"]), str(matches[0].get("status", "queued")))


def _twilio_error_code(response: httpx.Response) -> int | None:
    try:
        code = response.json().get("code")
    except ValueError:
        return None
    return int(code) if isinstance(code, int | str) and str(code).isdigit() else None


def sign_request(url: str, params: Mapping[str, str], auth_token: str) -> str:
    """Twilio's X-Twilio-Signature: base64(HMAC-SHA1(token, url + sorted key+value))."""
    payload = url + "".join(f"{key}{params[key]}" for key in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def signature_is_valid(
    url: str, params: Mapping[str, str], signature: str | None, auth_token: str
) -> bool:
    if not signature or not auth_token:  # no token: nothing can be trusted as signed
        return False
    return hmac.compare_digest(sign_request(url, params, auth_token), signature)
