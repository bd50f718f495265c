"""The service directory as this process holds it.

Seeded from deploy/directory.yaml into the database at start-up (organisations the
database already has are left alone, so admin edits survive restarts), kept in
memory for routing and the partner API, and reloaded whenever the directory
version in the database moves on — which the admin API of any replica bumps. A
worker polls that version every `directory_refresh_seconds`; the replica that made
an edit reloads at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

from services.kit.backoff import Backoff
from services.kit.consumer import wait_until_ready
from services.kit.db import Conn
from services.kit.logging import get_logger
from services.kit.runtime import ServiceRuntime, Worker
from services.kit.supervision import loop_health
from services.kit.transient import is_transient
from services.referral import store
from services.referral.domain.directory import Directory, Offer, load_directory

log = get_logger(__name__)
LOAD_TIMEOUT_SECONDS = 10.0


class DirectoryCache:
    def __init__(self, known_agencies: Iterable[str]) -> None:
        self.known_agencies = frozenset(known_agencies)
        self.directory = Directory(organizations=[])
        self.offers: list[Offer] = []
        self.version = 0
        self.loaded = asyncio.Event()

    def read_seed(self, path: Path) -> Directory:
        """The seed file, validated (agency ids included); raises DirectoryError."""
        return load_directory(
            path.read_text(), known_agencies=self.known_agencies, source=str(path.name)
        )

    async def seed(self, conn: Conn, seed: Directory) -> int:
        documents = [o.model_dump(mode="json") for o in seed.organizations]
        async with conn.transaction():
            return await store.seed_directory(conn, documents)

    async def refresh(self, conn: Conn, *, force: bool = False) -> bool:
        """Reload when the stored version moved on; True when it did."""
        version = await store.directory_version(conn)
        if version == self.version and not force:
            return False
        documents = await store.directory_documents(conn)
        directory = Directory.model_validate({"organizations": documents})
        self.directory, self.offers, self.version = directory, directory.offers(), version
        if documents:  # the empty directory before the seed is in is not "loaded"
            self.loaded.set()
        log.info(
            "directory loaded",
            version=version,
            organizations=len(documents),
            services=len(self.offers),
        )
        return True

    async def wait_loaded(self) -> None:
        """Routing must never run on an empty directory: that would flag every need
        as unmet. Retried by the consumer (offset not committed) until it is loaded."""
        await wait_until_ready(self.loaded, LOAD_TIMEOUT_SECONDS, "directory")


def directory_worker(cache: DirectoryCache, seed: Directory, refresh_seconds: float) -> Worker:
    """The background worker that seeds the directory, loads it (retrying with the
    kit's backoff until the database answers), then follows edits made by any replica."""

    async def directory_worker(runtime: ServiceRuntime) -> None:
        backoff = Backoff(base=0.5, cap=max(0.5, refresh_seconds))
        health = loop_health()
        if not cache.loaded.is_set():  # routing waits for the directory: not ready yet
            health.failing("directory not loaded yet")
        while not cache.loaded.is_set():
            try:
                async with store.connection(runtime.pool) as conn:
                    added = await cache.seed(conn, seed)
                    await cache.refresh(conn, force=True)
                # Loaded means seeded: a request that reloaded the empty directory
                # before the seed went in must not count.
                cache.loaded.set()
                log.info("directory seeded", added=added)
                health.ok()
            except Exception as exc:
                if not is_transient(exc):
                    raise  # the supervisor logs it and starts the loop again
                health.failing(f"directory not loaded: {exc.__class__.__name__}")
                log.warning("directory seeding failed", error=exc.__class__.__name__)
                if await runtime.sleep(backoff.next_delay()):
                    return
        while not await runtime.sleep(refresh_seconds):
            try:
                async with store.connection(runtime.pool) as conn:
                    await cache.refresh(conn)
            except Exception as exc:  # keep routing on the copy we have
                if not is_transient(exc):
                    raise
                log.warning("directory refresh failed", error=exc.__class__.__name__)

    return directory_worker
