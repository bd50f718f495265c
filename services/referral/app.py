"""Referral service wiring: settings, directory and rules, runtime, API."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import yaml
from fastapi import FastAPI
from pydantic import Field

from services.kit.clock import Clock, SystemClock
from services.kit.http import (
    AgencyConfig,
    AgencyRegistry,
    agency_dependency,
    role_dependency,
)
from services.kit.logging import get_logger
from services.kit.runtime import ServiceRuntime, Worker, serve, service_app
from services.kit.settings import DEPLOY_DIR, ServiceSettings
from services.referral import store
from services.referral.api import ApiContext, build_router
from services.referral.directory import DirectoryCache
from services.referral.domain import Deadlines, Directory, load_rules
from services.referral.handlers import Handlers, ReferralMetrics

MIGRATIONS = Path(__file__).parent / "migrations"
log = get_logger(__name__)


class ReferralSettings(ServiceSettings):
    service_name: str = "referral"
    http_port: int = 8002
    intake_url: str = "http://127.0.0.1:8001"
    internal_api_key: str = "demo-key-svc-referral"
    directory_file: Path = DEPLOY_DIR / "directory.yaml"
    routing_file: Path = DEPLOY_DIR / "routing.yaml"
    directory_refresh_seconds: float = 5.0
    # Consumers of the cases topic in this process (one consumer-group member each, so
    # partitions are split among them and routed in parallel; a case stays on one).
    case_consumers: int = Field(default=1, ge=1, le=32)
    # How long the receiving agency has to acknowledge (respond_by), by urgency.
    respond_within_critical_hours: float = 4
    respond_within_high_hours: float = 24
    respond_within_medium_hours: float = 72
    respond_within_low_hours: float = 7 * 24

    @property
    def deadlines(self) -> Deadlines:
        return Deadlines(
            critical=timedelta(hours=self.respond_within_critical_hours),
            high=timedelta(hours=self.respond_within_high_hours),
            medium=timedelta(hours=self.respond_within_medium_hours),
            low=timedelta(hours=self.respond_within_low_hours),
        )


def _agency_ids(path: Path) -> list[str]:
    raw = yaml.safe_load(path.read_text()) or {}
    return [AgencyConfig.model_validate(a).id for a in raw.get("agencies", [])]


def _directory_worker(directory: DirectoryCache, seed: Directory, refresh_seconds: float) -> Worker:
    async def directory_worker(runtime: ServiceRuntime) -> None:
        """Seed the directory, load it, then follow edits made by any replica."""
        async with store.connection(runtime.pool) as conn:
            added = await directory.seed(conn, seed)
            await directory.refresh(conn, force=True)
        log.info("directory seeded", added=added)
        while not await runtime.sleep(refresh_seconds):
            try:
                async with store.connection(runtime.pool) as conn:
                    await directory.refresh(conn)
            except Exception as exc:  # keep routing on the copy we have
                log.warning("directory refresh failed", error=exc.__class__.__name__)

    return directory_worker


def create_app(
    settings: ReferralSettings | None = None,
    *,
    intake_client: httpx.AsyncClient | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    settings = settings or ReferralSettings()
    clock = clock or SystemClock()
    agencies = AgencyRegistry.load(settings.agencies_file)
    directory = DirectoryCache(_agency_ids(settings.agencies_file))
    # Both files are validated here: a bad rule or seed stops start-up, naming its place.
    rules = load_rules(settings.routing_file.read_text(), source=settings.routing_file.name)
    seed = directory.read_seed(settings.directory_file)

    runtime = ServiceRuntime(settings, migrations=MIGRATIONS)
    metrics = ReferralMetrics(runtime.metrics.registry)
    handlers = Handlers(
        rules=rules,
        directory=directory,
        deadlines=settings.deadlines,
        clock=clock,
        source=settings.event_source,
        metrics=metrics,
    )
    runtime.subscriptions = [handlers.subscription() for _ in range(settings.case_consumers)]
    runtime.workers = [_directory_worker(directory, seed, settings.directory_refresh_seconds)]

    current_agency = agency_dependency(agencies)
    operations = role_dependency(current_agency, "operations")
    internal = role_dependency(current_agency, "internal")

    owned_client = intake_client is None
    client = intake_client or httpx.AsyncClient(base_url=settings.intake_url, timeout=5.0)

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
    ctx = ApiContext(
        pool_of=lambda: runtime.pool,
        directory=directory,
        deadlines=settings.deadlines,
        clock=clock,
        source=settings.event_source,
        metrics=metrics,
        intake=lambda: client,
        internal_api_key=settings.internal_api_key,
    )
    app.include_router(build_router(ctx, current_agency, operations, internal))
    return app


def main() -> None:
    settings = ReferralSettings()
    serve("services.referral.app:create_app", settings)


if __name__ == "__main__":
    main()
