"""Notifications under test with everything real: Kafka, PostgreSQL, an aiosmtpd SMTP
server keeping a Maildir, the local Twilio-compatible SMS server, intake (for
caseworker contacts) and referral (owner of the contact directory, seeded from
tests/notifications/directory.yaml), each on a free port for this session."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from contracts.envelope import CloudEvent
from contracts.events import EventData
from contracts.registry import producer_source, to_cloud_event
from contracts.topics import namespaced
from services.intake.app import IntakeSettings
from services.intake.app import create_app as create_intake
from services.notifications.app import NotificationsSettings, create_app
from services.notifications.contact_directory import parse_contact_directory
from services.notifications.domain.recipients import ContactBook
from services.notifications.local_sms import LocalSmsProvider, serve
from services.notifications.local_smtp import LocalSmtpServer
from services.referral.api.models import contact_directory
from services.referral.app import ReferralSettings
from services.referral.app import create_app as create_referral
from services.referral.domain import load_directory
from tests.conftest import fresh_namespace, package_namespace, running, service_settings
from tests.helpers import consumed, free_port
from tests.infra import Infra

namespace = package_namespace("notifications")

DIRECTORY = Path(__file__).parent / "directory.yaml"
INVALID_NUMBER = "+51900000000"
REFUSED_MAILBOX = "baja@cem-piura.example.org"
# The SMS account's auth token for this run (the local provider and the service share
# it): made here, as the local profile makes its own; no fixed token exists.
SMS_AUTH_TOKEN = secrets.token_urlsafe(32)


def book_of(path: Path) -> ContactBook:
    """A directory file as notifications gets it: loaded by referral, served as its
    contact directory, parsed by notifications."""
    served = contact_directory(1, load_directory(path.read_text()).organizations)
    _, book = parse_contact_directory(served.model_dump(mode="json"))
    return book


class FlowingClock:
    """Real time shifted by an offset the test controls, so retries and leases still
    advance while quiet hours are chosen at will."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def set(self, moment: datetime) -> None:
        self.offset = moment - datetime.now(UTC)

    def set_local(self, hour: int, minute: int = 0, tz: str = "America/Lima") -> datetime:
        """Shift so that it is now hour:minute in `tz` (today or tomorrow)."""
        real = datetime.now(UTC)
        local = real.astimezone(ZoneInfo(tz))
        target = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if target < local:
            target += timedelta(days=1)
        self.offset = target - local
        return self.now()


def fast_settings(
    infra: Infra, namespace: str, dsn: str, **overrides: Any
) -> NotificationsSettings:
    values: dict[str, Any] = {
        "sms_auth_token": SMS_AUTH_TOKEN,
        "contact_directory_refresh_seconds": 0.1,
        "retry_backoff_base_seconds": 0.05,
        "retry_backoff_cap_seconds": 0.3,
        "retry_max_attempts": 4,
        "worker_poll_seconds": 0.1,
        "sms_rate_per_second": 1000.0,
        "sms_rate_burst": 100.0,
        "email_rate_per_second": 1000.0,
        "email_rate_burst": 100.0,
        "shutdown_grace_seconds": 5.0,
        # The Standard Webhooks schedule, shortened (5 s, 5 min, 30 min, ... in service)
        "webhook_retry_schedule_seconds": [0.2, 0.3, 0.5, 0.5, 0.5, 0.5, 0.5],
        # Few webhook slots, so a test can fill them (caseworkers' messages have theirs).
        "webhook_max_in_flight": 4,
        "webhook_max_in_flight_per_endpoint": 3,
        "webhook_sweep_seconds": 0.2,
    }
    values.update(overrides)
    settings: NotificationsSettings = service_settings(
        NotificationsSettings, infra, namespace, dsn, **values
    )
    return settings


@dataclass
class Kafka:
    producer: AIOKafkaProducer
    namespace: str

    async def publish(
        self,
        data: EventData | CloudEvent,
        *,
        source: str | None = None,
        namespace: str | None = None,
    ) -> CloudEvent:
        """Publish as the producing service does (binary CloudEvent, key = case id; the
        source is the type's declared producer unless a test forges another)."""
        if isinstance(data, CloudEvent):
            event = data
        else:
            event = to_cloud_event(data, source=source or producer_source(data.event_type))
        topic = data.topic if isinstance(data, EventData) else _topic_of(event)
        await self.producer.send_and_wait(
            namespaced(namespace if namespace is not None else self.namespace, topic),
            key=event.key,
            value=event.value(),
            headers=event.headers(),
        )
        return event


def _topic_of(event: CloudEvent) -> str:
    from contracts.registry import model_for

    return model_for(event.type).topic


@pytest.fixture(scope="package")
async def kafka(infra: Infra, namespace: str) -> AsyncIterator[Kafka]:
    producer = AIOKafkaProducer(**infra.kafka().aiokafka(), acks="all")
    await producer.start()
    yield Kafka(producer, namespace)
    await producer.stop()


@pytest.fixture(scope="package")
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = LocalSmtpServer(
        port=free_port(), maildir=tmp_path_factory.mktemp("mail"), reject={REFUSED_MAILBOX}
    )
    server.start(api_port=free_port())
    yield server
    server.stop()


@pytest.fixture(scope="package")
async def sms(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalSmsProvider]:
    provider = LocalSmsProvider(
        SMS_AUTH_TOKEN, record_dir=tmp_path_factory.mktemp("sms"), rejected_numbers={INVALID_NUMBER}
    )
    async with provider.serving(port=free_port()) as base_url:
        provider.base_url = base_url  # type: ignore[attr-defined]
        yield provider


@pytest.fixture(scope="package")
async def intake(
    infra: Infra, namespace: str, databases: Callable[[str], Any]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_intake(
        service_settings(IntakeSettings, infra, namespace, await databases("intake"))
    )
    async with running(app) as client:
        yield client


def referral_namespace(namespace: str) -> str:
    return f"{namespace}-referral"


@pytest.fixture(scope="package")
async def referral(
    infra: Infra, namespace: str, databases: Callable[[str], Any]
) -> AsyncIterator[httpx.AsyncClient]:
    """The referral service, which owns the contact directory, seeded from DIRECTORY.
    In a topic namespace of its own: here it only serves its directory (admin API and
    the internal endpoint notifications reads), it must not route this package's cases."""
    async with fresh_namespace(infra, referral_namespace(namespace), partitions=1) as own:
        settings = service_settings(
            ReferralSettings, infra, own, await databases("referral"), directory_file=DIRECTORY
        )
        async with running(create_referral(settings)) as client:
            yield client


@dataclass
class Notifications:
    client: httpx.AsyncClient
    clock: FlowingClock
    dsn: str
    settings: NotificationsSettings

    async def deliveries(self, case_id: str) -> list[dict[str, Any]]:
        conn = await asyncpg.connect(self.dsn)
        try:
            rows = await conn.fetch(
                "SELECT * FROM deliveries WHERE case_id = $1::uuid ORDER BY recipient_id, channel",
                case_id,
            )
            return [dict(r) for r in rows]
        finally:
            await conn.close()

    async def consumed(self, event_id: str) -> None:
        """Wait until the service has applied (or dead-lettered) this event."""
        conn = await asyncpg.connect(self.dsn)
        try:
            await consumed(conn, event_id)
        finally:
            await conn.close()

    async def directory_version(self) -> int | None:
        """The version of referral's contact directory notifications has saved (it
        replaces its in-memory copy just before saving it)."""
        conn = await asyncpg.connect(self.dsn)
        try:
            version: int | None = await conn.fetchval("SELECT version FROM contact_directory")
            return version
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def serving_notifications(
    settings: NotificationsSettings,
    port: int,
    *,
    clock: FlowingClock,
    intake_client: httpx.AsyncClient | None,
    referral_client: httpx.AsyncClient,
) -> AsyncIterator[httpx.AsyncClient]:
    """The service on a real port (the SMS server calls it back), lifespan included."""
    app = create_app(
        settings, clock=clock, intake_client=intake_client, referral_client=referral_client
    )
    async with (
        serve(app, "127.0.0.1", port) as base_url,
        httpx.AsyncClient(base_url=base_url) as client,
    ):
        yield client


@pytest.fixture(scope="package")
async def notifications(
    infra: Infra,
    namespace: str,
    databases: Callable[[str], Any],
    smtp: LocalSmtpServer,
    sms: LocalSmsProvider,
    intake: httpx.AsyncClient,
    referral: httpx.AsyncClient,
) -> AsyncIterator[Notifications]:
    dsn: str = await databases("notifications")
    port = free_port()
    settings = fast_settings(
        infra,
        namespace,
        dsn,
        smtp_port=smtp.port,
        email_lookup_url=smtp.api_url,
        sms_base_url=sms.base_url,  # type: ignore[attr-defined]
        sms_status_callback_url=f"http://127.0.0.1:{port}/v1/sms/status",
    )
    clock = FlowingClock()
    clock.set_local(12)  # midday in Lima: quiet hours do not apply unless a test says so
    async with serving_notifications(
        settings, port, clock=clock, intake_client=intake, referral_client=referral
    ) as client:
        yield Notifications(client, clock, dsn, settings)


def emails_about(
    smtp: LocalSmtpServer, reference: str, to: str | None = None
) -> list[EmailMessage]:
    return [
        m
        for m in smtp.messages()
        if reference in str(m["Subject"]) and (to is None or str(m["To"]) == to)
    ]


def texts_about(
    sms: LocalSmsProvider, reference: str, to: str | None = None
) -> list[dict[str, Any]]:
    return [m for m in sms.messages if reference in m["body"] and (to is None or m["to"] == to)]
