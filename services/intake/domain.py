"""Intake rules, with no I/O: the registration request, its validation, the risk
level, duplicate keys, reference codes, the case.created event, and the disclosure
grants that referral events open and end.

Risk rules (documented for partners and tested rule by rule):

1. Each concern has a base level; the case takes the highest:
   critical — trafficking indicators, sexual violence, sexual exploitation, self-harm risk;
   high     — physical violence, gender-based violence, migrant smuggling, child labour;
   medium   — psychological violence, neglect, family separation;
   low      — irregular migration status.
2. An unaccompanied or separated child under 12 is at least high.
3. Any other unaccompanied child is at least medium.
4. A child under 6 with a disability and neglect is at least high.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from contracts import events as ev
from contracts.codes import (
    AgeBand,
    ConcernCode,
    ConsentBasis,
    ConsentGiver,
    ConsentScope,
    CountryCode,
    LanguageCode,
    RegionCode,
    RiskLevel,
    ServiceType,
    Sex,
    region_country,
)
from contracts.events import CaseCreatedV1, ConsentV1, StaffId
from services.kit.errors import InvalidField
from services.kit.inputs import Day, Instant, LineText
from services.kit.safeguarding import BestInterestDecision, moment_problem

Text = Annotated[LineText, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
Phone = Annotated[
    str,
    StringConstraints(pattern=r"^\+[1-9][0-9]{7,14}$"),
    Field(description="E.164, e.g. +51987654321"),
]
Email = Annotated[
    str, StringConstraints(pattern=r"^[^@\s]{1,64}@[^@\s]{1,190}\.[A-Za-z]{2,}$", max_length=254)
]
ExternalId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"),
    Field(description="The registering system's own id for this case"),
]

MAX_AGE_YEARS = 17


class DocumentType(StrEnum):
    PASSPORT = "passport"
    NATIONAL_ID = "national_id"
    BIRTH_CERTIFICATE = "birth_certificate"
    MIGRATION_CARD = "migration_card"
    REFUGEE_ID = "refugee_id"
    OTHER = "other"


class ConsentStatus(StrEnum):
    """Whether a case's details may still be shared (stored as `cases.consent_status`)."""

    ACTIVE = "active"
    WITHDRAWN = "withdrawn"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class IdentityDocument(Strict):
    type: DocumentType
    number: Annotated[LineText, StringConstraints(min_length=1, max_length=40)]
    issuing_country: CountryCode


class Child(Strict):
    given_names: Text
    family_names: Text | None = None
    birth_date: Day | None = Field(default=None, description="Exact date of birth, if known")
    estimated_age_years: int | None = Field(default=None, ge=0, le=MAX_AGE_YEARS)
    sex: Sex
    nationality: CountryCode | None = Field(default=None, description="Null if stateless/unknown")
    languages: list[LanguageCode] = Field(min_length=1, max_length=10)
    documents: list[IdentityDocument] = Field(default_factory=list, max_length=10)
    has_disability: bool = False

    @model_validator(mode="after")
    def _age_known(self) -> Self:
        if self.birth_date is None and self.estimated_age_years is None:
            raise ValueError("give birth_date or estimated_age_years")
        return self


class Location(Strict):
    country: CountryCode
    region: RegionCode
    district: Text | None = None

    @model_validator(mode="after")
    def _region_in_country(self) -> Self:
        if region_country(self.region) != self.country:
            raise ValueError(f"region {self.region} is not in country {self.country}")
        return self


class Guardian(Strict):
    name: Text
    relationship: Text
    phone: Phone | None = None
    email: Email | None = None


class Consent(Strict):
    basis: ConsentBasis
    scope: ConsentScope | None = None
    service_types: list[ServiceType] = Field(default_factory=list)
    given_by: ConsentGiver | None = None
    recorded_at: Instant
    best_interest: BestInterestDecision | None = None

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.basis is ConsentBasis.CONSENT:
            if self.scope is None or self.given_by is None:
                raise ValueError("consent needs scope and given_by")
            if self.scope is ConsentScope.LISTED_SERVICE_TYPES and not self.service_types:
                raise ValueError("scope listed_service_types needs service_types")
        if self.basis is ConsentBasis.BEST_INTEREST_DECISION and self.best_interest is None:
            raise ValueError("a best-interest decision needs best_interest (who, when, why)")
        return self


class Caseworker(Strict):
    id: StaffId
    name: Text
    phone: Phone | None = None
    email: Email | None = None
    language: Annotated[str, Field(pattern=r"^(es|en)$")] = "es"
    time_zone: Annotated[str, Field(pattern=r"^[A-Za-z_]+(/[A-Za-z_+-]+){0,2}$")] = "America/Lima"

    @model_validator(mode="after")
    def _reachable(self) -> Self:
        if self.phone is None and self.email is None:
            raise ValueError("give the caseworker a phone or an email for notifications")
        return self


class CaseRegistration(Strict):
    """What a partner agency sends to register a child at risk."""

    external_id: ExternalId
    child: Child
    location: Location
    guardian: Guardian | None = None
    unaccompanied: bool = False
    separated: bool = False
    concerns: list[ConcernCode] = Field(min_length=1, max_length=len(ConcernCode))
    needs: list[ServiceType] = Field(default_factory=list, max_length=len(ServiceType))
    consent: Consent
    caseworker: Caseworker


def age_in_years(birth_date: date, today: date) -> int:
    years = today.year - birth_date.year
    if (today.month, today.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


def check_dates(reg: CaseRegistration, now: datetime) -> int:
    """Reject impossible dates (`InvalidField` names the field); returns the child's
    age in years."""
    today = now.date()
    if reg.child.birth_date is not None:
        if reg.child.birth_date > today:
            raise InvalidField("child.birth_date", "is in the future")
        age = age_in_years(reg.child.birth_date, today)
        if age > MAX_AGE_YEARS:
            raise InvalidField("child.birth_date", "Enlace registers children under 18")
        if (
            reg.child.estimated_age_years is not None
            and abs(reg.child.estimated_age_years - age) > 1
        ):
            raise InvalidField("child.estimated_age_years", "contradicts birth_date")
    else:
        assert reg.child.estimated_age_years is not None
        age = reg.child.estimated_age_years
    for field, moment in (
        ("consent.recorded_at", reg.consent.recorded_at),
        (
            "consent.best_interest.decided_at",
            reg.consent.best_interest.decided_at if reg.consent.best_interest else None,
        ),
    ):
        if moment is None:
            continue
        problem = moment_problem(moment, now)
        if problem is not None:
            raise InvalidField(field, problem)
        if reg.child.birth_date is not None and moment.date() < reg.child.birth_date:
            raise InvalidField(field, "is before the child's birth")
    return age


_BASE_RISK: dict[ConcernCode, RiskLevel] = {
    ConcernCode.TRAFFICKING_INDICATORS: RiskLevel.CRITICAL,
    ConcernCode.SEXUAL_VIOLENCE: RiskLevel.CRITICAL,
    ConcernCode.SEXUAL_EXPLOITATION: RiskLevel.CRITICAL,
    ConcernCode.SELF_HARM_RISK: RiskLevel.CRITICAL,
    ConcernCode.PHYSICAL_VIOLENCE: RiskLevel.HIGH,
    ConcernCode.GENDER_BASED_VIOLENCE: RiskLevel.HIGH,
    ConcernCode.MIGRANT_SMUGGLING: RiskLevel.HIGH,
    ConcernCode.CHILD_LABOUR: RiskLevel.HIGH,
    ConcernCode.PSYCHOLOGICAL_VIOLENCE: RiskLevel.MEDIUM,
    ConcernCode.NEGLECT: RiskLevel.MEDIUM,
    ConcernCode.FAMILY_SEPARATION: RiskLevel.MEDIUM,
    ConcernCode.IRREGULAR_MIGRATION_STATUS: RiskLevel.LOW,
}


def assess_risk(
    concerns: list[ConcernCode],
    *,
    age: int,
    unaccompanied: bool,
    separated: bool,
    has_disability: bool,
) -> RiskLevel:
    level = RiskLevel.highest(RiskLevel.LOW, *(_BASE_RISK[c] for c in concerns))
    if (unaccompanied or separated) and age < 12:
        level = RiskLevel.highest(level, RiskLevel.HIGH)
    if unaccompanied:
        level = RiskLevel.highest(level, RiskLevel.MEDIUM)
    if age < 6 and has_disability and ConcernCode.NEGLECT in concerns:
        level = RiskLevel.highest(level, RiskLevel.HIGH)
    return level


def reference_code(region: str, year: int, sequence: int) -> str:
    country, subdivision = region.split("-", 1)
    return f"{country}-{subdivision}-{year:04d}-{sequence:06d}"


def case_created(
    *,
    case_id: UUID,
    reference: str,
    agency_id: str,
    registered_at: datetime,
    reg: CaseRegistration,
    age: int,
    risk: RiskLevel,
    possible_duplicate_of: list[UUID],
) -> CaseCreatedV1:
    """The shared-topic view of a case: codes only, no direct identifier."""
    consent = reg.consent
    return CaseCreatedV1(
        case_id=case_id,
        reference=reference,
        registering_agency_id=agency_id,
        registered_at=registered_at,
        country=reg.location.country,
        region=reg.location.region,
        age_band=AgeBand.for_age(age),
        sex=reg.child.sex,
        nationality=reg.child.nationality,
        languages=reg.child.languages,
        unaccompanied=reg.unaccompanied,
        separated=reg.separated,
        has_disability=reg.child.has_disability,
        concerns=list(dict.fromkeys(reg.concerns)),
        needs=list(dict.fromkeys(reg.needs)),
        risk_level=risk,
        consent=ConsentV1(
            basis=consent.basis,
            scope=consent.scope,
            service_types=consent.service_types,
            given_by=consent.given_by,
            recorded_at=consent.recorded_at,
            decided_by=consent.best_interest.decided_by if consent.best_interest else None,
        ),
        caseworker_id=reg.caseworker.id,
        possible_duplicate_of=possible_duplicate_of,
    )


# --- disclosure grants: identity goes only to a referral's receiving agency, from its
# acceptance (or start) until it is closed, cancelled or rejected or the case's consent
# is withdrawn (referral's own rule, kept again where the details live). An ended grant
# never reopens.


class GrantEnd(StrEnum):
    CLOSED = "closed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    ERASED = "erased"


GRANT_OPENING: tuple[type[ev.ReferralEventV1], ...] = (ev.ReferralAcceptedV1, ev.ReferralStartedV1)
GRANT_ENDING: dict[type[ev.ReferralEventV1], GrantEnd] = {
    ev.ReferralClosedV1: GrantEnd.CLOSED,
    ev.ReferralCancelledV1: GrantEnd.CANCELLED,
    ev.ReferralRejectedV1: GrantEnd.REJECTED,
}
GRANT_EVENTS: tuple[type[ev.ReferralEventV1], ...] = (*GRANT_OPENING, *GRANT_ENDING)


@dataclass(frozen=True)
class Grant:
    """What intake knows of one referral's disclosure grant. `opened_at` is None for a
    referral that ended before it was ever accepted (kept so that it cannot open)."""

    referral_id: UUID
    case_id: UUID
    agency_id: str  # the receiving agency
    version: int  # the referral version of the last event applied
    opened_at: datetime | None
    ended_at: datetime | None = None
    end_reason: GrantEnd | None = None

    @property
    def live(self) -> bool:
        return self.opened_at is not None and self.ended_at is None


def grant_after(
    current: Grant | None,
    event: ev.ReferralEventV1,
    *,
    consent_withdrawn: bool,
    erased: bool = False,
) -> Grant | None:
    """The grant once `event` is applied, or None when it changes nothing (the grant
    ended, the event is not newer than the last one, or it neither opens nor ends)."""
    if current is not None and (current.ended_at is not None or event.version <= current.version):
        return None
    ending = GRANT_ENDING.get(type(event))
    if ending is None and isinstance(event, GRANT_OPENING):
        # Too late: the case was erased, or its consent is gone.
        if erased:
            ending = GrantEnd.ERASED
        elif consent_withdrawn:
            ending = GrantEnd.CONSENT_WITHDRAWN
    if ending is not None:
        return Grant(
            referral_id=event.referral_id,
            case_id=event.case_id,
            agency_id=current.agency_id if current else event.to_agency_id,
            version=event.version,
            opened_at=current.opened_at if current else None,
            ended_at=event.occurred_at,
            end_reason=ending,
        )
    if not isinstance(event, GRANT_OPENING):
        return None
    if current is not None:
        return replace(current, version=event.version)  # still live, opened earlier
    return Grant(
        referral_id=event.referral_id,
        case_id=event.case_id,
        agency_id=event.to_agency_id,
        version=event.version,
        opened_at=event.occurred_at,
    )
