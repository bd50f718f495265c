"""Instants out of range in the report's period or a follow-up's completion are
refused with 422 naming the field, before any query; nothing is written."""

from __future__ import annotations

import uuid

import pytest

from tests.followup.conftest import Service
from tests.helpers import auth

OUT_OF_RANGE = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01"]


@pytest.mark.parametrize("moment", OUT_OF_RANGE)
@pytest.mark.parametrize("field", ["period_from", "period_to"])
async def test_a_report_period_out_of_range_is_refused(
    followup: Service, field: str, moment: str
) -> None:
    for agency in ("ong-amanecer", "enlace-ops"):
        response = await followup.client.get(
            "/v1/reports/referrals", params={field: moment}, headers=auth(agency)
        )
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["field"] == f"query.{field}"


@pytest.mark.parametrize("moment", OUT_OF_RANGE[:2])
async def test_a_completion_out_of_range_is_refused_and_writes_nothing(
    followup: Service, moment: str
) -> None:
    async def written() -> tuple[int, int]:
        async with followup.db.acquire() as conn:
            completed = await conn.fetchval(
                "SELECT count(*) FROM followups WHERE completed_at IS NOT NULL"
            )
            outbox = await conn.fetchval("SELECT last_value FROM outbox_seq_seq")
        return completed, outbox

    before = await written()
    response = await followup.client.post(
        f"/v1/followups/{uuid.uuid4()}/complete",
        json={
            "child_reached": True,
            "service_received": True,
            "current_risk": "low",
            "completed_at": moment,
        },
        headers=auth("ong-amanecer"),
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "completed_at"
    assert await written() == before
