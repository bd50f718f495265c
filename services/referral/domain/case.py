"""A case as referral sees it: the codes of `case.created` that routing and the
eligibility rules read (no names, no identifiers), and whether its consent covers
a service."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from contracts.codes import AgeBand, ConcernCode, ConsentBasis, RiskLevel, ServiceType, Sex
from contracts.events import CaseCreatedV1, ConsentV1


@dataclass(frozen=True)
class CaseProfile:
    """The codes of a case that routing needs (from case.created; no identifiers)."""

    case_id: UUID
    reference: str
    registering_agency_id: str
    country: str
    region: str
    age_band: AgeBand
    sex: Sex
    nationality: str | None
    languages: tuple[str, ...]
    unaccompanied: bool
    separated: bool
    has_disability: bool
    concerns: tuple[ConcernCode, ...]
    needs: tuple[ServiceType, ...]
    risk_level: RiskLevel
    consent: ConsentV1

    @classmethod
    def from_event(cls, event: CaseCreatedV1) -> CaseProfile:
        return cls(
            case_id=event.case_id,
            reference=event.reference,
            registering_agency_id=event.registering_agency_id,
            country=event.country,
            region=event.region,
            age_band=event.age_band,
            sex=event.sex,
            nationality=event.nationality,
            languages=tuple(event.languages),
            unaccompanied=event.unaccompanied,
            separated=event.separated,
            has_disability=event.has_disability,
            concerns=tuple(event.concerns),
            needs=tuple(event.needs),
            risk_level=event.risk_level,
            consent=event.consent,
        )

    @property
    def migrant(self) -> bool:
        """Not a national of the country where the child is (unknown counts as not)."""
        return self.nationality != self.country


def age_band_bounds(band: AgeBand) -> tuple[int, int]:
    low, high = band.value.split("-")
    return int(low), int(high)


def consent_covers(consent: ConsentV1, service_type: ServiceType) -> bool:
    """Whether the recorded consent allows sharing the case for this service. When it
    does not, a referral needs a documented best-interest decision."""
    return consent.basis is not ConsentBasis.NONE and consent.covers(service_type)
