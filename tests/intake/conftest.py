from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from services.intake.app import IntakeSettings, create_app
from tests.conftest import package_namespace, running, service_settings
from tests.infra import Infra

namespace = package_namespace("intake")


@pytest.fixture(scope="package")
async def intake_dsn(databases: Callable[[str], Any]) -> str:
    dsn: str = await databases("intake")
    return dsn


@pytest.fixture(scope="package")
async def intake(infra: Infra, namespace: str, intake_dsn: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(service_settings(IntakeSettings, infra, namespace, intake_dsn))
    async with running(app) as client:
        yield client
