"""Loads the contact directory (deploy/directory.yaml, shared with the referral
service) into the domain's Directory. Only contact points are read; coverage,
eligibility and the rest belong to referral."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from contracts.codes import Channel
from services.notifications.domain import Contact, Directory, Organization


class _ContactConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    name: str
    phone: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{6,14}$")
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    language: str = "es"
    time_zone: str = "UTC"
    channels: list[Channel] = Field(default_factory=lambda: [Channel.SMS, Channel.EMAIL])

    def to_contact(self) -> Contact:
        return Contact(
            self.id,
            self.name,
            self.phone,
            self.email,
            self.language,
            self.time_zone,
            tuple(dict.fromkeys(self.channels)),
        )


class _ServiceConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    contacts: list[_ContactConfig] = Field(default_factory=list)


class _OrganizationConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    name: str
    focal_point: _ContactConfig | None = None
    supervisor: _ContactConfig | None = None
    services: list[_ServiceConfig] = Field(default_factory=list)


class _DirectoryFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    organizations: list[_OrganizationConfig] = Field(default_factory=list)


def load_directory(path: Path) -> Directory:
    """The directory in `path`; an absent file is an empty directory (logged by the app)."""
    if not path.exists():
        return Directory([])
    parsed = _DirectoryFile.model_validate(yaml.safe_load(path.read_text()) or {})
    return Directory(
        Organization(
            id=org.id,
            name=org.name,
            focal_point=org.focal_point.to_contact() if org.focal_point else None,
            supervisor=org.supervisor.to_contact() if org.supervisor else None,
            services={s.id: tuple(c.to_contact() for c in s.contacts) for s in org.services},
        )
        for org in parsed.organizations
    )
