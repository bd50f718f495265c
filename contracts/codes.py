"""Shared code tables.

Every coded value that crosses an agency boundary is defined here once, so that
intake validation, routing rules, the directory and partner systems agree.
Countries are ISO 3166-1 alpha-2, regions ISO 3166-2 subdivisions, languages
ISO 639-1; these are checked against the `pycountry` tables, not just a pattern.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import pycountry
from pydantic import AfterValidator, Field


class ConcernCode(StrEnum):
    """Protection concerns identified for a child."""

    PHYSICAL_VIOLENCE = "physical_violence"
    SEXUAL_VIOLENCE = "sexual_violence"
    PSYCHOLOGICAL_VIOLENCE = "psychological_violence"
    GENDER_BASED_VIOLENCE = "gender_based_violence"
    TRAFFICKING_INDICATORS = "trafficking_indicators"
    SEXUAL_EXPLOITATION = "sexual_exploitation"
    MIGRANT_SMUGGLING = "migrant_smuggling"
    CHILD_LABOUR = "child_labour"
    NEGLECT = "neglect"
    FAMILY_SEPARATION = "family_separation"
    IRREGULAR_MIGRATION_STATUS = "irregular_migration_status"
    SELF_HARM_RISK = "self_harm_risk"


class ServiceType(StrEnum):
    """Service taxonomy: what a referral asks for and what a directory service offers.

    Needs recorded at intake use the same codes, so a need maps to a service type 1:1.
    """

    SPECIAL_PROTECTION = "special_protection"  # e.g. Peru's UPE
    VIOLENCE_EMERGENCY_CARE = "violence_emergency_care"  # e.g. Peru's CEM
    PSYCHOSOCIAL_SUPPORT = "psychosocial_support"
    LEGAL_AID_MIGRATION = "legal_aid_migration"
    LEGAL_ASSISTANCE = "legal_assistance"
    CONSULAR_ASSISTANCE = "consular_assistance"
    EMPOWERMENT_PROGRAMME = "empowerment_programme"
    SHELTER = "shelter"
    TRAFFICKING_VICTIM_CARE = "trafficking_victim_care"
    FAMILY_TRACING = "family_tracing"
    SAFE_RETURN = "safe_return"
    CASE_MANAGEMENT = "case_management"
    HEALTH_CARE = "health_care"
    EDUCATION = "education"


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RISK_RANK[self]

    @classmethod
    def highest(cls, *levels: RiskLevel) -> RiskLevel:
        return max(levels, key=lambda level: level.rank)


_RISK_RANK = {RiskLevel.LOW: 0, RiskLevel.MEDIUM: 1, RiskLevel.HIGH: 2, RiskLevel.CRITICAL: 3}


class Sex(StrEnum):
    FEMALE = "female"
    MALE = "male"
    INTERSEX = "intersex"
    UNKNOWN = "unknown"


class AgeBand(StrEnum):
    """Coarse age, the only age that travels on shared topics."""

    UNDER_6 = "0-5"
    FROM_6_TO_11 = "6-11"
    FROM_12_TO_14 = "12-14"
    FROM_15_TO_17 = "15-17"

    @classmethod
    def for_age(cls, years: int) -> AgeBand:
        if years < 6:
            return cls.UNDER_6
        if years < 12:
            return cls.FROM_6_TO_11
        if years < 15:
            return cls.FROM_12_TO_14
        if years < 18:
            return cls.FROM_15_TO_17
        raise ValueError("Enlace registers children: age must be under 18")


class ConsentBasis(StrEnum):
    """Lawful basis for sharing the case with another agency."""

    CONSENT = "consent"
    BEST_INTEREST_DECISION = "best_interest_decision"
    NONE = "none"  # nothing recorded yet: no referral may be sent


class ConsentScope(StrEnum):
    ALL_REFERRAL_SERVICES = "all_referral_services"
    LISTED_SERVICE_TYPES = "listed_service_types"


class ConsentGiver(StrEnum):
    CHILD = "child"
    PARENT = "parent"
    LEGAL_GUARDIAN = "legal_guardian"
    CAREGIVER = "caregiver"
    GUARDIANSHIP_AUTHORITY = "guardianship_authority"


class ReferralState(StrEnum):
    """Closed-loop referral states, after FHIR Task status."""

    PROPOSED = "proposed"
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    IN_PROGRESS = "in_progress"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class RejectionReason(StrEnum):
    NOT_ELIGIBLE = "not_eligible"
    NO_CAPACITY = "no_capacity"
    OUTSIDE_COVERAGE = "outside_coverage"
    SERVICE_NOT_OFFERED = "service_not_offered"
    DUPLICATE_REFERRAL = "duplicate_referral"
    INSUFFICIENT_INFORMATION = "insufficient_information"
    OTHER = "other"


class ClosureOutcome(StrEnum):
    SERVICE_PROVIDED = "service_provided"
    PARTIALLY_PROVIDED = "partially_provided"
    DECLINED_BY_FAMILY = "declined_by_family"
    CHILD_UNREACHABLE = "child_unreachable"
    NOT_ELIGIBLE = "not_eligible"
    TRANSFERRED = "transferred"


class CancellationReason(StrEnum):
    CONSENT_WITHDRAWN = "consent_withdrawn"
    ERASED = "erased"  # the case was erased (case.erased): nothing left to refer
    NO_LONGER_NEEDED = "no_longer_needed"
    SENT_IN_ERROR = "sent_in_error"
    CHILD_MOVED = "child_moved"
    OTHER = "other"


class ErasureReason(StrEnum):
    """Why a case's identifying details were erased (case.erased)."""

    DATA_SUBJECT_REQUEST = "data_subject_request"  # the child or guardian asked
    REGISTERED_IN_ERROR = "registered_in_error"  # the agency registered it by mistake
    LEGAL_ORDER = "legal_order"  # a court or data protection authority ordered it
    RETENTION_PERIOD_ENDED = "retention_period_ended"  # the scheduled retention job


class DeadlineKind(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    DECIDE = "decide"
    START_SERVICE = "start_service"
    CLOSE = "close"


class FollowupKind(StrEnum):
    POST_CLOSURE_CHECK = "post_closure_check"
    PERIODIC_REVIEW = "periodic_review"


class Channel(StrEnum):
    SMS = "sms"
    EMAIL = "email"


def _check_country(code: str) -> str:
    if pycountry.countries.get(alpha_2=code) is None:
        raise ValueError(f"unknown ISO 3166-1 alpha-2 country code {code!r}")
    return code


def _check_region(code: str) -> str:
    if pycountry.subdivisions.get(code=code) is None:  # type: ignore[no-untyped-call]
        raise ValueError(f"unknown ISO 3166-2 subdivision code {code!r}")
    return code


def _check_language(code: str) -> str:
    if pycountry.languages.get(alpha_2=code) is None:
        raise ValueError(f"unknown ISO 639-1 language code {code!r}")
    return code


CountryCode = Annotated[
    str,
    Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 country code"),
    AfterValidator(_check_country),
]
RegionCode = Annotated[
    str,
    Field(pattern=r"^[A-Z]{2}-[A-Z0-9]{1,3}$", description="ISO 3166-2 subdivision code"),
    AfterValidator(_check_region),
]
LanguageCode = Annotated[
    str,
    Field(pattern=r"^[a-z]{2}$", description="ISO 639-1 language code"),
    AfterValidator(_check_language),
]


def region_country(region: str) -> str:
    """The country part of an ISO 3166-2 code: 'PE-PIU' -> 'PE'."""
    return region.split("-", 1)[0]
