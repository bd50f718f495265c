"""SMS through a provider adapter. `SmsProvider` is the whole interface a provider
must implement; `TwilioSmsProvider` speaks the Twilio Messages REST API (form-encoded
POST with basic auth), so it works with Twilio and with `local_sms`. Status
callbacks are signed the Twilio way (`sign_request` / `signature_is_valid`).

Every send carries a client reference (the delivery's id), and `lookup(reference)`
asks the provider whether a message with it was accepted: the worker asks before
any resend whose first attempt may have reached the provider, so a phone never
gets the same text twice (see README, "At most one message"). The reference travels
as `ClientReference`, which `local_sms` honours; a production provider must offer
the same (a client reference and a lookup by it) for that guarantee to hold.

The client is aiohttp, not httpx: httpx's request path (its connection pool scans
every connection on each request) was the largest share of the delivery worker's
CPU in a profile of the pipeline; the local SMS provider's callbacks, moved the same
way, went from 5 to 2 ms of CPU per case (`make bench`, README "How fast")."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

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
        *,
        base_url: str,
        account_sid: str,
        auth_token: str,
        from_number: str,
        status_callback_url: str | None = None,
        timeout: float = 10.0,
        max_connections: int = 100,
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        credentials = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self._headers = {"Authorization": f"Basic {credentials}"}  # built once, not per send
        self._from = from_number
        self._callback = status_callback_url

    def _http(self) -> aiohttp.ClientSession:
        """Made on first use, inside the running loop; connections kept and reused."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                headers=self._headers,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, to: str, body: str, *, reference: str) -> SmsReceipt:
        form = {"To": to, "From": self._from, "Body": body, "ClientReference": reference}
        if self._callback:
            form["StatusCallback"] = self._callback
        try:
            async with self._http().post(self._url, data=form) as response:
                status, payload = response.status, await _json(response)
        except TimeoutError as exc:
            raise TransientSendError("sms_timeout") from exc
        except aiohttp.ClientError as exc:
            raise TransientSendError("sms_connection_error", exc.__class__.__name__) from exc
        if status in (200, 201) and "sid" in payload:
            return SmsReceipt(str(payload["sid"]), str(payload.get("status", "queued")))
        code = payload.get("code")
        code = int(code) if isinstance(code, int | str) and str(code).isdigit() else None
        if status == 429 or status >= 500 or status in (200, 201):
            raise TransientSendError(f"sms_http_{status}")
        if code in PERMANENT_TWILIO_CODES or 400 <= status < 500:
            raise PermanentSendError(f"twilio_{code}" if code else f"sms_http_{status}")
        raise TransientSendError(f"sms_http_{status}")

    async def lookup(self, reference: str) -> SmsReceipt | None:
        try:
            async with self._http().get(
                self._url, params={"ClientReference": reference}
            ) as response:
                status, payload = response.status, await _json(response)
        except TimeoutError as exc:
            raise TransientSendError("sms_lookup_timeout") from exc
        except aiohttp.ClientError as exc:
            raise TransientSendError("sms_lookup_connection_error") from exc
        if status != 200:
            raise TransientSendError(f"sms_lookup_http_{status}")
        messages = payload.get("messages", [])
        matches = [m for m in messages if m.get("client_reference") == reference]
        if not matches:
            return None
        return SmsReceipt(str(matches[0]["sid"]), str(matches[0].get("status", "queued")))


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """The body as a JSON object, or {} (an error page, an empty body)."""
    try:
        payload = await response.json(content_type=None)
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


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
