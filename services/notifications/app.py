"""Notifications service wiring: settings, the contact directory replica, channels,
the delivery worker, handlers and API."""

import contextlib
import time as monotonic_time
from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta
from pathlib import Path

import asyncpg
import httpx
from fastapi import FastAPI
from pydantic import Field

from contracts.codes import Channel
from services.kit.clock import Clock, SystemClock
from services.kit.db import Conn
from services.kit.http import (
    AgencyRegistry,
    agency_dependency,
)
from services.kit.kafka_acl import load_access
from services.kit.logging import get_logger
from services.kit.production import Environment, Secret
from services.kit.runtime import ServiceRuntime, serve, service_app
from services.kit.settings import ServiceSettings
from services.notifications.api import build_router
from services.notifications.channels.email import SmtpConfig, SmtpEmailSender
from services.notifications.channels.sms import TwilioSmsProvider
from services.notifications.channels.webhook import WebhookClient
from services.notifications.contact_directory import ContactDirectoryReplica
from services.notifications.contacts import ContactResolver
from services.notifications.domain.messages import Links
from services.notifications.domain.partners import STANDARD_RETRY_SCHEDULE
from services.notifications.domain.timing import TokenBucket
from services.notifications.endpoint_secrets import LOCAL_PROFILE_KEY, SecretBox
from services.notifications.handlers import Handlers
from services.notifications.local_sms import DEFAULT_ACCOUNT_SID
from services.notifications.outcomes import OutcomeRecorder
from services.notifications.partner_feeds import (
    FailingEndpointSweep,
    notify_endpoints_disabled,
)
from services.notifications.rendering import Renderer
from services.notifications.sending import DeliveryMetrics, Sender, SendPolicy
from services.notifications.store import Lane
from services.notifications.webhook_api import build_webhook_router, document_webhooks
from services.notifications.webhook_endpoints import UrlPolicy
from services.notifications.webhook_sending import WebhookSender
from services.notifications.worker import ClaimPolicy, DeliveryWorker

MIGRATIONS = Path(__file__).parent / "migrations"
log = get_logger(__name__)


class NotificationsSettings(ServiceSettings):
    service_name: str = "notifications"
    http_port: int = 8004

    # email (SMTP); local default: python -m services.notifications.local_smtp
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_tls: bool = Field(default=False, description="Implicit TLS (SMTPS, port 465)")
    smtp_starttls: bool = Field(default=False, description="Upgrade with STARTTLS")
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "notificaciones@enlace.local"
    smtp_timeout_seconds: float = 10.0
    # Where the e-mail provider answers GET /messages/<Message-ID> (local_smtp --api-port):
    # without it a resend after an uncertain attempt cannot be checked first (README).
    email_lookup_url: str = ""

    # SMS (Twilio Messages API); local default: python -m services.notifications.local_sms
    sms_base_url: str = "http://127.0.0.1:8090"
    sms_account_sid: str = DEFAULT_ACCOUNT_SID
    # The account's auth token: sends with it and checks the status callbacks'
    # signatures with it. A secret, no default (the local profile generates one).
    sms_auth_token: str = ""
    sms_from_number: str = "+15005550006"
    sms_status_callback_url: str = "http://127.0.0.1:8004/v1/sms/status"
    sms_timeout_seconds: float = 10.0

    # when and how often
    quiet_hours_start: time = time(21, 0)
    quiet_hours_end: time = time(7, 0)
    quiet_hours_channels: list[Channel] = Field(
        default_factory=lambda: [Channel.SMS, Channel.EMAIL]
    )
    retry_max_attempts: int = 6
    retry_backoff_base_seconds: float = 5.0
    retry_backoff_cap_seconds: float = 900.0
    # What the provider contracts allow (messages per second, and the burst above it):
    # set them to the account's real throughput. 100/s is a common SMS contract (a
    # short code, or a pool of senders) and well within SMTP relays' limits. The local
    # profile raises them: its providers have no limit, and the bench measures ours.
    sms_rate_per_second: float = 100.0
    sms_rate_burst: float = 100.0
    email_rate_per_second: float = 100.0
    email_rate_burst: float = 100.0
    worker_max_in_flight: int = 32
    worker_poll_seconds: float = 1.0
    # Longer than any one attempt (rate-limit wait, the provider's timeout, a lookup):
    # a delivery whose worker died comes back after it, reconciled before any resend.
    worker_lease_seconds: float = 45.0

    # who: caseworkers from intake, contact points from referral's directory (a replica
    # polled from referral's internal endpoint; edits arrive within the refresh period)
    intake_url: str = "http://127.0.0.1:8001"
    referral_internal_url: str = "http://127.0.0.1:8002"
    # This service's API key for intake's and referral's internal endpoints (its
    # principal is svc-notifications); a secret, no default.
    internal_api_key: str = ""
    caseworker_contact_cache_seconds: float = 3600.0
    contact_directory_refresh_seconds: float = Field(default=2.0, gt=0)
    default_language: str = "es"
    referral_api_url: str = "http://127.0.0.1:8002"
    followup_api_url: str = "http://127.0.0.1:8003"

    # partner webhooks (README "Connect your agency's system")
    # The key that seals endpoints' signing secrets at rest: a secret, required in
    # production; the local demo profile has its own.
    webhook_secrets_key: str = ""
    webhook_timeout_seconds: float = Field(default=15.0, gt=0)
    # After each failed attempt, wait this long (Standard Webhooks: 5 s, 5 min, 30 min,
    # 2 h, 5 h, 10 h, 10 h), +/- 20 %; then the delivery has failed.
    webhook_retry_schedule_seconds: list[float] = Field(
        default_factory=lambda: list(STANDARD_RETRY_SCHEDULE), min_length=1
    )
    # An endpoint failing (no success) for this long is disabled, and its agency's
    # focal point is e-mailed.
    webhook_disable_after_days: float = Field(default=5.0, gt=0)
    # How often endpoints failing for that long are looked for when nothing is tried.
    webhook_sweep_seconds: float = Field(default=300.0, gt=0)
    # Partner webhooks have sending slots of their own: a slow partner endpoint never
    # takes a caseworker message's slot (worker_max_in_flight).
    webhook_max_in_flight: int = Field(default=64, ge=0)
    # And no one endpoint takes more than this many of them at once.
    webhook_max_in_flight_per_endpoint: int = Field(default=16, ge=1)
    webhook_max_connections: int = Field(default=64, ge=1)

    @property
    def webhooks_public_only(self) -> bool:
        """Outside the local profile: https URLs resolving to public addresses only."""
        return self.env is not Environment.LOCAL

    def webhook_secrets_box(self) -> SecretBox:
        key = self.webhook_secrets_key
        if not key and self.env is Environment.LOCAL:
            key = LOCAL_PROFILE_KEY
        return SecretBox(key)

    def secret_settings(self) -> list[Secret]:
        secrets = [
            *super().secret_settings(),
            Secret("ENLACE_SMS_AUTH_TOKEN", self.sms_auth_token),
            Secret("ENLACE_INTERNAL_API_KEY", self.internal_api_key),
            Secret("ENLACE_WEBHOOK_SECRETS_KEY", self.webhook_secrets_key),
        ]
        if self.smtp_user:
            secrets.append(Secret("ENLACE_SMTP_PASSWORD", self.smtp_password))
        return secrets


def create_app(
    settings: NotificationsSettings | None = None,
    *,
    clock: Clock | None = None,
    intake_client: httpx.AsyncClient | None = None,
    referral_client: httpx.AsyncClient | None = None,
) -> FastAPI:
    settings = settings or NotificationsSettings()
    clock = clock or SystemClock()
    owned: list[httpx.AsyncClient] = []
    if intake_client is None:
        intake_client = httpx.AsyncClient(base_url=settings.intake_url, timeout=5.0)
        owned.append(intake_client)
    if referral_client is None:
        referral_client = httpx.AsyncClient(base_url=settings.referral_internal_url, timeout=5.0)
        owned.append(referral_client)
    sms = TwilioSmsProvider(
        base_url=settings.sms_base_url,
        account_sid=settings.sms_account_sid,
        auth_token=settings.sms_auth_token,
        from_number=settings.sms_from_number,
        status_callback_url=settings.sms_status_callback_url or None,
        timeout=settings.sms_timeout_seconds,
        max_connections=settings.worker_max_in_flight,
    )
    lookup_client = None
    if settings.email_lookup_url:  # reconciliation only: a rare request
        lookup_client = httpx.AsyncClient(timeout=settings.smtp_timeout_seconds)
        owned.append(lookup_client)
    email = SmtpEmailSender(
        SmtpConfig(
            host=settings.smtp_host,
            port=settings.smtp_port,
            from_address=settings.smtp_from,
            use_tls=settings.smtp_tls,
            start_tls=settings.smtp_starttls,
            username=settings.smtp_user,
            password=settings.smtp_password,
            timeout=settings.smtp_timeout_seconds,
            # As many sessions kept as the worker sends at once: a smaller pool closed
            # and reopened sessions (connect, EHLO, QUIT) under load.
            pool_size=settings.worker_max_in_flight,
        ),
        lookup_url=settings.email_lookup_url or None,
        lookup_client=lookup_client,
    )
    runtime = ServiceRuntime(settings, migrations=MIGRATIONS)
    metrics = DeliveryMetrics(runtime.metrics.registry)
    directory = ContactDirectoryReplica(
        referral=referral_client,
        api_key=settings.internal_api_key,
        clock=clock,
        refresh_seconds=settings.contact_directory_refresh_seconds,
        registry=runtime.metrics.registry,
    )
    sender = Sender(
        policy=SendPolicy(
            max_attempts=settings.retry_max_attempts,
            backoff_base_seconds=settings.retry_backoff_base_seconds,
            backoff_cap_seconds=settings.retry_backoff_cap_seconds,
            quiet_start=settings.quiet_hours_start,
            quiet_end=settings.quiet_hours_end,
            quiet_channels=frozenset(settings.quiet_hours_channels),
            default_language=settings.default_language,
        ),
        clock=clock,
        book=lambda: directory.book,
        contacts=ContactResolver(
            intake=intake_client,
            api_key=settings.internal_api_key,
            pool=lambda: runtime.pool,
            clock=clock,
            cache_seconds=settings.caseworker_contact_cache_seconds,
        ),
        renderer=Renderer(),
        links=Links(settings.referral_api_url, settings.followup_api_url),
        sms=sms,
        email=email,
        rates={
            Channel.SMS: TokenBucket(
                settings.sms_rate_per_second, settings.sms_rate_burst, monotonic_time.monotonic
            ),
            Channel.EMAIL: TokenBucket(
                settings.email_rate_per_second, settings.email_rate_burst, monotonic_time.monotonic
            ),
        },
        metrics=metrics,
    )
    webhooks = WebhookSender(
        client=WebhookClient(
            timeout_seconds=settings.webhook_timeout_seconds,
            public_only=settings.webhooks_public_only,
            max_connections=settings.webhook_max_connections,
        ),
        secrets=settings.webhook_secrets_box(),
        clock=clock,
        schedule=tuple(settings.webhook_retry_schedule_seconds),
        public_only=settings.webhooks_public_only,
        registry=runtime.metrics.registry,
    )

    async def endpoints_disabled(conn: Conn, rows: list[asyncpg.Record], now: datetime) -> None:
        await notify_endpoints_disabled(conn, rows, book=directory.book, now=now)

    recorder = OutcomeRecorder(
        pool=lambda: runtime.pool,
        clock=clock,
        source=settings.event_source,
        disable_failing_after=timedelta(days=settings.webhook_disable_after_days),
        on_endpoints_disabled=endpoints_disabled,
    )

    def lane_worker(lane: Lane, max_in_flight: int) -> DeliveryWorker:
        """The one delivery worker, for one lane with slots of its own."""
        return DeliveryWorker(
            policy=ClaimPolicy(
                lane=lane,
                lease_seconds=settings.worker_lease_seconds,
                max_in_flight=max_in_flight,
                poll_seconds=settings.worker_poll_seconds,
                per_endpoint=settings.webhook_max_in_flight_per_endpoint,
            ),
            clock=clock,
            sender=sender,
            webhooks=webhooks,
            recorder=recorder,
            metrics=metrics,
            dsn=settings.database_url,
        )

    worker = lane_worker(Lane.MESSAGES, settings.worker_max_in_flight)
    webhook_worker = lane_worker(Lane.WEBHOOKS, settings.webhook_max_in_flight)

    async def deliver_messages(rt: ServiceRuntime) -> None:
        await worker.run(rt)

    async def deliver_webhooks(rt: ServiceRuntime) -> None:
        await webhook_worker.run(rt)

    handlers = Handlers(
        contacts=directory.wait_loaded, feeds=load_access().feed_agencies(), now=clock.now
    )
    runtime.subscriptions = handlers.subscriptions()
    sweep = FailingEndpointSweep(
        clock=clock,
        every_seconds=settings.webhook_sweep_seconds,
        disable_after=timedelta(days=settings.webhook_disable_after_days),
        book=lambda: directory.book,
        registry=runtime.metrics.registry,
    )
    runtime.workers = [
        directory.follow_referral,
        deliver_messages,
        deliver_webhooks,
        sweep.sweep_failing_endpoints,
    ]
    agencies = AgencyRegistry.load(settings.agencies_file)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with runtime.lifespan(app):
                yield
        finally:
            await email.aclose()
            await sms.aclose()
            await webhooks.client.aclose()
            for client in owned:
                await client.aclose()

    app = service_app(
        runtime,
        title="Enlace notifications",
        description="SMS and email to caseworkers and focal points; delivery log; partner "
        "feeds (signed webhooks, and a Kafka topic per agency).",
        lifespan=lifespan,
    )
    app.state.worker = worker
    app.state.contact_directory = directory
    app.include_router(
        build_router(
            lambda: runtime.pool,
            agency_dependency(agencies, runtime.auth_throttle),
            clock=clock,
            source=settings.event_source,
            status_callback_url=settings.sms_status_callback_url,
            sms_auth_token=settings.sms_auth_token,
        )
    )
    app.include_router(
        build_webhook_router(
            lambda: runtime.pool,
            agency_dependency(agencies, runtime.auth_throttle),
            clock=clock,
            policy=UrlPolicy(public_https_only=settings.webhooks_public_only),
            box=settings.webhook_secrets_box(),
        )
    )
    document_webhooks(app)
    return app


def main() -> None:
    settings = NotificationsSettings()
    serve("services.notifications.app:create_app", settings)


if __name__ == "__main__":
    main()
