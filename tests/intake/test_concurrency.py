"""Many registrations at once, more than the connection pool holds: all succeed,
with distinct reference codes (a nested pool acquire once deadlocked here)."""

from __future__ import annotations

import asyncio

import httpx

from tests.factories import piura_adolescent_girl
from tests.helpers import auth


async def test_concurrent_registrations_in_one_region_complete(
    intake: httpx.AsyncClient,
) -> None:
    bodies = [piura_adolescent_girl() for _ in range(60)]
    responses = await asyncio.wait_for(
        asyncio.gather(
            *(intake.post("/v1/cases", json=b, headers=auth("ong-amanecer")) for b in bodies)
        ),
        timeout=60,
    )
    assert [r.status_code for r in responses] == [201] * len(bodies)
    references = {r.json()["reference"] for r in responses}
    assert len(references) == len(bodies)
