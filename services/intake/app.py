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


def internal_principal(agencies: AgencyRegistry, setting: str, principal_id: str) -> str:
    """`principal_id`, once checked to be an internal principal of the agencies file."""
    principal = agencies.get(principal_id)
    if principal is None or principal.role is not Role.INTERNAL:
        raise ValueError(
            f"ENLACE_{setting.upper()}: {principal_id!r} is not an internal principal of "
            "the agencies file (ENLACE_AGENCIES_FILE)"
        )
    return principal_id


def create_app(settings: IntakeSettings | None = None, *, clock: Clock | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    clock = clock or SystemClock()
    runtime = ServiceRuntime(
        settings, migrations=MIGRATIONS, subscriptions=Handlers().subscriptions()
    )
    agencies = AgencyRegistry.load(settings.agencies_file)
    current_agency = agency_dependency(agencies)
    # Partner routes take agency keys (403 for the others); each internal route, one
    # named Enlace service (anyone else is told the path does not exist).
    callers = Callers(
        partner_agency=roles_dependency(current_agency, Role.AGENCY),
        referral_service=service_principal_dependency(
            current_agency,
            internal_principal(agencies, "identity_principal", settings.identity_principal),
        ),
        notifications_service=service_principal_dependency(
            current_agency,
            internal_principal(
                agencies, "caseworker_contact_principal", settings.caseworker_contact_principal
            ),
        ),
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
