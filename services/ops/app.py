"""Operations service wiring: settings, the use cases (`app.state.ops`), the runtime
(referral-health projections as kit subscriptions; the dead-letter index and the lag
sampler as supervised loops), the JSON API.

A web router is mounted in `create_app` beside the JSON API (see the comment there):
it gets `app.state.ops` (the use cases) and `app.state.agencies` (to check an
operations key at sign-in)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from fastapi import FastAPI
from pydantic import AliasChoices, Field, SecretStr

from services.kit import local_secrets
from services.kit.clock import Clock
from services.kit.event_errors import describe_error
from services.kit.http import AgencyRegistry, Role, agency_dependency, role_dependency
from services.kit.logging import get_logger
from services.kit.periodic import run_every
from services.kit.production import Environment, Secret
from services.kit.runtime import ServiceRuntime, Worker, serve, service_app
from services.kit.settings import ServiceSettings
from services.kit.supervision import loop_health
from services.kit.transient import is_transient
from services.ops import handlers
from services.ops.api import build_router
from services.ops.commands import Operations
from services.ops.kafka_view import DeadLetterIndex, KafkaView
from services.ops.metrics import OpsMetrics
from services.ops.web import build_web_router
from services.ops.web.session import Sessions

MIGRATIONS = Path(__file__).parent / "migrations"
log = get_logger(__name__)


def _url(service: str, port: int) -> str:
    return Field(
        default=f"http://127.0.0.1:{port}",
        validation_alias=AliasChoices(f"ENLACE_OPS_{service.upper()}_URL", f"{service}_url"),
    )


class OpsSettings(ServiceSettings):
    service_name: str = "ops"
    http_port: int = 8005
    # The services watched (their /readyz and /metrics): ENLACE_OPS_<SERVICE>_URL.
    intake_url: str = _url("intake", 8001)
    referral_url: str = _url("referral", 8002)
    followup_url: str = _url("followup", 8003)
    notifications_url: str = _url("notifications", 8004)
    # Lag is sampled (history and metrics) this often; each round within the bound.
    lag_sample_seconds: float = Field(default=15.0, gt=0)
    sample_timeout_seconds: float = Field(default=10.0, gt=0)
    lag_keep_hours: float = Field(default=24.0, gt=0)
    # Only consumer groups whose name contains this (a private stack's own groups).
    lag_group_filter: str = ""
    probe_timeout_seconds: float = Field(default=2.0, gt=0)
    unmet_needs_days: float = Field(default=30.0, gt=0)
    dead_letter_poll_seconds: float = Field(default=0.5, gt=0)
    # Signs the console's session cookies (services/ops/web/session.py); the local
    # profile generates one into .local/secrets/ops/.
    console_session_key: SecretStr = SecretStr("")

    def secret_settings(self) -> list[Secret]:
        return [
            *super().secret_settings(),
            Secret("ENLACE_CONSOLE_SESSION_KEY", self.console_session_key.get_secret_value()),
        ]

    def console_sessions(self) -> Sessions:
        key = self.console_session_key.get_secret_value()
        local = self.env is not Environment.PRODUCTION
        if not key and local:
            key = local_secrets.secret("ops/console-session-key")
        # Plain HTTP on loopback in the local profile; HTTPS (Secure cookies) elsewhere.
        return Sessions(key.encode(), secure=not local)

    @property
    def watched(self) -> dict[str, str]:
        return {
            "intake": self.intake_url,
            "referral": self.referral_url,
            "followup": self.followup_url,
            "notifications": self.notifications_url,
        }


def dead_letter_worker(index: DeadLetterIndex, settings: OpsSettings) -> Worker:
    async def dead_letter_index(runtime: ServiceRuntime) -> None:
        while not runtime.stopping.is_set():
            try:
                await index.run(runtime.stopping, settings.dead_letter_poll_seconds)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                loop_health().failing(f"kafka: {describe_error(exc)}")
                log.warning("dead-letter index interrupted", error=describe_error(exc))
                if await runtime.sleep(2.0):
                    return

    return dead_letter_index


def sampler_worker(ops: Operations, settings: OpsSettings) -> Worker:
    async def lag_sampler(runtime: ServiceRuntime) -> None:
        async def sample() -> None:
            await asyncio.wait_for(ops.sample(), timeout=settings.sample_timeout_seconds)

        await run_every(
            runtime, settings.lag_sample_seconds, sample, what="ops sample", retry_any=True
        )

    return lag_sampler


def create_app(settings: OpsSettings | None = None, *, clock: Clock | None = None) -> FastAPI:
    settings = settings or OpsSettings()
    http = httpx.AsyncClient()
    kafka = KafkaView(
        settings.kafka,
        namespace=settings.topic_namespace,
        group_filter=settings.lag_group_filter,
        timeout=settings.sample_timeout_seconds,
    )
    holder: dict[str, ServiceRuntime] = {}
    ops = Operations(
        pool=lambda: holder["runtime"].pool,
        kafka=kafka,
        producer=lambda: holder["runtime"].producer(),
        namespace=settings.topic_namespace,
        services=settings.watched,
        http=http,
        probe_timeout=settings.probe_timeout_seconds,
        clock=clock,
        lag_keep_hours=settings.lag_keep_hours,
        unmet_needs_days=settings.unmet_needs_days,
    )
    index = DeadLetterIndex(
        settings.kafka,
        lambda: holder["runtime"].pool,
        namespace=settings.topic_namespace,
        group_id=f"{settings.group_id}.dead-letters",
    )
    runtime = ServiceRuntime(
        settings,
        migrations=MIGRATIONS,
        subscriptions=handlers.subscriptions(),
        workers=[dead_letter_worker(index, settings), sampler_worker(ops, settings)],
    )
    holder["runtime"] = runtime
    ops.metrics = OpsMetrics(runtime.metrics.registry)
    agencies = AgencyRegistry.load(settings.agencies_file)
    current_agency = agency_dependency(agencies, runtime.auth_throttle)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime.lifespan(app):
            try:
                yield
            finally:
                await kafka.close()
                await http.aclose()

    app = service_app(
        runtime,
        title="Enlace operations",
        description="Pipeline health, consumer lag, dead letters (redrive, discard), "
        "referral health: for operations keys only.",
        lifespan=lifespan,
    )
    app.state.ops = ops
    app.state.agencies = agencies
    app.include_router(build_router(lambda: ops, role_dependency(current_agency, Role.OPERATIONS)))
    # The web console, on the same use cases (operations keys sign in through a form).
    app.include_router(
        build_web_router(ops, agencies, runtime.auth_throttle, settings.console_sessions())
    )
    return app


def main() -> None:
    serve("services.ops.app:create_app", OpsSettings())


if __name__ == "__main__":
    main()
