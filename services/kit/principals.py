"""Who calls Enlace: the principals of the agencies file (the `agencies_file`
setting; locally deploy/local/agencies.yaml), each with its hashed API keys and
exactly one role.

A key is a partner agency's, an Enlace service's (`internal`) or an operator's
(`operations`), never a mix: a file that gives a principal two roles is refused at
load, naming the principal. The HTTP dependencies that check roles are in
services/kit/http.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator


class Role(StrEnum):
    """What a key is for. One role per key: a service or an operator never acts as a
    partner agency (registers cases, takes referral steps), and an agency never
    reaches the internal endpoints."""

    AGENCY = "agency"  # a partner agency: its cases, its referrals, its follow-ups
    INTERNAL = "internal"  # an Enlace service, for the documented internal calls
    OPERATIONS = "operations"  # an operator: directory administration, reports


class AgencyConfig(BaseModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    name: str
    country: str = Field(pattern=r"^[A-Z]{2}$")
    roles: list[Role] = Field(default_factory=lambda: [Role.AGENCY], description="Exactly one")
    api_key_sha256: list[str] = Field(default_factory=list)

    @field_validator("roles")
    @classmethod
    def _one_role(cls, roles: list[Role]) -> list[Role]:
        if len(set(roles)) != 1:
            given = ", ".join(r.value for r in roles) or "none"
            raise ValueError(
                f"one role per key, got [{given}]: a key is an agency's (agency), a "
                "service's (internal) or an operator's (operations)"
            )
        return roles


@dataclass(frozen=True)
class Agency:
    """An authenticated principal: a partner agency, an Enlace service or an operator."""

    id: str
    name: str
    country: str
    role: Role = Role.AGENCY

    @property
    def is_operations(self) -> bool:
        return self.role is Role.OPERATIONS

    @property
    def is_internal(self) -> bool:
        """A service principal, for documented internal calls between services."""
        return self.role is Role.INTERNAL


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class AgencyRegistry:
    """Agencies and their hashed API keys, from the agencies file."""

    def __init__(self, agencies: list[AgencyConfig]) -> None:
        self._by_key: dict[str, Agency] = {}
        self._by_id: dict[str, Agency] = {}
        for cfg in agencies:
            agency = Agency(cfg.id, cfg.name, cfg.country, cfg.roles[0])
            if cfg.id in self._by_id:
                raise ValueError(f"agencies: duplicate agency id {cfg.id!r}")
            self._by_id[cfg.id] = agency
            for digest in cfg.api_key_sha256:
                if digest in self._by_key:
                    raise ValueError(f"agencies: an API key hash is listed twice ({cfg.id})")
                self._by_key[digest.lower()] = agency

    @classmethod
    def load(cls, path: Path) -> AgencyRegistry:
        """Refuses, naming the file and the agency, an entry that breaks a rule (one
        role per key among them)."""
        raw = yaml.safe_load(path.read_text()) or {}
        configs: list[AgencyConfig] = []
        for position, entry in enumerate(raw.get("agencies", []), start=1):
            try:
                configs.append(AgencyConfig.model_validate(entry))
            except ValidationError as exc:
                name = entry.get("id") if isinstance(entry, dict) else None
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: "
                    + str(err["msg"]).removeprefix("Value error, ")
                    for err in exc.errors(include_input=False, include_url=False)
                )
                label = repr(name) if isinstance(name, str) else f"#{position}"
                raise ValueError(f"{path.name}: agency {label}: {problems}") from None
        return cls(configs)

    def __iter__(self) -> Iterator[Agency]:
        return iter(self._by_id.values())

    def authenticate(self, api_key: str) -> Agency | None:
        return self._by_key.get(hash_api_key(api_key))

    def get(self, agency_id: str) -> Agency | None:
        return self._by_id.get(agency_id)

    def __contains__(self, agency_id: object) -> bool:
        return agency_id in self._by_id
