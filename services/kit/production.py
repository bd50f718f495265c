"""What a service refuses to start with in production (`ENLACE_ENV=production`).

A secret that is missing or empty, or whose value anyone can know: a demo key of
the local profile (deploy/local/demo-api-keys.txt), a value this repository once
used as a code default, or a usual default password. The agencies file must be
given, must not be the local profile's demo file and must not list the hash of a
demo key.

Each settings class lists its secrets (`ServiceSettings.secret_settings()`); this
module checks them the same way for every service. The local profile
(`ENLACE_ENV=local`, set by deploy/local, the tests and the bench) skips the check:
its secrets are demo keys or generated under `.local/secrets/`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml

LOCAL_PROFILE_DIR = Path(__file__).resolve().parents[2] / "deploy" / "local"
# The local profile's agencies (demo keys only) and the keys behind their hashes.
DEMO_AGENCIES_FILE = LOCAL_PROFILE_DIR / "agencies.yaml"
DEMO_KEYS_FILE = LOCAL_PROFILE_DIR / "demo-api-keys.txt"

# Values published in this repository (former code defaults: the `enlace` database
# password, the local SMS provider's auth token) and the usual default passwords:
# known to anyone, so never a secret.
PUBLISHED_VALUES = frozenset(
    {
        "enlace",
        "local-sms-auth-token",
        # the local demo profile's webhook secrets key (services/notifications)
        "enlace-local-profile-webhook-secrets",
        "postgres",
        "password",
        "changeme",
        "secret",
        "admin",
    }
)


class Environment(StrEnum):
    LOCAL = "local"
    PRODUCTION = "production"


class UnsafeProductionSettings(RuntimeError):
    """Settings a production service must not start with. Not a ValueError on
    purpose: pydantic would wrap it and echo the input, secrets included."""


@dataclass(frozen=True)
class Secret:
    """One secret a settings class holds: the setting's name (its environment
    variable), its value, and what to say when it is missing."""

    setting: str
    value: str | None
    missing: str = "is missing or empty"


@cache
def demo_keys() -> frozenset[str]:
    """The local profile's demo API keys (empty if the file is not deployed)."""
    if not DEMO_KEYS_FILE.is_file():
        return frozenset()
    return frozenset(
        line.split()[1]
        for line in DEMO_KEYS_FILE.read_text().splitlines()
        if line.strip() and not line.startswith("#") and len(line.split()) > 1
    )


@cache
def demo_key_hashes() -> frozenset[str]:
    """SHA-256 of every demo key, and every hash the demo agencies file lists."""
    hashes = {hashlib.sha256(key.encode()).hexdigest() for key in demo_keys()}
    if DEMO_AGENCIES_FILE.is_file():
        hashes |= set(_hashes_by_agency(DEMO_AGENCIES_FILE))
    return frozenset(hashes)


def is_public(value: str) -> bool:
    return value in PUBLISHED_VALUES or value in demo_keys() or value.startswith("demo-key-")


def url_password(url: str) -> str | None:
    """The password a PostgreSQL URL carries (in its user part or `?password=`)."""
    parts = urlsplit(url)
    if parts.password:
        return parts.password
    return next(iter(parse_qs(parts.query).get("password", [])), None)


def secret_problems(secrets: Iterable[Secret]) -> list[str]:
    problems: list[str] = []
    for secret in secrets:
        if not secret.value:
            problems.append(f"{secret.setting} {secret.missing}")
        elif is_public(secret.value):
            problems.append(f"{secret.setting} holds a demo or published value, not a secret")
    return problems


def agencies_file_problems(path: Path, given: bool) -> list[str]:
    setting = "ENLACE_AGENCIES_FILE"
    if not given:
        return [f"{setting} is not set (only the local profile has a default: its demo file)"]
    if path.resolve() == DEMO_AGENCIES_FILE.resolve():
        return [f"{setting} is the local profile's demo file ({path})"]
    if not path.is_file():
        return [f"{setting}={str(path)!r} is not a readable file"]
    listed = _hashes_by_agency(path)
    demo = sorted({agency for digest, agency in listed.items() if digest in demo_key_hashes()})
    if demo:
        return [f"{setting} lists the hash of a demo key (agencies: {', '.join(demo)})"]
    return []


def refuse(problems: list[str]) -> None:
    if problems:
        raise UnsafeProductionSettings(
            "ENLACE_ENV=production refuses to start with these settings: " + "; ".join(problems)
        )


def _hashes_by_agency(path: Path) -> dict[str, str]:
    """The API key hashes an agencies file lists, each with its agency id."""
    raw = yaml.safe_load(path.read_text()) or {}
    found: dict[str, str] = {}
    for entry in raw.get("agencies", []) if isinstance(raw, dict) else []:
        if isinstance(entry, dict):
            for digest in entry.get("api_key_sha256") or []:
                found[str(digest).lower()] = str(entry.get("id"))
    return found
