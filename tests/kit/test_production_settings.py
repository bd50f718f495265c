"""ENLACE_ENV=production: a service refuses to start with a secret missing or a demo
one, naming the setting (and never echoing a secret); with its own secrets it starts.
The local profile keeps its demo defaults. Settings-level, no broker needed."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from services.followup.app import FollowupSettings
from services.intake.app import IntakeSettings
from services.intake.app import create_app as create_intake
from services.intake.keks import KeyUnavailable
from services.kit.production import DEMO_AGENCIES_FILE, Environment, UnsafeProductionSettings
from services.kit.runtime import ServiceRuntime
from services.kit.settings import ServiceSettings
from services.notifications.app import NotificationsSettings
from services.notifications.endpoint_secrets import LOCAL_PROFILE_KEY
from services.ops.app import OpsSettings
from services.referral.app import ReferralSettings

REPO = Path(__file__).resolve().parents[2]
SETTINGS = [IntakeSettings, ReferralSettings, FollowupSettings, NotificationsSettings, OpsSettings]
DB_PASSWORD = secrets.token_urlsafe(24)
KAFKA_PASSWORD = secrets.token_urlsafe(24)
OWN_KEY = secrets.token_urlsafe(24)
SMS_TOKEN = secrets.token_urlsafe(24)
HASH_KEY = secrets.token_urlsafe(32)
PIN = secrets.token_urlsafe(16)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what each test gives: nothing from the suite's local profile or the shell."""
    for name in list(os.environ):
        if name.startswith(("ENLACE_", "KAFKA_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)


@pytest.fixture
def agencies_file(tmp_path: Path) -> Path:
    """A deployment's own agencies file: its own keys, none of them a demo key."""
    path = tmp_path / "agencies.yaml"
    digest = hashlib.sha256(OWN_KEY.encode()).hexdigest()
    path.write_text(
        "agencies:\n"
        "  - {id: upe-piura, name: UPE Piura, country: PE, roles: [agency],"
        f" api_key_sha256: [{digest}]}}\n"
    )
    return path


def production(cls: type[ServiceSettings], agencies: Path, **overrides: Any) -> dict[str, Any]:
    """Settings a production service of `cls` may start with, then `overrides`."""
    service = cls.model_fields["service_name"].default
    values: dict[str, Any] = {
        "env": "production",
        "database_url": f"postgresql://enlace_{service}:{DB_PASSWORD}@db.internal:5432/enlace",
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_username": f"svc-{service}",
        "kafka_sasl_password": KAFKA_PASSWORD,
        "agencies_file": agencies,
    }
    if "internal_api_key" in cls.model_fields:
        values["internal_api_key"] = secrets.token_urlsafe(24)
    if "sms_auth_token" in cls.model_fields:
        values["sms_auth_token"] = SMS_TOKEN
        values["webhook_secrets_key"] = HASH_KEY
    if "console_session_key" in cls.model_fields:
        values["console_session_key"] = HASH_KEY
    if "identity_hash_key" in cls.model_fields:
        values["identity_hash_key"] = HASH_KEY
        values["kek_dir"] = Path("/run/secrets/enlace-kek")
    return {**values, **overrides}


def refusal(cls: type[ServiceSettings], values: dict[str, Any]) -> str:
    with pytest.raises(UnsafeProductionSettings) as refused:
        cls(**values)
    message = str(refused.value)
    for secret in (DB_PASSWORD, KAFKA_PASSWORD, SMS_TOKEN, HASH_KEY, PIN):
        assert secret not in message  # names the setting, never its value
    return message


def test_production_is_the_default_and_refuses_an_unconfigured_service() -> None:
    message = refusal(NotificationsSettings, {})
    assert message.startswith("ENLACE_ENV=production refuses to start")
    for problem in (
        "DATABASE_URL has no password",
        "KAFKA_SASL_PASSWORD is missing or empty",
        "ENLACE_AGENCIES_FILE is not set",
        "ENLACE_SMS_AUTH_TOKEN is missing or empty",
        "ENLACE_INTERNAL_API_KEY is missing or empty",
        "ENLACE_WEBHOOK_SECRETS_KEY is missing or empty",
    ):
        assert problem in message


@pytest.mark.parametrize("cls", SETTINGS, ids=lambda c: c.__name__)
def test_each_service_with_its_own_secrets_passes(
    cls: type[ServiceSettings], agencies_file: Path
) -> None:
    settings = cls(**production(cls, agencies_file))
    assert settings.env is Environment.PRODUCTION
    assert settings.production_problems() == []


@pytest.mark.parametrize("cls", SETTINGS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"database_url": "postgresql://enlace_x@db:5432/enlace"}, "DATABASE_URL has no password"),
        (
            {"database_url": "postgresql://enlace:enlace@db:5432/enlace"},
            "DATABASE_URL holds a demo or published value",
        ),
        (
            {"database_url": "postgresql://u@db:5432/enlace?password=postgres"},
            "DATABASE_URL holds a demo or published value",
        ),
        ({"kafka_sasl_password": ""}, "KAFKA_SASL_PASSWORD is missing or empty"),
        ({"kafka_security_protocol": "PLAINTEXT"}, "KAFKA_SECURITY_PROTOCOL is PLAINTEXT"),
        ({"agencies_file": DEMO_AGENCIES_FILE}, "ENLACE_AGENCIES_FILE is the local profile's"),
    ],
    ids=["db-no-password", "db-demo-password", "db-query-password", "kafka", "plaintext", "demo"],
)
def test_every_service_refuses_a_missing_or_demo_common_secret(
    cls: type[ServiceSettings], agencies_file: Path, overrides: dict[str, Any], expected: str
) -> None:
    assert expected in refusal(cls, production(cls, agencies_file, **overrides))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"identity_hash_key": ""}, "ENLACE_IDENTITY_HASH_KEY is missing or empty"),
        ({"kek_provider": "pkcs11"}, "ENLACE_KEK_PKCS11_PIN is missing or empty"),
        ({"kek_provider": "pkcs11", "kek_pkcs11_pin": "changeme"}, "ENLACE_KEK_PKCS11_PIN"),
    ],
    ids=["hash-key", "pkcs11-no-pin", "pkcs11-published-pin"],
)
def test_intake_refuses_a_missing_identity_hash_key_or_token_pin(
    agencies_file: Path, overrides: dict[str, Any], expected: str
) -> None:
    assert expected in refusal(
        IntakeSettings, production(IntakeSettings, agencies_file, **overrides)
    )
    fine = production(IntakeSettings, agencies_file, kek_provider="pkcs11", kek_pkcs11_pin=PIN)
    assert IntakeSettings(**fine).production_problems() == []


def test_intake_never_uses_the_local_key_directory_in_production(agencies_file: Path) -> None:
    """The key files are provisioned: production never generates a KEK of its own."""
    values = production(IntakeSettings, agencies_file)
    del values["kek_dir"]
    assert "ENLACE_KEK_DIR is not given" in refusal(IntakeSettings, values)


def test_agencies_file_must_be_given_in_production(agencies_file: Path) -> None:
    values = production(IntakeSettings, agencies_file)
    del values["agencies_file"]
    assert "ENLACE_AGENCIES_FILE is not set" in refusal(IntakeSettings, values)


def test_a_copy_of_the_demo_agencies_file_is_refused(tmp_path: Path, agencies_file: Path) -> None:
    copy = shutil.copy(DEMO_AGENCIES_FILE, tmp_path / "ours.yaml")
    message = refusal(IntakeSettings, production(IntakeSettings, agencies_file, agencies_file=copy))
    assert "ENLACE_AGENCIES_FILE lists the hash of a demo key" in message
    assert "upe-piura" in message


def test_an_agencies_file_with_one_demo_key_hash_names_its_agency(
    tmp_path: Path, agencies_file: Path
) -> None:
    mixed = tmp_path / "mixed.yaml"
    demo = hashlib.sha256(b"demo-key-cem-piura").hexdigest()
    mixed.write_text(
        agencies_file.read_text()
        + "  - {id: cem-piura, name: CEM, country: PE, roles: [agency],"
        + f" api_key_sha256: [{demo}]}}\n"
    )
    message = refusal(ReferralSettings, production(ReferralSettings, mixed, agencies_file=mixed))
    assert "ENLACE_AGENCIES_FILE lists the hash of a demo key (agencies: cem-piura)" in message


@pytest.mark.parametrize(
    ("cls", "overrides", "expected"),
    [
        (NotificationsSettings, {"sms_auth_token": ""}, "ENLACE_SMS_AUTH_TOKEN is missing"),
        (
            NotificationsSettings,
            {"sms_auth_token": "local-sms-auth-token"},  # the former code default
            "ENLACE_SMS_AUTH_TOKEN holds a demo or published value",
        ),
        (NotificationsSettings, {"internal_api_key": ""}, "ENLACE_INTERNAL_API_KEY is missing"),
        (
            NotificationsSettings,
            {"internal_api_key": "demo-key-svc-notifications"},
            "ENLACE_INTERNAL_API_KEY holds a demo or published value",
        ),
        (
            NotificationsSettings,
            {"smtp_user": "enlace", "smtp_password": None},
            "ENLACE_SMTP_PASSWORD is missing",
        ),
        (
            NotificationsSettings,
            {"webhook_secrets_key": ""},
            "ENLACE_WEBHOOK_SECRETS_KEY is missing",
        ),
        (
            NotificationsSettings,
            {"webhook_secrets_key": LOCAL_PROFILE_KEY},  # the local demo profile's key
            "ENLACE_WEBHOOK_SECRETS_KEY holds a demo or published value",
        ),
        (ReferralSettings, {"internal_api_key": ""}, "ENLACE_INTERNAL_API_KEY is missing"),
        (
            ReferralSettings,
            {"internal_api_key": "demo-key-svc-referral"},
            "ENLACE_INTERNAL_API_KEY holds a demo or published value",
        ),
    ],
    ids=[
        "sms-empty",
        "sms-old-default",
        "notifications-key-empty",
        "notifications-demo-key",
        "smtp-password",
        "webhook-key-empty",
        "webhook-key-local-profile",
        "referral-key-empty",
        "referral-demo-key",
    ],
)
def test_service_secrets_missing_or_demo_are_refused(
    cls: type[ServiceSettings], overrides: dict[str, Any], expected: str, agencies_file: Path
) -> None:
    assert expected in refusal(cls, production(cls, agencies_file, **overrides))


def test_read_from_the_environment_as_a_process_gets_them(
    monkeypatch: pytest.MonkeyPatch, agencies_file: Path
) -> None:
    """The names in the refusals are the environment variables a deployment sets."""
    for name, value in {
        "ENLACE_ENV": "production",
        "DATABASE_URL": f"postgresql://enlace_notifications:{DB_PASSWORD}@db/enlace",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_USERNAME": "svc-notifications",
        "KAFKA_SASL_PASSWORD": KAFKA_PASSWORD,
        "ENLACE_AGENCIES_FILE": str(agencies_file),
        "ENLACE_SMS_AUTH_TOKEN": SMS_TOKEN,
        "ENLACE_INTERNAL_API_KEY": secrets.token_urlsafe(24),
        "ENLACE_WEBHOOK_SECRETS_KEY": HASH_KEY,
    }.items():
        monkeypatch.setenv(name, value)
    assert NotificationsSettings().production_problems() == []
    monkeypatch.setenv("ENLACE_SMS_AUTH_TOKEN", "local-sms-auth-token")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "")
    message = refusal(NotificationsSettings, {})
    assert "ENLACE_SMS_AUTH_TOKEN holds a demo or published value" in message
    assert "KAFKA_SASL_PASSWORD is missing or empty" in message


def test_the_local_profile_keeps_its_demo_defaults() -> None:
    settings = NotificationsSettings(env="local")
    assert settings.agencies_file == DEMO_AGENCIES_FILE
    assert settings.production_problems() == []


async def test_the_runtime_checks_again_before_anything_else(agencies_file: Path) -> None:
    """Settings that skipped validation (a copy) are refused at start, before the
    database (this DSN would fail to connect) or Kafka is touched."""
    local = IntakeSettings(env="local", database_url="postgresql://127.0.0.1:1/none")
    copied = local.model_copy(update={"env": Environment.PRODUCTION})
    runtime = ServiceRuntime(copied)
    with pytest.raises(UnsafeProductionSettings, match="DATABASE_URL has no password"):
        await runtime.start()


def test_a_service_process_refuses_to_start_and_says_why(agencies_file: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "ENLACE_ENV": "production",
        "DATABASE_URL": f"postgresql://enlace_notifications:{DB_PASSWORD}@127.0.0.1:1/x",
        "KAFKA_SASL_USERNAME": "svc-notifications",
        "KAFKA_SASL_PASSWORD": KAFKA_PASSWORD,
        "ENLACE_AGENCIES_FILE": str(agencies_file),
        "ENLACE_INTERNAL_API_KEY": secrets.token_urlsafe(24),
        "ENLACE_SMS_AUTH_TOKEN": "local-sms-auth-token",
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.notifications"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "ENLACE_SMS_AUTH_TOKEN holds a demo or published value" in done.stderr
    assert DB_PASSWORD not in done.stderr + done.stdout
    assert KAFKA_PASSWORD not in done.stderr + done.stdout


def test_intake_without_a_provisioned_kek_refuses_to_start(
    agencies_file: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "kek"
    empty.mkdir()
    settings = IntakeSettings(**production(IntakeSettings, agencies_file, kek_dir=empty))
    with pytest.raises(KeyUnavailable, match="no key-encryption key in provider file"):
        create_intake(settings)
    assert list(empty.iterdir()) == []  # nothing generated outside the local profile


def test_the_console_refuses_to_start_without_its_session_key(agencies_file: Path) -> None:
    values = production(OpsSettings, agencies_file, console_session_key="")
    assert "ENLACE_CONSOLE_SESSION_KEY is missing or empty" in refusal(OpsSettings, values)
