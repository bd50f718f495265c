"""Intake service wiring: settings, runtime, API."""

from pathlib import Path
from typing import Annotated

import uvicorn
from fastapi import Depends, FastAPI

from services.intake.api import build_router
from services.kit.http import (
    Agency,
    AgencyRegistry,
    BodyLimitMiddleware,
    Problem,
    agency_dependency,
    install_problem_handlers,
)
from services.kit.runtime import ServiceRuntime
from services.kit.settings import ServiceSettings

MIGRATIONS = Path(__file__).parent / "migrations"


class IntakeSettings(ServiceSettings):
    service_name: str = "intake"
    http_port: int = 8001


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    runtime = ServiceRuntime(settings, migrations=MIGRATIONS)
    agencies = AgencyRegistry.load(settings.agencies_file)
    current_agency = agency_dependency(agencies)

    async def internal_principal(agency: Annotated[Agency, Depends(current_agency)]) -> Agency:
        if not agency.is_internal:
            raise Problem(404, "Not found", "No such resource.")
        return agency

    app = FastAPI(
        title="Enlace intake",
        version="1.0.0",
        description="Registration of children at risk by partner agencies.",
        lifespan=runtime.lifespan,
    )
    app.state.runtime = runtime
    install_problem_handlers(app)
    runtime.install_request_metrics(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.include_router(runtime.health_router())
    app.include_router(
        build_router(
            lambda: runtime.pool, current_agency, internal_principal, settings.event_source
        )
    )
    return app


def main() -> None:
    settings = IntakeSettings()
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
