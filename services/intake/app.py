"""Intake service wiring: settings, runtime, API."""

from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI

from services.intake.api import build_router
from services.kit.http import (
    Agency,
    AgencyRegistry,
    Problem,
    agency_dependency,
)
from services.kit.runtime import ServiceRuntime, serve, service_app
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

    app = service_app(
        runtime,
        title="Enlace intake",
        description="Registration of children at risk by partner agencies.",
    )
    app.include_router(
        build_router(
            lambda: runtime.pool, current_agency, internal_principal, settings.event_source
        )
    )
    return app


def main() -> None:
    settings = IntakeSettings()
    serve("services.intake.app:create_app", settings)


if __name__ == "__main__":
    main()
