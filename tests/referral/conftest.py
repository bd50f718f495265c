from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from services.intake.app import IntakeSettings
from services.intake.app import create_app as create_intake
from services.referral.app import ReferralSettings, create_app
from tests.conftest import package_namespace, running, service_settings
from tests.factories import piura_adolescent_girl
from tests.helpers import auth, poll_until
from tests.infra import Infra

namespace = package_namespace("referral")


@pytest.fixture(scope="package")
async def intake_dsn(databases: Callable[[str], Any]) -> str:
    dsn: str = await databases("intake")
    return dsn


@pytest.fixture(scope="package")
async def intake(infra: Infra, namespace: str, intake_dsn: str) -> AsyncIterator[httpx.AsyncClient]:
    """Intake, consuming the referral events of this package's namespace (its grants)."""
    async with running(
        create_intake(service_settings(IntakeSettings, infra, namespace, intake_dsn))
    ) as client:
        yield client


@pytest.fixture(scope="package")
async def referral_dsn(databases: Callable[[str], Any]) -> str:
    dsn: str = await databases("referral")
    return dsn


@pytest.fixture(scope="package")
async def referral(
    infra: Infra, namespace: str, referral_dsn: str, intake: httpx.AsyncClient
) -> AsyncIterator[httpx.AsyncClient]:
    settings = service_settings(
        ReferralSettings, infra, namespace, referral_dsn, directory_refresh_seconds=0.5
    )
    async with running(create_app(settings, intake_client=intake)) as client:
        yield client


@pytest.fixture
async def db(referral_dsn: str, referral: httpx.AsyncClient) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(referral_dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def register(intake: httpx.AsyncClient, body: dict[str, Any], agency: str) -> str:
    response = await intake.post("/v1/cases", json=body, headers=auth(agency))
    assert response.status_code == 201, response.text
    case_id: str = response.json()["case_id"]
    return case_id


async def referrals_of(
    referral: httpx.AsyncClient, agency: str, case_id: str, count: int, **params: str
) -> list[dict[str, Any]]:
    """Poll the partner API until `agency` sees `count` referrals of the case."""

    async def probe() -> list[dict[str, Any]]:
        response = await referral.get(
            "/v1/referrals", headers=auth(agency), params={"case_id": case_id, **params}
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    return await poll_until(
        probe,
        lambda items: len(items) >= count,
        timeout=30,
        what=f"{count} referrals of {case_id} for {agency}",
    )


def by_service(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["service_id"]: item for item in items}


async def disclosed(referral: httpx.AsyncClient, url: str, agency: str) -> dict[str, Any]:
    """The receiving agency's view of an accepted referral once its identity is
    disclosed: intake answers only once it has consumed the acceptance from the topic
    (its own grant); until then referral says `unavailable`."""

    async def probe() -> dict[str, Any]:
        response = await referral.get(url, headers=auth(agency))
        assert response.status_code == 200, response.text
        view: dict[str, Any] = response.json()
        return view

    return await poll_until(
        probe,
        lambda view: view["identity_status"] != "unavailable",
        timeout=30,
        what=f"{url} disclosed to {agency}",
    )


async def case_consenting_to_psychosocial_support_only(
    intake: httpx.AsyncClient, referral: httpx.AsyncClient, now: datetime
) -> tuple[str, dict[str, dict[str, Any]]]:
    """A Piura case (sexual violence) whose parent consented to psychosocial support
    only: routing makes two referrals, the mandatory CEM one left proposed. Returns
    the case id and its referrals by service id."""
    body = piura_adolescent_girl(
        concerns=["sexual_violence"],
        needs=[],
        unaccompanied=False,
        consent={
            "basis": "consent",
            "scope": "listed_service_types",
            "service_types": ["psychosocial_support"],
            "given_by": "parent",
            "recorded_at": (now - timedelta(hours=1)).isoformat(),
        },
    )
    case_id = await register(intake, body, "ong-amanecer")
    return case_id, by_service(await referrals_of(referral, "ong-amanecer", case_id, 2))
