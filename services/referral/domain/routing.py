"""Routing: declarative rules (deploy/routing.yaml) turn a new case into referrals.

Each rule whose conditions hold for the case asks for some service types. For each
type, one service of the directory is chosen; a mandatory pathway is sent at once
(when the case's consent covers it), any other is proposed to the case-owning
agency, and a need no eligible service covers becomes an unmet need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Self
from uuid import UUID

from pydantic import Field, StringConstraints, ValidationError, model_validator

from contracts.codes import AgeBand, ConcernCode, CountryCode, RiskLevel, ServiceType, Sex
from services.referral.domain.case import CaseProfile, consent_covers
from services.referral.domain.directory import Offer
from services.referral.domain.documents import (
    DirectoryError,
    Strict,
    format_validation,
    labels_of,
    load_yaml,
)
from services.referral.domain.lifecycle import ReferralFacts

RuleId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]


class Pathway(StrEnum):
    MANDATORY = "mandatory"  # sent automatically
    PROPOSED = "proposed"  # the case-owning agency confirms or drops it


class Conditions(Strict):
    """All given conditions must hold; an omitted one always holds."""

    countries: list[CountryCode] = Field(default_factory=list)
    concerns_any: list[ConcernCode] = Field(default_factory=list)
    needs_any: list[ServiceType] = Field(default_factory=list)
    risk_at_least: RiskLevel | None = None
    unaccompanied: bool | None = None
    unaccompanied_or_separated: bool | None = None
    migrant: bool | None = None
    sexes: list[Sex] = Field(default_factory=list)
    age_bands: list[AgeBand] = Field(default_factory=list)

    def hold_for(self, case: CaseProfile) -> bool:
        checks = (
            not self.countries or case.country in self.countries,
            not self.concerns_any or bool(set(self.concerns_any) & set(case.concerns)),
            not self.needs_any or bool(set(self.needs_any) & set(case.needs)),
            self.risk_at_least is None or case.risk_level.rank >= self.risk_at_least.rank,
            self.unaccompanied is None or case.unaccompanied == self.unaccompanied,
            self.unaccompanied_or_separated is None
            or (case.unaccompanied or case.separated) == self.unaccompanied_or_separated,
            self.migrant is None or case.migrant == self.migrant,
            not self.sexes or case.sex in self.sexes,
            not self.age_bands or case.age_band in self.age_bands,
        )
        return all(checks)


class RoutingRule(Strict):
    id: RuleId
    description: Annotated[str, StringConstraints(min_length=1, max_length=600)]
    pathway: Pathway
    when: Conditions = Field(default_factory=Conditions)
    refer_to: list[ServiceType] = Field(default_factory=list)
    refer_to_needs: bool = Field(default=False, description="Also refer to the case's stated needs")
    min_urgency: RiskLevel | None = None

    @model_validator(mode="after")
    def _refers_somewhere(self) -> Self:
        if not self.refer_to and not self.refer_to_needs:
            raise ValueError("give refer_to or refer_to_needs: true")
        return self


class RoutingRules(Strict):
    version: int = Field(ge=1, le=1)
    rules: list[RoutingRule] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"duplicate rule id {rule.id!r}")
            seen.add(rule.id)
        return self


def load_rules(text: str, *, source: str = "routing.yaml") -> RoutingRules:
    raw = load_yaml(text, source)
    try:
        return RoutingRules.model_validate(raw)
    except ValidationError as exc:
        labels = labels_of(raw.get("rules") if isinstance(raw, dict) else None)
        raise DirectoryError(format_validation(exc, source, labels)) from None


class UnmetReason(StrEnum):
    NO_SERVICE_IN_COVERAGE = "no_service_in_coverage"
    NONE_ELIGIBLE = "none_eligible"
    NONE_ACCEPTING = "none_accepting"


@dataclass(frozen=True)
class PlannedReferral:
    offer: Offer
    rule_id: str
    mandatory: bool
    urgency: RiskLevel
    send_now: bool  # mandatory and covered by consent; otherwise proposed

    @property
    def service_type(self) -> ServiceType:
        return self.offer.service.type


@dataclass(frozen=True)
class UnmetNeed:
    service_type: ServiceType
    rule_id: str
    urgency: RiskLevel
    reason: UnmetReason


@dataclass(frozen=True)
class RoutingPlan:
    referrals: list[PlannedReferral] = field(default_factory=list)
    unmet: list[UnmetNeed] = field(default_factory=list)
    served_internally: list[ServiceType] = field(default_factory=list)


@dataclass
class _Want:
    service_type: ServiceType
    rule_id: str
    mandatory: bool
    urgency: RiskLevel


def _wanted(case: CaseProfile, rules: RoutingRules) -> list[_Want]:
    """Service types the rules ask for, in rule order; a mandatory rule wins over a
    proposing one for the same type, and the highest urgency wins."""
    wanted: dict[ServiceType, _Want] = {}
    for rule in rules.rules:
        if not rule.when.hold_for(case):
            continue
        urgency = RiskLevel.highest(case.risk_level, rule.min_urgency or RiskLevel.LOW)
        mandatory = rule.pathway is Pathway.MANDATORY
        types = list(rule.refer_to) + (list(case.needs) if rule.refer_to_needs else [])
        for service_type in dict.fromkeys(types):
            want = wanted.get(service_type)
            if want is None:
                wanted[service_type] = _Want(service_type, rule.id, mandatory, urgency)
                continue
            if mandatory and not want.mandatory:
                want.rule_id, want.mandatory = rule.id, True
            want.urgency = RiskLevel.highest(want.urgency, urgency)
    return list(wanted.values())


def _rank(offer: Offer, case: CaseProfile) -> tuple[int, int, int, int]:
    coverage, eligibility = offer.service.coverage, offer.service.eligibility
    return (
        0 if coverage.is_domestic_for(case.country, case.region) else 1,
        0 if case.region in coverage.regions else 1,
        0 if eligibility.nationalities else 1,  # a service for this very group first
        offer.position,
    )


def plan_routing(case: CaseProfile, rules: RoutingRules, offers: list[Offer]) -> RoutingPlan:
    """Which referrals to make for a new case, and which needs nobody covers.

    Per service type: the services that admit the case's location (in country, or
    cross-border through accepts_from_countries), take referrals and find the child
    eligible; one is chosen — domestic before cross-border, region before country,
    group-specific before general, then directory order. When the registering agency
    itself offers the service it serves the case: no referral, no unmet need.
    """
    plan = RoutingPlan()
    for want in _wanted(case, rules):
        of_type = [o for o in offers if o.service.type is want.service_type]
        in_coverage = [o for o in of_type if o.service.coverage.admits(case.country, case.region)]
        eligible = [o for o in in_coverage if o.service.eligibility.refuses(case) is None]
        accepting = [o for o in eligible if o.service.accepting_referrals]
        if any(o.organization.id == case.registering_agency_id for o in accepting):
            plan.served_internally.append(want.service_type)
            continue
        if not accepting:
            reason = (
                UnmetReason.NO_SERVICE_IN_COVERAGE
                if not in_coverage
                else UnmetReason.NONE_ELIGIBLE
                if not eligible
                else UnmetReason.NONE_ACCEPTING
            )
            plan.unmet.append(UnmetNeed(want.service_type, want.rule_id, want.urgency, reason))
            continue
        best = min(accepting, key=lambda o: _rank(o, case))
        plan.referrals.append(
            PlannedReferral(
                offer=best,
                rule_id=want.rule_id,
                mandatory=want.mandatory,
                urgency=want.urgency,
                send_now=want.mandatory and consent_covers(case.consent, want.service_type),
            )
        )
    return plan


def referral_facts(
    case: CaseProfile, offer: Offer, urgency: RiskLevel, referral_id: UUID
) -> ReferralFacts:
    """The facts of a referral of `case` to `offer`, made by routing or by hand."""
    return ReferralFacts(
        referral_id=referral_id,
        case_id=case.case_id,
        reference=case.reference,
        from_agency_id=case.registering_agency_id,
        to_agency_id=offer.organization.id,
        service_id=offer.service.id,
        service_type=offer.service.type,
        urgency=urgency,
        case_country=case.country,
        case_region=case.region,
        service_country=offer.service_country(case.country),
    )
