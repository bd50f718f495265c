"""The webhook client against real HTTP servers on loopback: no redirect is followed,
a slow endpoint is given up at the timeout, and outside the local profile a host
that resolves to a private address is never connected to (checked at connection
time, whatever was checked at registration)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from services.notifications.channels import TransientSendError
from services.notifications.channels.webhook import WebhookClient, resolves_publicly
from tests.helpers import free_port


class Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.hits: list[str] = []
        self.release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()

        async def redirect(request: web.Request) -> web.Response:
            self.hits.append(request.path)
            raise web.HTTPFound(f"http://127.0.0.1:{self.port}/elsewhere")

        async def elsewhere(request: web.Request) -> web.Response:
            self.hits.append(request.path)
            return web.Response(status=204)

        async def slow(request: web.Request) -> web.Response:
            self.hits.append(request.path)
            await self.release.wait()  # answers only once the test lets it
            return web.Response(status=204)

        app.router.add_post("/redirect", redirect)
        app.router.add_post("/elsewhere", elsewhere)
        app.router.add_post("/slow", slow)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    running = Server()
    await running.start()
    yield running
    await running.stop()


async def test_a_redirect_is_an_answer_never_followed(server: Server) -> None:
    client = WebhookClient(timeout_seconds=5, public_only=False, max_connections=4)
    try:
        answer = await client.post(f"http://127.0.0.1:{server.port}/redirect", b"{}", {})
    finally:
        await client.aclose()
    assert answer.status == 302
    assert server.hits == ["/redirect"]


async def test_a_slow_endpoint_is_given_up_at_the_timeout(server: Server) -> None:
    client = WebhookClient(timeout_seconds=0.3, public_only=False, max_connections=4)
    try:
        with pytest.raises(TransientSendError) as failed:
            await client.post(f"http://127.0.0.1:{server.port}/slow", b"{}", {})
    finally:
        await client.aclose()
    assert failed.value.code == "timeout"
    assert server.hits == ["/slow"]


async def test_outside_the_local_profile_a_private_address_is_never_connected_to(
    server: Server,
) -> None:
    """`localhost` passes no URL rule by name alone here: the resolver refuses the
    loopback address it resolves to, at the connection."""
    client = WebhookClient(timeout_seconds=5, public_only=True, max_connections=4)
    try:
        with pytest.raises(TransientSendError) as refused:
            await client.post(f"http://localhost:{server.port}/elsewhere", b"{}", {})
    finally:
        await client.aclose()
    assert refused.value.code == "address_not_public"
    assert server.hits == []
    assert not await resolves_publicly("localhost")
