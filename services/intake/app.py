"""Intake service wiring: settings, runtime, API."""

from pathlib import Path

from fastapi import FastAPI

from services.intake.api import build_router
from services.kit.clock import Clock, SystemClock
from services.kit.http import AgencyRegistry, agency_dependency, role_dependency
from services.kit.runtime import ServiceRuntime, serve, service_app
from services.kit.settings import ServiceSettings

MIGRATIONS = Path(__file__).parent / "migrations"


class IntakeSettings(ServiceSettings):
    service_name: str = "intake"
    http_port: int = 8001


def create_app(settings: IntakeSettings | None = None, *, clock: Clock | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    clock = clock or SystemClock()
    runtime = ServiceRuntime(settings, migrations=MIGRATIONS)
    agencies = AgencyRegistry.load(settings.agencies_file)
    current_agency = agency_dependency(agencies)
    # Other Enlace services only; anyone else is told the path does not exist.
    internal_principal = role_dependency(current_agency, "internal")

    app = service_app(
        runtime,
        title="Enlace intake",
        description="Registration of children at risk by partner agencies.",
    )
    app.state.clock = clock
    app.include_router(
        build_router(
            lambda: runtime.pool, clock, current_agency, internal_principal, settings.event_source
        )
    )
    return app


def main() -> None:
    settings = IntakeSettings()
    serve("services.intake.app:create_app", settings)


if __name__ == "__main__":
    main()
