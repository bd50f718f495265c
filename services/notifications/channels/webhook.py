"""Webhooks the Standard Webhooks way (https://www.standardwebhooks.com): the signing
secret (`whsec_` + base64 of 32 random bytes), the signature headers, and the HTTP
client that posts them.

The signature is HMAC-SHA256, keyed with the secret's bytes, over
`<webhook-id>.<webhook-timestamp>.<body>`, sent as `v1,<base64>`; during a secret
rotation's overlap one `v1,` signature per secret, separated by a space. The receiver
checks any of them, and refuses a timestamp too far from its clock (replays).

The client follows no redirect, gives up after 15 s, and (outside the local profile)
connects only to public addresses: every host name is resolved by
`PublicOnlyResolver` at each new connection, so a name that resolves to a private
address at delivery time (DNS rebinding) is refused, not just at registration.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from services.notifications.channels import TransientSendError
from services.notifications.domain.partners import is_public

SECRET_PREFIX = "whsec_"
CONTENT_TYPE = "application/cloudevents+json"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    webhook_id: str, timestamp: int, body: bytes, secrets_in_use: Sequence[str]
) -> dict[str, str]:
    """The headers of one delivery: its id (the receiver's idempotency key), when it
    was signed, and one signature per secret in use (newest first)."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            signature(s, webhook_id, timestamp, body) for s in secrets_in_use
        ),
        "content-type": CONTENT_TYPE,
        "user-agent": "Enlace-Webhooks/1",
    }


class NotPublicAddress(OSError):
    """The endpoint's host resolved to no public address."""


class PublicOnlyResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, keeping public addresses only."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        public = [r for r in found if is_public(r["host"])]
        if not public:
            raise NotPublicAddress(f"{host} resolves to no public address")
        return public

    async def close(self) -> None:
        await self._inner.close()


async def resolves_publicly(host: str) -> bool:
    """At registration: whether every address of `host` is public (and it has one)."""
    resolver = DefaultResolver()
    try:
        found = await resolver.resolve(host, 443, socket.AF_UNSPEC)
    except OSError:
        return False
    finally:
        await resolver.close()
    return bool(found) and all(is_public(r["host"]) for r in found)


@dataclass(frozen=True)
class WebhookAnswer:
    status: int
    retry_after: float | None  # seconds, from a Retry-After header


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


class WebhookClient:
    """Posts deliveries; an answer is any HTTP status, and no answer (refused,
    unreachable, not public, timed out) is a TransientSendError with a short code."""

    def __init__(self, *, timeout_seconds: float, public_only: bool, max_connections: int) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._public_only = public_only
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                resolver=PublicOnlyResolver() if self._public_only else None,
                # Public only: resolved (and checked) for every new connection.
                use_dns_cache=not self._public_only,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> WebhookAnswer:
        try:
            async with self._client().post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                await response.read()  # the body is not kept: only the status matters
                return WebhookAnswer(
                    response.status, _retry_after(response.headers.get("retry-after"))
                )
        except aiohttp.ClientConnectorError as exc:
            if isinstance(getattr(exc, "os_error", None), NotPublicAddress):
                raise TransientSendError("address_not_public") from exc
            raise TransientSendError("connect_failed") from exc
        except TimeoutError as exc:
            raise TransientSendError("timeout") from exc
        except aiohttp.ClientError as exc:
            raise TransientSendError("connection_error") from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
