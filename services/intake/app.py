"""Intake service wiring: settings, the vault (KEK provider and identity hash key),
runtime (the referral-events subscriber, the retention job, the sealing of older
cases at start), API."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

from fastapi import FastAPI
from pydantic import Field, SecretStr

from services.intake import commands
from services.intake.api import Callers, build_router
from services.intake.commands.keys import seal_unsealed_cases
from services.intake.handlers import Handlers
from services.intake.keks import FileKeys, KekRing, KeyEncryptionKeys
from services.intake.vault import Vault
from services.kit import local_secrets
from services.kit.clock import Clock, SystemClock
from services.kit.http import (
    AgencyRegistry,
    Role,
    agency_dependency,
    role_dependency,
    roles_dependency,
    service_principal_dependency,
)
from services.kit.production import Environment, Secret
from services.kit.runtime import ServiceRuntime, Worker, serve, service_app
from services.kit.settings import ServiceSettings

MIGRATIONS = Path(__file__).parent / "migrations"


class IntakeSettings(ServiceSettings):
    service_name: str = "intake"
    http_port: int = 8001
    # The internal principals (of the agencies file) each internal endpoint answers.
    identity_principal: str = "svc-referral"
    caseworker_contact_principal: str = "svc-notifications"
    # What wraps each case's data key (services/intake/keks.py). The local profile
    # makes its first key file under .local/secrets/ at first start; production
    # must name a provisioned directory, or use the PKCS#11 token.
    kek_provider: Literal["file", "pkcs11"] = "file"
    kek_dir: Path = Field(default=local_secrets.SECRETS_DIR / "intake-kek")
    kek_pkcs11_module: str = "/usr/lib/softhsm/libsofthsm2.so"
    kek_pkcs11_token: str = "enlace-intake"
    kek_pkcs11_pin: SecretStr = SecretStr("")
    # HMAC key of the duplicate key and of idempotent request hashes (its own secret).
    identity_hash_key: SecretStr = SecretStr("")
    # Retention: cases whose referrals all ended this long ago are erased.
    retention_months: int = Field(default=24, ge=1)
    retention_interval_seconds: float = Field(default=6 * 3600.0, gt=0)

    def secret_settings(self) -> list[Secret]:
        secrets = [
            *super().secret_settings(),
            Secret("ENLACE_IDENTITY_HASH_KEY", self.identity_hash_key.get_secret_value()),
        ]
        if self.kek_provider == "pkcs11":
            secrets.append(Secret("ENLACE_KEK_PKCS11_PIN", self.kek_pkcs11_pin.get_secret_value()))
        return secrets

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        if (
            self.env is Environment.PRODUCTION
            and self.kek_provider == "file"
            and "kek_dir" not in self.model_fields_set
        ):
            problems.append("ENLACE_KEK_DIR is not given (the local profile's key directory)")
        return problems

    @property
    def local(self) -> bool:
        return self.env is not Environment.PRODUCTION


def kek_provider(settings: IntakeSettings) -> KeyEncryptionKeys:
    if settings.kek_provider == "pkcs11":
        from services.intake.kek_pkcs11 import Pkcs11Keys

        pin = settings.kek_pkcs11_pin.get_secret_value()
        if not pin and settings.local:
            pin = local_secrets.secret("softhsm/user-pin")
        return Pkcs11Keys(
            settings.kek_pkcs11_module,
            settings.kek_pkcs11_token,
            pin,
            create_first=settings.local,
        )
    return FileKeys(settings.kek_dir, create_first=settings.local)


def build_vault(settings: IntakeSettings) -> Vault:
    """The vault of these settings; the local profile generates what it lacks."""
    hash_key = settings.identity_hash_key.get_secret_value()
    if not hash_key and settings.local:
        hash_key = local_secrets.secret("intake/identity-hash-key")
    ring = KekRing(kek_provider(settings))
    ring.current()  # no KEK (never provisioned, wrong token): refuse to start, saying so
    return Vault(ring, hash_key.encode())


def retention_worker(settings: IntakeSettings, clock: Clock) -> Worker:
    async def retention(runtime: ServiceRuntime) -> None:
        while True:
            await commands.apply_retention(
                runtime.pool,
                clock=clock,
                source=settings.event_source,
                months=settings.retention_months,
            )
            if await runtime.sleep(settings.retention_interval_seconds):
                return

    return retention


def create_app(
    settings: IntakeSettings | None = None,
    *,
    clock: Clock | None = None,
    vault: Vault | None = None,
) -> FastAPI:
    settings = settings or IntakeSettings()
    clock = clock or SystemClock()
    vault = vault or build_vault(settings)
    runtime = ServiceRuntime(
        settings,
        migrations=MIGRATIONS,
        subscriptions=Handlers().subscriptions(),
        workers=[retention_worker(settings, clock)],
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
        eraser=roles_dependency(current_agency, Role.AGENCY, Role.OPERATIONS),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime.lifespan(app):
            # Cases registered before sealing existed are sealed before any is served.
            await seal_unsealed_cases(runtime.pool, vault)
            yield

    app = service_app(
        runtime,
        title="Enlace intake",
        description="Registration of children at risk by partner agencies.",
        lifespan=lifespan,
    )
    app.state.clock = clock
    app.state.vault = vault
    app.include_router(
        build_router(lambda: runtime.pool, clock, callers, settings.event_source, vault)
    )
    return app


def main() -> None:
    settings = IntakeSettings()
    serve("services.intake.app:create_app", settings)


if __name__ == "__main__":
    main()
