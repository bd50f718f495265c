"""The service directory, modelled on the Open Referral Human Services Data
Specification (organization → service → coverage/location → taxonomy), so that a
partner's existing HSDS directory maps onto it.

Each organisation is an agency of the agencies file; its services say where they
take cases from (`Coverage`), whom they take (`Eligibility`) and whom to tell
(`ContactPoint`). Routing and hand referrals see the directory as a flat list of
`Offer`s (one service of one organisation).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, StringConstraints, ValidationError, model_validator

from contracts.codes import (
    Channel,
    CountryCode,
    LanguageCode,
    RegionCode,
    ServiceType,
    Sex,
    region_country,
)
from contracts.events import AgencyId, ServiceId
from services.kit.inputs import LineText
from services.referral.domain.case import CaseProfile, age_band_bounds
from services.referral.domain.documents import (
    DirectoryError,
    Strict,
    format_validation,
    labels_of,
    load_yaml,
)

Text = Annotated[LineText, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ContactId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,80}$")]
Phone = Annotated[str, Field(pattern=r"^\+[1-9][0-9]{7,14}$", description="E.164")]
Email = Annotated[str, Field(pattern=r"^[^@\s]{1,64}@[^@\s]{1,190}\.[A-Za-z]{2,}$")]


def _check_time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {name!r}") from None
    return name


TimeZone = Annotated[
    str,
    Field(pattern=r"^[A-Za-z_]+(/[A-Za-z0-9_+-]+){0,2}$", description="IANA time zone"),
    AfterValidator(_check_time_zone),
]


class ContactPoint(Strict):
    """A person or desk that receives notifications (HSDS `contact` + `phone`)."""

    id: ContactId
    name: Text
    phone: Phone | None = None
    email: Email | None = None
    language: LanguageCode = "es"
    time_zone: TimeZone = "America/Lima"
    channels: list[Channel] = Field(min_length=1)

    @model_validator(mode="after")
    def _reachable_on_its_channels(self) -> Self:
        if Channel.SMS in self.channels and self.phone is None:
            raise ValueError("channel sms needs a phone")
        if Channel.EMAIL in self.channels and self.email is None:
            raise ValueError("channel email needs an email")
        return self


class OrganizationKind(StrEnum):
    STATE = "state"
    NGO = "ngo"
    INTERNATIONAL = "international"


class Coverage(Strict):
    """Where a service is delivered (HSDS `service_area` / `service_at_location`)."""

    countries: list[CountryCode] = Field(min_length=1)
    regions: list[RegionCode] = Field(default_factory=list, description="Empty: whole countries")
    districts: list[Text] = Field(default_factory=list, description="Informative only")
    accepts_from_countries: list[CountryCode] = Field(
        default_factory=list, description="Other countries whose cases it takes (cross-border)"
    )

    @model_validator(mode="after")
    def _regions_in_countries(self) -> Self:
        for region in self.regions:
            if region_country(region) not in self.countries:
                raise ValueError(f"region {region} is not in the covered countries")
        return self

    def is_domestic_for(self, country: str, region: str) -> bool:
        if country not in self.countries:
            return False
        return (
            not self.regions
            or region in self.regions
            or not any(region_country(r) == country for r in self.regions)
        )

    def admits(self, country: str, region: str) -> bool:
        return self.is_domestic_for(country, region) or country in self.accepts_from_countries


class Eligibility(Strict):
    """Who a service takes. An empty list means anyone."""

    min_age: int = Field(default=0, ge=0, le=17)
    max_age: int = Field(default=17, ge=0, le=17)
    sexes: list[Sex] = Field(default_factory=list)
    nationalities: list[CountryCode] = Field(default_factory=list)
    languages: list[LanguageCode] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min_age > self.max_age:
            raise ValueError("min_age is above max_age")
        return self

    def refuses(self, case: CaseProfile) -> str | None:
        """Why the case is not eligible, or None. Age is only known as a band: a
        band that overlaps the range is eligible (the receiving agency may still
        reject with not_eligible; refusing a child who may qualify is worse)."""
        low, high = age_band_bounds(case.age_band)
        if high < self.min_age or low > self.max_age:
            return "age"
        if self.sexes and case.sex not in self.sexes:
            return "sex"
        if self.nationalities and case.nationality not in self.nationalities:
            return "nationality"
        if self.languages and not set(self.languages) & set(case.languages):
            return "language"
        return None


class DirectoryService(Strict):
    id: ServiceId
    name: Text
    type: ServiceType
    accepting_referrals: bool = True
    coverage: Coverage
    eligibility: Eligibility = Field(default_factory=Eligibility)
    contacts: list[ContactPoint] = Field(min_length=1)


class Organization(Strict):
    id: AgencyId = Field(description="The agency id of the agencies file")
    name: Text
    kind: OrganizationKind
    country: CountryCode
    focal_point: ContactPoint
    supervisor: ContactPoint
    services: list[DirectoryService] = Field(default_factory=list)


class Directory(Strict):
    organizations: list[Organization]

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        for what, ids in (
            ("organization", [o.id for o in self.organizations]),
            ("service", [s.id for o in self.organizations for s in o.services]),
        ):
            seen: set[str] = set()
            for item in ids:
                if item in seen:
                    raise ValueError(f"duplicate {what} id {item!r}")
                seen.add(item)
        return self

    def check_agencies(self, known: Iterable[str]) -> None:
        known_ids = set(known)
        for index, org in enumerate(self.organizations):
            if org.id not in known_ids:
                raise DirectoryError(
                    f"organizations[{index}].id: {org.id!r} is not an agency of agencies.yaml"
                )

    def organization(self, org_id: str) -> Organization | None:
        return next((o for o in self.organizations if o.id == org_id), None)

    def offers(self) -> list[Offer]:
        return [
            Offer(o, s, i)
            for i, (o, s) in enumerate((o, s) for o in self.organizations for s in o.services)
        ]

    def with_organization(self, org: Organization) -> Directory:
        """A copy with `org` added or replaced (validated again)."""
        orgs = [o for o in self.organizations if o.id != org.id]
        position = next((i for i, o in enumerate(self.organizations) if o.id == org.id), len(orgs))
        orgs.insert(position, org)
        return Directory(organizations=orgs)

    def without_organization(self, org_id: str) -> Directory:
        return Directory(organizations=[o for o in self.organizations if o.id != org_id])


def load_directory(
    text: str, *, known_agencies: Iterable[str] | None = None, source: str = "directory.yaml"
) -> Directory:
    raw = load_yaml(text, source)
    try:
        directory = Directory.model_validate(raw)
    except ValidationError as exc:
        labels = labels_of(raw.get("organizations") if isinstance(raw, dict) else None)
        raise DirectoryError(format_validation(exc, source, labels)) from None
    if known_agencies is not None:
        directory.check_agencies(known_agencies)
    return directory


@dataclass(frozen=True)
class Offer:
    """One service of one organisation, as routing sees it."""

    organization: Organization
    service: DirectoryService
    position: int  # order in the directory: the last tie-breaker

    def service_country(self, case_country: str) -> str:
        """Where the child is served: the case's own country when the service is
        delivered there, else the organisation's country (cross-border)."""
        if case_country in self.service.coverage.countries:
            return case_country
        return self.organization.country

    def refuses_referral_of(self, case: CaseProfile) -> str | None:
        """Why the case's agency cannot refer the case here by hand, or None."""
        if self.organization.id == case.registering_agency_id:
            return "is a service of your own agency"
        if not self.service.accepting_referrals:
            return "is not accepting referrals"
        if not self.service.coverage.admits(case.country, case.region):
            return f"does not take cases from {case.region}"
        refused = self.service.eligibility.refuses(case)
        if refused:
            return f"the child is not eligible ({refused})"
        return None


@dataclass(frozen=True)
class ServiceQuery:
    """A search of the directory; an omitted criterion matches every service. With a
    region, a service matches when it takes cases from that region (in country or
    across the border); with a country only, when it works in or takes cases from it."""

    type: ServiceType | None = None
    country: str | None = None
    region: str | None = None
    accepting: bool | None = None

    @property
    def region_outside_country(self) -> bool:
        return (
            self.region is not None
            and self.country is not None
            and not self.region.startswith(f"{self.country}-")
        )

    def matches(self, offer: Offer) -> bool:
        s = offer.service
        country = self.country or (self.region.split("-")[0] if self.region else None)
        if self.type is not None and s.type is not self.type:
            return False
        if self.accepting is not None and s.accepting_referrals != self.accepting:
            return False
        if country is None:
            return True
        if self.region:
            return s.coverage.admits(country, self.region)
        return country in s.coverage.countries or country in s.coverage.accepts_from_countries
