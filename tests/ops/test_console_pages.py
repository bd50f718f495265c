"""The console without a browser: every page asks for a session and renders with
one; an action that cannot be done says why and changes nothing; a signed-out
session is over."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.helpers import DEMO_KEYS
from tests.ops.conftest import Ops

PAGES = ("pipeline", "dead-letters", "referral-health", "audit")


@pytest.fixture
async def console(ops: Ops) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=ops.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
        yield client


async def _sign_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.post("/console/sign-in", data={"api_key": key})


def _csrf(html: str) -> str:
    marker = 'name="csrf" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


async def test_pages_need_a_session_and_render_with_one(console: httpx.AsyncClient) -> None:
    for name in PAGES:
        answer = await console.get(f"/console/{name}")
        assert (answer.status_code, answer.headers["location"]) == (303, "/console/sign-in")
    refused = await _sign_in(console, "not-a-key")
    assert refused.status_code == 401
    assert "The key is not recognised" in refused.text
    signed_in = await _sign_in(console, DEMO_KEYS["enlace-ops"])
    assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/console/pipeline")
    cookie = signed_in.headers["set-cookie"]
    for flag in ("HttpOnly", "SameSite=strict", "Path=/console"):
        assert flag.lower() in cookie.lower()
    for name in PAGES:
        answer = await console.get(f"/console/{name}")
        assert answer.status_code == 200, name
        assert "default-src 'none'" in answer.headers["content-security-policy"]
        assert 'id="signed-in-as">enlace-ops<' in answer.text


async def test_an_action_that_cannot_be_done_says_why(console: httpx.AsyncClient) -> None:
    await _sign_in(console, DEMO_KEYS["enlace-ops"])
    csrf = _csrf((await console.get("/console/dead-letters")).text)
    nothing = await console.post(
        "/console/dead-letters/action", data={"csrf": csrf, "action": "discard", "reason": "x"}
    )
    assert nothing.status_code == 422
    assert "Nothing done: select at least one dead letter" in nothing.text
    no_reason = await console.post(
        "/console/dead-letters/action",
        data={"csrf": csrf, "action": "discard", "records": "protection.cases.v1.dlq:0:999999"},
    )
    assert no_reason.status_code == 422
    assert "a discard needs a reason" in no_reason.text
    elsewhere = await console.post(
        "/console/dead-letters/action",
        data={"csrf": csrf, "action": "redrive", "records": "protection.cases.v1.dlq:0:1"},
        headers={"Origin": "https://attacker.example"},
    )
    assert elsewhere.status_code == 403


async def test_signing_out_ends_the_session(console: httpx.AsyncClient) -> None:
    await _sign_in(console, DEMO_KEYS["enlace-ops"])
    csrf = _csrf((await console.get("/console/pipeline")).text)
    out = await console.post("/console/sign-out", data={"csrf": csrf})
    assert (out.status_code, out.headers["location"]) == (303, "/console/sign-in")
    after = await console.get("/console/pipeline")
    assert (after.status_code, after.headers["location"]) == (303, "/console/sign-in")
