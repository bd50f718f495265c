"""Email over SMTP (aiosmtplib), with implicit TLS / STARTTLS and auth from settings.
Connections are kept open and reused (RSET-free: one transaction after another on the
same session), which roughly halves the round trips per message."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from email.header import Header
from email.mime.text import MIMEText
from typing import cast
from urllib.parse import quote

import aiosmtplib
import httpx

from services.notifications.channels import PermanentSendError, SendError, TransientSendError


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    from_address: str
    use_tls: bool = False  # implicit TLS (port 465)
    start_tls: bool = False  # STARTTLS upgrade
    username: str | None = None
    password: str | None = None
    timeout: float = 10.0
    pool_size: int = 16  # idle connections kept for reuse


class SmtpEmailSender:
    """`lookup_url`: where the provider answers `GET /messages/<Message-ID>` (200 found,
    404 not); without it an uncertain attempt cannot be reconciled (README)."""

    name = "smtp"

    def __init__(
        self,
        config: SmtpConfig,
        *,
        lookup_url: str | None = None,
        lookup_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._config = config
        self._idle: list[aiosmtplib.SMTP] = []
        self._lookup_url = lookup_url.rstrip("/") if lookup_url else None
        self._lookup_client = lookup_client

    def message_id(self, local_id: str) -> str:
        return f"{local_id}@{self._config.from_address.rsplit('@', 1)[-1]}"

    async def lookup(self, local_id: str) -> bool | None:
        """Whether the provider accepted the message with this id; None: cannot tell."""
        if self._lookup_url is None or self._lookup_client is None:
            return None
        url = f"{self._lookup_url}/messages/{quote(self.message_id(local_id), safe='@')}"
        try:
            response = await self._lookup_client.get(url)
        except httpx.HTTPError as exc:
            raise TransientSendError("email_lookup_unavailable", exc.__class__.__name__) from exc
        if response.status_code in (200, 404):
            return response.status_code == 200
        raise TransientSendError(f"email_lookup_http_{response.status_code}")

    async def send(self, to: str, subject: str, body: str, *, message_id: str) -> str:
        c = self._config
        # compat32 MIME objects: several times cheaper to build than EmailMessage
        message = MIMEText(body, "plain", "utf-8")
        message["From"] = c.from_address
        message["To"] = to
        message["Subject"] = cast(str, Header(subject, "utf-8"))  # folded and RFC 2047-encoded
        local_id = message_id  # also the provider id in events: no '@' allowed there
        message["Message-ID"] = f"<{self.message_id(local_id)}>"
        raw = message.as_bytes()
        while True:
            client, reused = await self._checkout()
            try:
                await client.sendmail(c.from_address, [to], raw)
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
                _close(client)
                if reused:
                    continue  # an idle connection the server had dropped: use a fresh one
                raise _classify(exc) from exc
            except Exception as exc:
                _close(client)
                raise _classify(exc) from exc
            if len(self._idle) < c.pool_size:
                self._idle.append(client)
            else:
                with contextlib.suppress(Exception):
                    await client.quit()
            return local_id

    async def _checkout(self) -> tuple[aiosmtplib.SMTP, bool]:
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client, True
        c = self._config
        client = aiosmtplib.SMTP(
            hostname=c.host,
            port=c.port,
            use_tls=c.use_tls,
            start_tls=c.start_tls,
            username=c.username,
            password=c.password,
            timeout=c.timeout,
        )
        try:
            await client.connect()
        except Exception as exc:
            _close(client)
            raise _classify(exc) from exc
        return client, False

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.quit(), timeout=2)
            _close(client)


def _close(client: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(Exception):
        client.close()


def _classify(exc: BaseException) -> SendError:
    """SMTP 5xx for a mailbox (or the message) is permanent; 4xx, refused connections
    and timeouts are transient."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [err.code for err in exc.recipients]
        if any(500 <= code < 600 for code in codes):
            return PermanentSendError(f"smtp_{max(codes)}", "recipient refused")
        return TransientSendError(f"smtp_{min(codes) if codes else 400}")
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return PermanentSendError(f"smtp_{exc.code}", "authentication")
    if isinstance(
        exc,
        aiosmtplib.SMTPConnectError
        | aiosmtplib.SMTPServerDisconnected
        | aiosmtplib.SMTPTimeoutError,
    ):
        return TransientSendError("smtp_unavailable", exc.__class__.__name__)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if 500 <= exc.code < 600:
            return PermanentSendError(f"smtp_{exc.code}")
        return TransientSendError(f"smtp_{exc.code}")
    return TransientSendError("smtp_unavailable", exc.__class__.__name__)
