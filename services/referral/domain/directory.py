"""Referral rules, with no I/O.

Three parts, each tested on its own:

- the service directory, modelled on the Open Referral Human Services Data
  Specification (organization → service → coverage/location → taxonomy), so a
  partner's existing HSDS directory maps onto it;
- routing: declarative rules (deploy/routing.yaml) turn a `case.created` into
  referrals — mandatory pathways are sent at once, the others are proposed to the
  case-owning agency — and a need no eligible service covers becomes an unmet need;
- the closed-loop lifecycle after FHIR Task: proposed → sent → acknowledged →
  accepted | rejected → in_progress → closed, cancelled by the sender while open.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Self
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from contracts.codes import (
    AgeBand,
    Channel,
    ConcernCode,
    ConsentBasis,
    CountryCode,
    LanguageCode,
    ReferralState,
    RegionCode,
    RiskLevel,
    ServiceType,
    Sex,
    region_country,
)
from contracts.events import (
    AgencyId,
    CaseCreatedV1,
    ConsentV1,
    ReferralAcceptedV1,
    ReferralAcknowledgedV1,
    ReferralCancelledV1,
    ReferralClosedV1,
    ReferralEventV1,
    ReferralRejectedV1,
    ReferralSentV1,
    ReferralStartedV1,
    ServiceId,
)

# --- directory -----------------------------------------------------------------------

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ContactId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,80}$")]
Phone = Annotated[str, Field(pattern=r"^\+[1-9][0-9]{7,14}$", description="E.164")]
Email = Annotated[str, Field(pattern=r"^[^@\s]{1,64}@[^@\s]{1,190}\.[A-Za-z]{2,}$")]


def _check_time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {name!r}") from None
    return name


TimeZone = Annotated[str, AfterValidator(_check_time_zone)]


class DirectoryError(ValueError):
    """The directory or routing file is invalid; the message names the place."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class ContactPoint(_Strict):
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


class Coverage(_Strict):
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


def age_band_bounds(band: AgeBand) -> tuple[int, int]:
    low, high = band.value.split("-")
    return int(low), int(high)


class Eligibility(_Strict):
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


class DirectoryService(_Strict):
    id: ServiceId
    name: Text
    type: ServiceType
    accepting_referrals: bool = True
    coverage: Coverage
    eligibility: Eligibility = Field(default_factory=Eligibility)
    contacts: list[ContactPoint] = Field(min_length=1)


class Organization(_Strict):
    id: AgencyId = Field(description="The agency id of deploy/agencies.yaml")
    name: Text
    kind: OrganizationKind
    country: CountryCode
    focal_point: ContactPoint
    supervisor: ContactPoint
    services: list[DirectoryService] = Field(default_factory=list)


class Directory(_Strict):
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


def _format_validation(exc: ValidationError, source: str, labels: Mapping[int, str]) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        path = ""
        for i, part in enumerate(loc):
            if isinstance(part, int):
                path += f"[{part}]"
                if i == 1 and part in labels:
                    path += f" ({labels[part]})"
            else:
                path += f".{part}" if path else str(part)
        lines.append(f"{source}: {path}: {err['msg']}")
    return "\n".join(lines)


def _load_yaml(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise DirectoryError(f"{source}: not valid YAML: {exc}") from None


def load_directory(
    text: str, *, known_agencies: Iterable[str] | None = None, source: str = "directory.yaml"
) -> Directory:
    raw = _load_yaml(text, source)
    labels = {
        i: f"id {o.get('id')!r}"
        for i, o in enumerate(raw.get("organizations") or [])
        if isinstance(o, dict)
    }
    try:
        directory = Directory.model_validate(raw)
    except ValidationError as exc:
        raise DirectoryError(_format_validation(exc, source, labels)) from None
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


# --- the case as routing sees it -------------------------------------------------------


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


# --- routing rules ----------------------------------------------------------------------

RuleId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]


class Pathway(StrEnum):
    MANDATORY = "mandatory"  # sent automatically
    PROPOSED = "proposed"  # the case-owning agency confirms or drops it


class Conditions(_Strict):
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


class RoutingRule(_Strict):
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


class RoutingRules(_Strict):
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
    raw = _load_yaml(text, source)
    labels = {
        i: f"id {r.get('id')!r}"
        for i, r in enumerate(raw.get("rules") or [])
        if isinstance(r, dict)
    }
    try:
        return RoutingRules.model_validate(raw)
    except ValidationError as exc:
        raise DirectoryError(_format_validation(exc, source, labels)) from None


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


def consent_covers(consent: ConsentV1, service_type: ServiceType) -> bool:
    return consent.basis is not ConsentBasis.NONE and consent.covers(service_type)


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


# --- lifecycle ----------------------------------------------------------------------------


class Action(StrEnum):
    CONFIRM = "confirm"
    ACKNOWLEDGE = "acknowledge"
    ACCEPT = "accept"
    REJECT = "reject"
    START = "start"
    CLOSE = "close"
    CANCEL = "cancel"


class Party(StrEnum):
    SENDER = "sending"
    RECEIVER = "receiving"


OPEN_STATES = frozenset(
    {
        ReferralState.PROPOSED,
        ReferralState.SENT,
        ReferralState.ACKNOWLEDGED,
        ReferralState.ACCEPTED,
        ReferralState.IN_PROGRESS,
    }
)
DISCLOSING_STATES = frozenset({ReferralState.ACCEPTED, ReferralState.IN_PROGRESS})
_LIFECYCLE_ORDER = list(ReferralState)


@dataclass(frozen=True)
class Transition:
    party: Party
    from_states: frozenset[ReferralState]
    to_state: ReferralState
    event: type[ReferralEventV1]


TRANSITIONS: dict[Action, Transition] = {
    Action.CONFIRM: Transition(
        Party.SENDER, frozenset({ReferralState.PROPOSED}), ReferralState.SENT, ReferralSentV1
    ),
    Action.ACKNOWLEDGE: Transition(
        Party.RECEIVER,
        frozenset({ReferralState.SENT}),
        ReferralState.ACKNOWLEDGED,
        ReferralAcknowledgedV1,
    ),
    Action.ACCEPT: Transition(
        Party.RECEIVER,
        frozenset({ReferralState.ACKNOWLEDGED}),
        ReferralState.ACCEPTED,
        ReferralAcceptedV1,
    ),
    Action.REJECT: Transition(
        Party.RECEIVER,
        frozenset({ReferralState.ACKNOWLEDGED}),
        ReferralState.REJECTED,
        ReferralRejectedV1,
    ),
    Action.START: Transition(
        Party.RECEIVER,
        frozenset({ReferralState.ACCEPTED}),
        ReferralState.IN_PROGRESS,
        ReferralStartedV1,
    ),
    # Closing straight from accepted covers outcomes reached before the service
    # started (declined by family, child unreachable, transferred).
    Action.CLOSE: Transition(
        Party.RECEIVER,
        frozenset({ReferralState.ACCEPTED, ReferralState.IN_PROGRESS}),
        ReferralState.CLOSED,
        ReferralClosedV1,
    ),
    Action.CANCEL: Transition(
        Party.SENDER, OPEN_STATES, ReferralState.CANCELLED, ReferralCancelledV1
    ),
}


class TransitionNotAllowed(Exception):
    def __init__(self, action: Action, current: ReferralState) -> None:
        self.action = action
        self.current = current
        self.allowed_from = sorted(TRANSITIONS[action].from_states, key=_LIFECYCLE_ORDER.index)
        super().__init__(
            f"cannot {action.value} a referral that is {current.value}; "
            f"allowed from: {', '.join(s.value for s in self.allowed_from)}"
        )


def next_state(current: ReferralState, action: Action) -> ReferralState:
    transition = TRANSITIONS[action]
    if current not in transition.from_states:
        raise TransitionNotAllowed(action, current)
    return transition.to_state


@dataclass(frozen=True)
class Deadlines:
    """How long the receiving agency has to acknowledge, by urgency."""

    critical: timedelta = timedelta(hours=4)
    high: timedelta = timedelta(hours=24)
    medium: timedelta = timedelta(hours=72)
    low: timedelta = timedelta(days=7)

    def respond_by(self, urgency: RiskLevel, sent_at: datetime) -> datetime:
        delay: timedelta = getattr(self, urgency.value)
        return sent_at + delay


@dataclass(frozen=True)
class ReferralFacts:
    """What every referral event repeats, so consumers need no lookup."""

    referral_id: UUID
    case_id: UUID
    reference: str
    from_agency_id: str
    to_agency_id: str
    service_id: str
    service_type: ServiceType
    urgency: RiskLevel
    case_country: str
    case_region: str
    service_country: str

    @property
    def cross_border(self) -> bool:
        return self.case_country != self.service_country

    def event(
        self,
        model: type[ReferralEventV1],
        *,
        state: ReferralState,
        version: int,
        occurred_at: datetime,
        **extra: Any,
    ) -> ReferralEventV1:
        return model(
            referral_id=self.referral_id,
            case_id=self.case_id,
            reference=self.reference,
            state=state,
            version=version,
            from_agency_id=self.from_agency_id,
            to_agency_id=self.to_agency_id,
            service_id=self.service_id,
            service_type=self.service_type,
            urgency=self.urgency,
            case_country=self.case_country,
            case_region=self.case_region,
            service_country=self.service_country,
            cross_border=self.cross_border,
            occurred_at=occurred_at,
            **extra,
        )


def facts_for(case: CaseProfile, planned: PlannedReferral, referral_id: UUID) -> ReferralFacts:
    return ReferralFacts(
        referral_id=referral_id,
        case_id=case.case_id,
        reference=case.reference,
        from_agency_id=case.registering_agency_id,
        to_agency_id=planned.offer.organization.id,
        service_id=planned.offer.service.id,
        service_type=planned.service_type,
        urgency=planned.urgency,
        case_country=case.country,
        case_region=case.region,
        service_country=planned.offer.service_country(case.country),
    )
