"""Intake service wiring: settings, runtime (the referral-events subscriber that
keeps disclosure grants), API."""

from pathlib import Path

from fastapi import FastAPI

from services.intake.api import Callers, build_router
from services.intake.handlers import Handlers
from services.kit.clock import Clock, SystemClock
from services.kit.http import (
    AgencyRegistry,
    Role,
    agency_dependency,
    role_dependency,
    roles_dependency,
    service_principal_dependency,
)
from services.kit.runtime import ServiceRuntime, serve, service_app
from services.kit.settings import ServiceSettings

MIGRATIONS = Path(__file__).parent / "migrations"


class IntakeSettings(ServiceSettings):
    service_name: str = "intake"
    http_port: int = 8001
    # The internal principals (of the agencies file) each internal endpoint answers.
    identity_principal: str = "svc-referral"
    caseworker_contact_principal: str = "svc-notifications"


def create_app(settings: IntakeSettings | None = None, *, clock: Clock | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    clock = clock or SystemClock()
    runtime = ServiceRuntime(
        settings, migrations=MIGRATIONS, subscriptions=Handlers().subscriptions()
    )
    agencies = AgencyRegistry.load(settings.agencies_file)
    current_agency = agency_dependency(agencies, runtime.auth_throttle)
    # Partner routes take agency keys (403 for the others); each internal route, one
    # named Enlace service, and the coordination routes, operations keys (anyone else
    # is told the path does not exist).
    callers = Callers(
        partner_agency=roles_dependency(current_agency, Role.AGENCY),
        referral_service=service_principal_dependency(
            current_agency, agencies, settings.identity_principal, "ENLACE_IDENTITY_PRINCIPAL"
        ),
        notifications_service=service_principal_dependency(
            current_agency,
            agencies,
            settings.caseworker_contact_principal,
            "ENLACE_CASEWORKER_CONTACT_PRINCIPAL",
        ),
        operations=role_dependency(current_agency, Role.OPERATIONS),
    )

    app = service_app(
        runtime,
        title="Enlace intake",
        description="Registration of children at risk by partner agencies.",
    )
    app.state.clock = clock
    app.include_router(build_router(lambda: runtime.pool, clock, callers, settings.event_source))
    return app


def main() -> None:
    settings = IntakeSettings()
    serve("services.intake.app:create_app", settings)


if __name__ == "__main__":
    main()
