"""The contact directory replica against a stand-in for referral's internal endpoint
(httpx MockTransport) and a real PostgreSQL database: conditional polling, the saved
snapshot, and what it refuses (a never-loaded book, an empty or invalid directory)."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from services.kit.clock import MovableClock
from services.kit.db import create_pool, migrate
from services.kit.event_errors import TransientError
from services.notifications.app import MIGRATIONS
from services.notifications.contact_directory import (
    ContactDirectoryReplica,
    DirectoryUnavailable,
)
from services.notifications.domain.recipients import ContactBook
from services.referral.api.models import contact_directory
from services.referral.domain import load_directory
from tests.helpers import DEMO_KEYS
from tests.notifications.conftest import DIRECTORY

KEY = DEMO_KEYS["svc-notifications"]
MESA = "ct-upe-piura-mesa"


@dataclass
class Referral:
    """Answers as referral's GET /internal/v1/contact-directory does, with the
    document referral's own view makes of the test directory."""

    document: dict[str, Any]
    status: int = 200
    seen: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if request.url.path != "/internal/v1/contact-directory":
            return httpx.Response(404)
        if request.headers.get("authorization") != f"Bearer {KEY}" or self.status == 404:
            return httpx.Response(404)
        if self.status != 200:
            return httpx.Response(self.status)
        etag = f'"{self.document["version"]}"'
        if request.headers.get("if-none-match") == etag:
            return httpx.Response(304, headers={"ETag": etag})
        return httpx.Response(200, json=self.document, headers={"ETag": etag})

    def set_phone(self, contact_id: str, phone: str) -> None:
        self.document = copy.deepcopy(self.document)
        self.document["version"] += 1
        for org in self.document["organizations"]:
            for service in org["services"]:
                for contact in service["contacts"]:
                    if contact["id"] == contact_id:
                        contact["phone"] = phone


@pytest.fixture
async def pool(databases: Callable[[str], Any]) -> AsyncIterator[asyncpg.Pool]:
    created = await create_pool(await databases("notifications"), min_size=1, max_size=2)
    await migrate(created, MIGRATIONS, "notifications")
    yield created
    await created.close()


@pytest.fixture
def referral() -> Referral:
    served = contact_directory(7, load_directory(DIRECTORY.read_text()).organizations)
    return Referral(served.model_dump(mode="json"))


def replica_of(referral: Referral) -> ContactDirectoryReplica:
    client = httpx.AsyncClient(
        transport=httpx.MockTransport(referral.handle), base_url="http://referral"
    )
    return ContactDirectoryReplica(
        referral=client,
        api_key=KEY,
        clock=MovableClock(datetime(2026, 3, 11, 17, 0, tzinfo=UTC)),
        refresh_seconds=0.1,
        load_timeout=0.05,
    )


def phone_of(book: ContactBook) -> str | None:
    contact = book.contact(MESA)
    assert contact is not None
    return contact.phone


async def test_nothing_is_planned_before_a_directory_is_loaded(referral: Referral) -> None:
    replica = replica_of(referral)
    assert replica.book is None
    with pytest.raises(TransientError, match="contact directory not loaded yet"):
        await replica.wait_loaded()


async def test_a_new_version_replaces_the_book_and_is_saved(
    pool: asyncpg.Pool, referral: Referral
) -> None:
    replica = replica_of(referral)
    assert await replica.refresh(pool)
    book = await replica.wait_loaded()
    assert (replica.version, phone_of(book)) == (7, "+51911000003")
    assert await pool.fetchval("SELECT version FROM contact_directory") == 7

    assert not await replica.refresh(pool)  # unchanged: asked with If-None-Match, 304
    assert referral.seen[-1].headers["if-none-match"] == '"7"'
    assert replica.book is book

    referral.set_phone(MESA, "+51911000777")
    assert await replica.refresh(pool)
    assert replica.version == 8
    assert replica.book is not None
    assert phone_of(replica.book) == "+51911000777"
    saved = await pool.fetchrow("SELECT version, document FROM contact_directory")
    assert saved is not None
    assert (saved["version"], saved["document"]) == (8, referral.document)


async def test_a_restart_uses_the_saved_snapshot_while_referral_is_down(
    pool: asyncpg.Pool, referral: Referral
) -> None:
    await replica_of(referral).refresh(pool)
    referral.status = 503
    restarted = replica_of(referral)
    with pytest.raises(DirectoryUnavailable, match="503"):
        await restarted.refresh(pool)
    assert await restarted.restore(pool)
    assert restarted.version == 7
    assert (await restarted.wait_loaded()).contact(MESA) is not None


async def test_an_empty_or_invalid_directory_is_not_used(
    pool: asyncpg.Pool, referral: Referral
) -> None:
    full = referral.document
    referral.document = {"version": 1, "organizations": []}  # referral before its seed
    replica = replica_of(referral)
    assert not await replica.refresh(pool)
    assert replica.book is None
    assert await pool.fetchval("SELECT count(*) FROM contact_directory") == 0

    referral.document = full
    assert await replica.refresh(pool)
    broken = copy.deepcopy(full)
    broken["version"] += 1
    broken["organizations"][0]["focal_point"]["channels"] = ["pigeon"]
    referral.document = broken
    with pytest.raises(DirectoryUnavailable) as refused:
        await replica.refresh(pool)
    assert "+51" not in str(refused.value)  # safe to log: no number, name or address
    assert replica.version == 7


async def test_a_refused_request_leaves_the_book_unloaded(
    pool: asyncpg.Pool, referral: Referral
) -> None:
    referral.status = 404
    replica = replica_of(referral)
    with pytest.raises(DirectoryUnavailable, match="404"):
        await replica.refresh(pool)
    assert replica.book is None
