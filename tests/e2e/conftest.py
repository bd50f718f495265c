"""The end-to-end tests: their own topics, and an HTTP client."""

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import package_namespace

namespace = package_namespace("e2e")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client
