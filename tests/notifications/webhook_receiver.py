"""A partner's webhook receiver for the tests: a real HTTP server on a loopback port
that keeps every request as received (headers and raw body) and answers with the
status the test chooses. It verifies nothing itself: the tests verify what it kept
with the Standard Webhooks reference implementation (`standardwebhooks`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class WebhookReceiver:
    port: int
    status: int = 200
    retry_after: str | None = None
    # While set, every request waits (an endpoint that hangs) until `release()`.
    holding: bool = False
    received: list[Received] = field(default_factory=list)
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/enlace"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(Received({k.lower(): v for k, v in request.headers.items()}, body))
        if self.holding:
            await self._released.wait()
        headers = {"Retry-After": self.retry_after} if self.retry_after else None
        return web.Response(status=self.status, headers=headers)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/enlace", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def release(self) -> None:
        self.holding = False
        self._released.set()

    async def stop(self) -> None:
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def ids(self) -> list[str]:
        return [r.webhook_id for r in self.received]
