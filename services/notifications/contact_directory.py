"""The contact directory as notifications holds it: a replica of the referral
service's directory, which owns it (notifications reads no directory file).

`ContactDirectoryReplica.follow_referral` runs as a background worker: it first
restores the snapshot saved in notifications' own database (so a restart while
referral is unreachable still knows whom to tell), then polls referral's internal
endpoint `GET /internal/v1/contact-directory` with If-None-Match. A new version
replaces the in-memory `ContactBook` at once (the next delivery planned or sent uses
it) and is saved as the new snapshot. Failures back off on the kit's schedule and
keep the copy in hand.

Deliveries are never planned on a book that was never loaded: `wait_loaded` raises
the consumer's `TransientError`, so the event is retried without committing. An
empty directory is never taken for a loaded one (referral answers with an empty one
before it has seeded its own).

Staff contact points travel only over this authenticated call, never on a topic;
logs carry versions and counts, never a name, number or address. /metrics shows the
version in use and when referral last answered.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pydantic
from prometheus_client import CollectorRegistry, Gauge
from pydantic import BaseModel, ConfigDict, Field

from contracts.codes import Channel
from services.kit.backoff import Backoff
from services.kit.clock import Clock
from services.kit.consumer import wait_until_ready
from services.kit.event_errors import describe_error
from services.kit.logging import get_logger
from services.kit.runtime import ServiceRuntime
from services.kit.supervision import loop_health
from services.kit.transient import is_transient
from services.notifications import store
from services.notifications.domain.recipients import AgencyContacts, Contact, ContactBook

log = get_logger(__name__)

CONTACT_DIRECTORY_PATH = "/internal/v1/contact-directory"
LOAD_TIMEOUT_SECONDS = 5.0
RETRY_CAP_SECONDS = 30.0


# --- the document referral serves ------------------------------------------------------------


class _ContactDocument(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # Every field is required: referral's directory owns the defaults (language, time
    # zone, channels), and a second set here would drift from them.
    id: str
    name: str
    phone: str | None
    email: str | None
    language: str
    time_zone: str
    channels: list[Channel] = Field(min_length=1)

    def to_contact(self) -> Contact:
        return Contact(
            self.id,
            self.name,
            self.phone,
            self.email,
            self.language,
            self.time_zone,
            tuple(dict.fromkeys(self.channels)),
        )


class _ServiceDocument(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    contacts: list[_ContactDocument] = Field(default_factory=list)


class _AgencyDocument(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    name: str
    focal_point: _ContactDocument | None = None
    supervisor: _ContactDocument | None = None
    services: list[_ServiceDocument] = Field(default_factory=list)

    def to_agency(self) -> AgencyContacts:
        return AgencyContacts(
            id=self.id,
            name=self.name,
            focal_point=self.focal_point.to_contact() if self.focal_point else None,
            supervisor=self.supervisor.to_contact() if self.supervisor else None,
            services={s.id: tuple(c.to_contact() for c in s.contacts) for s in self.services},
        )


class _DirectoryDocument(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: int = 0
    organizations: list[_AgencyDocument] = Field(default_factory=list)


def parse_contact_directory(document: Any) -> tuple[int, ContactBook]:
    """The version and contact book of a contact-directory document (referral's JSON,
    or a YAML directory of the same shape). Raises ValueError when it is invalid."""
    parsed = _DirectoryDocument.model_validate(document)
    return parsed.version, ContactBook(o.to_agency() for o in parsed.organizations)


# --- the replica ---------------------------------------------------------------------------


class DirectoryUnavailable(Exception):
    """Referral did not give a usable directory this time; the message is safe to log."""


class ContactDirectoryReplica:
    def __init__(
        self,
        *,
        referral: httpx.AsyncClient,
        api_key: str,
        clock: Clock,
        refresh_seconds: float,
        load_timeout: float = LOAD_TIMEOUT_SECONDS,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._referral = referral
        self._api_key = api_key
        self._clock = clock
        self.refresh_seconds = refresh_seconds
        self._load_timeout = load_timeout
        self._book: ContactBook | None = None
        self.version: int | None = None
        self._loaded = asyncio.Event()
        self._unsaved: tuple[int, dict[str, Any]] | None = None
        self._version_gauge = Gauge(
            "enlace_contact_directory_version",
            "Version of referral's contact directory in use (0: none loaded yet)",
            registry=registry,
        )
        self._checked_gauge = Gauge(
            "enlace_contact_directory_checked_timestamp_seconds",
            "When referral last answered the directory poll (200 or 304)",
            registry=registry,
        )

    @property
    def book(self) -> ContactBook | None:
        """The current contact book; None until one was loaded."""
        return self._book

    async def wait_loaded(self) -> ContactBook:
        """The current book, waiting briefly for the first one; raises TransientError
        (the consumer retries without committing) when there is none yet."""
        if self._book is None:
            await wait_until_ready(self._loaded, self._load_timeout, "contact directory")
        assert self._book is not None
        return self._book

    async def follow_referral(self, runtime: ServiceRuntime) -> None:
        """Background worker: restore the snapshot, then keep up with referral."""
        health = loop_health()
        if self._book is None:  # not ready to plan messages until there is a book
            health.failing("contact directory not loaded yet")
        try:
            await self.restore(runtime.pool)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            log.warning("contact directory snapshot not restored", error=describe_error(exc))
        if self._book is not None:
            health.ok()
        backoff = Backoff(self.refresh_seconds, max(self.refresh_seconds, RETRY_CAP_SECONDS))
        while not runtime.stopping.is_set():
            try:
                await self.refresh(runtime.pool)
                if self._book is not None:
                    health.ok()
            except Exception as exc:
                if not (
                    isinstance(exc, DirectoryUnavailable | httpx.HTTPError) or is_transient(exc)
                ):
                    raise  # the supervisor logs it and starts the loop again
                delay = backoff.next_delay()
                reason = str(exc) if isinstance(exc, DirectoryUnavailable) else describe_error(exc)
                log.warning(
                    "contact directory not refreshed; keeping the copy in hand",
                    error=reason,
                    version=self.version,
                    retry_in=round(delay, 2),
                )
                if await runtime.sleep(delay):
                    return
                continue
            backoff.reset()
            if await runtime.sleep(self.refresh_seconds):
                return

    async def restore(self, pool: asyncpg.Pool) -> bool:
        """Load the saved snapshot unless a book is already in hand; True when it was."""
        row = await store.contact_directory(pool)
        if row is None or self._book is not None:
            return False
        version, book = parse_contact_directory(row["document"])
        if not book.agencies:
            return False
        self._replace(version, book)
        log.info(
            "contact directory restored from the last snapshot",
            version=version,
            agencies=len(book.agencies),
            contacts=len(book),
        )
        return True

    async def refresh(self, pool: asyncpg.Pool) -> bool:
        """Ask referral once; True when a new version replaced the book."""
        headers = {"Authorization": f"Bearer {self._api_key}"}
        if self.version is not None:
            headers["If-None-Match"] = f'"{self.version}"'
        response = await self._referral.get(CONTACT_DIRECTORY_PATH, headers=headers)
        if response.status_code == 304:
            self._checked_gauge.set_to_current_time()
            await self._save(pool)
            return False
        if response.status_code != 200:
            raise DirectoryUnavailable(f"referral answered {response.status_code}")
        self._checked_gauge.set_to_current_time()
        try:
            document: dict[str, Any] = response.json()
            version, book = parse_contact_directory(document)
        except ValueError as exc:  # pydantic's ValidationError and JSON errors are ValueErrors
            reason = describe_error(exc) if isinstance(exc, pydantic.ValidationError) else str(exc)
            raise DirectoryUnavailable(f"invalid contact directory: {reason}") from None
        if not book.agencies:
            log.warning("referral served an empty contact directory; not used", version=version)
            return False
        self._replace(version, book)
        log.info(
            "contact directory replaced",
            version=version,
            agencies=len(book.agencies),
            contacts=len(book),
        )
        self._unsaved = (version, document)
        await self._save(pool)
        return True

    def _replace(self, version: int, book: ContactBook) -> None:
        self._book, self.version = book, version
        self._version_gauge.set(version)
        self._loaded.set()

    async def _save(self, pool: asyncpg.Pool) -> None:
        """Save the newest version as the snapshot (again after a failed attempt)."""
        if self._unsaved is not None:
            version, document = self._unsaved
            await store.save_contact_directory(pool, version, document, self._clock.now())
            self._unsaved = None
