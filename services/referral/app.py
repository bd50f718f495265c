"""Referral service wiring: settings, the directory and the routing rules, the
use cases' context, the Kafka handlers, the directory worker and the HTTP API.
(The package docstring, services/referral/__init__.py, says where to read next.)"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import httpx
from fastapi import FastAPI
from pydantic import Field

from services.kit.clock import Clock, SystemClock
from services.kit.http import (
    AgencyRegistry,
    Role,
    agency_dependency,
    role_dependency,
    service_principal_dependency,
)
from services.kit.production import Secret
from services.kit.runtime import ServiceRuntime, serve, service_app
from services.kit.settings import DEPLOY_DIR, ServiceSettings
from services.referral import commands
from services.referral.api import build_router
from services.referral.directory_cache import DirectoryCache, directory_worker
from services.referral.domain.lifecycle import Deadlines
from services.referral.domain.routing import load_rules
from services.referral.handlers import Handlers
from services.referral.intake import IntakeIdentities
from services.referral.metrics import ReferralMetrics

MIGRATIONS = Path(__file__).parent / "migrations"


class ReferralSettings(ServiceSettings):
    service_name: str = "referral"
    http_port: int = 8002
    intake_url: str = "http://127.0.0.1:8001"
    # This service's API key for intake's internal endpoints (its principal is
    # svc-referral); a secret, no default (the local profile passes its demo key).
    internal_api_key: str = ""
    # The one internal principal the contact directory (caseworkers' phones and
    # e-mails) is served to: the notifications service.
    contact_directory_principal: str = "svc-notifications"
    directory_file: Path = DEPLOY_DIR / "directory.yaml"
    routing_file: Path = DEPLOY_DIR / "routing.yaml"
    # How often each replica checks whether another one edited the directory.
    directory_refresh_seconds: float = 2.0
    # Consumers of the cases topic in this process (one consumer-group member each, so
    # partitions are split among them and routed in parallel; a case stays on one).
    case_consumers: int = Field(default=1, ge=1, le=32)
    # How long the receiving agency has to acknowledge (respond_by), by urgency.
    respond_within_critical_hours: float = 4
    respond_within_high_hours: float = 24
    respond_within_medium_hours: float = 72
    respond_within_low_hours: float = 7 * 24

    def secret_settings(self) -> list[Secret]:
        return [
            *super().secret_settings(),
            Secret("ENLACE_INTERNAL_API_KEY", self.internal_api_key),
        ]

    @property
    def deadlines(self) -> Deadlines:
        return Deadlines(
            critical=timedelta(hours=self.respond_within_critical_hours),
            high=timedelta(hours=self.respond_within_high_hours),
            medium=timedelta(hours=self.respond_within_medium_hours),
            low=timedelta(hours=self.respond_within_low_hours),
        )


def agency_ids(path: Path) -> list[str]:
    """The partner agencies of the agencies file: the only valid directory
    organisations (a service or an operator never receives a referral)."""
    return [a.id for a in AgencyRegistry.load(path) if a.role is Role.AGENCY]


def create_app(
    settings: ReferralSettings | None = None,
    *,
    intake_client: httpx.AsyncClient | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    settings = settings or ReferralSettings()
    clock = clock or SystemClock()
    agencies = AgencyRegistry.load(settings.agencies_file)
    directory = DirectoryCache(agency_ids(settings.agencies_file))
    # Both files are validated here: a bad rule or seed stops start-up, naming its place.
    rules = load_rules(settings.routing_file.read_text(), source=settings.routing_file.name)
    seed = directory.read_seed(settings.directory_file)

    owned_client = intake_client is None
    client = intake_client or httpx.AsyncClient(base_url=settings.intake_url, timeout=5.0)
    runtime = ServiceRuntime(settings, migrations=MIGRATIONS)
    ctx = commands.Context(
        directory=directory,
        rules=rules,
        deadlines=settings.deadlines,
        clock=clock,
        source=settings.event_source,
        metrics=ReferralMetrics(runtime.metrics.registry),
        identities=IntakeIdentities(lambda: client, settings.internal_api_key),
    )
    runtime.subscriptions = Handlers(ctx, case_consumers=settings.case_consumers).subscriptions()
    runtime.workers = [directory_worker(directory, seed, settings.directory_refresh_seconds)]

    current_agency = agency_dependency(agencies, runtime.auth_throttle)
    operations = role_dependency(current_agency, "operations")
    internal = service_principal_dependency(
        current_agency,
        agencies,
        settings.contact_directory_principal,
        "ENLACE_CONTACT_DIRECTORY_PRINCIPAL",
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime.lifespan(app):
            try:
                yield
            finally:
                if owned_client:
                    await client.aclose()

    app = service_app(
        runtime,
        title="Enlace referral",
        description="Service directory, routing and the closed-loop referral lifecycle.",
        lifespan=lifespan,
    )
    app.state.directory = directory
    app.include_router(
        build_router(ctx, lambda: runtime.pool, current_agency, operations, internal)
    )
    return app


def main() -> None:
    settings = ReferralSettings()
    serve("services.referral.app:create_app", settings)


if __name__ == "__main__":
    main()
