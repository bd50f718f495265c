"""Version-1 event data models (the JSON in the record value).

Safeguarding rule, enforced at class definition: an event model may not carry a
direct identifier. A field whose name speaks of a name, birth date, phone,
address, e-mail or document is refused, and so is any free-text string field:
every string must be an enum, a UUID, a timestamp or match a pattern, so nothing
typed by a person can travel on a shared topic.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.codes import (
    AgeBand,
    CancellationReason,
    Channel,
    ClosureOutcome,
    ConcernCode,
    ConsentBasis,
    ConsentGiver,
    ConsentScope,
    CountryCode,
    DeadlineKind,
    ErasureReason,
    FollowupKind,
    LanguageCode,
    ReferralState,
    RegionCode,
    RejectionReason,
    RiskLevel,
    ServiceType,
    Sex,
)
from contracts.topics import Topic

AgencyId = Annotated[
    str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$", description="Agency identifier")
]
StaffId = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$",
        description="Pseudonymous staff identifier, unique within its agency",
    ),
]
ServiceId = Annotated[
    str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,80}$", description="Directory service identifier")
]
CaseReference = Annotated[
    str,
    Field(
        pattern=r"^[A-Z]{2}-[A-Z0-9]{1,3}-[0-9]{4}-[0-9]{6}$",
        description="Human reference code: country, region, year, sequence (PE-PIU-2026-000123)",
    ),
]
EventRef = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]
Code = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]

FORBIDDEN_NAME_PARTS = frozenset(
    {
        "name",
        "names",
        "surname",
        "surnames",
        "birth",
        "birthdate",
        "dob",
        "phone",
        "mobile",
        "telephone",
        "address",
        "email",
        "mail",
        "document",
        "documents",
        "passport",
        "street",
    }
)
_SAFE_STRING_FORMATS = frozenset({"uuid", "date-time"})


class PiiInEventError(TypeError):
    """An event model was declared with a field that could carry a direct identifier."""


def _unsafe_strings(schema: Any, path: str, defs: dict[str, Any]) -> list[str]:
    """Paths of string properties that accept free text."""
    found: list[str] = []
    if isinstance(schema, dict):
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            return _unsafe_strings(defs.get(name, {}), path, defs)
        if schema.get("type") == "string" and not (
            "enum" in schema
            or "const" in schema
            or "pattern" in schema
            or schema.get("format") in _SAFE_STRING_FORMATS
        ):
            found.append(path)
        for key, sub in schema.get("properties", {}).items():
            found += _unsafe_strings(sub, f"{path}.{key}", defs)
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                found += _unsafe_strings(schema[key], f"{path}[]", defs)
        for key in ("anyOf", "oneOf", "allOf"):
            for sub in schema.get(key, []):
                found += _unsafe_strings(sub, path, defs)
    return found


class ContractModel(BaseModel):
    """Base of everything that travels on a shared topic."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for field_name in cls.model_fields:
            if set(field_name.lower().split("_")) & FORBIDDEN_NAME_PARTS:
                raise PiiInEventError(
                    f"{cls.__name__}.{field_name}: events may not carry names, birth dates, "
                    "phones, addresses, e-mails or document numbers"
                )
        schema = cls.model_json_schema()
        unsafe = _unsafe_strings(schema, cls.__name__, schema.get("$defs", {}))
        if unsafe:
            raise PiiInEventError(
                f"free-text string fields are not allowed on shared topics: {', '.join(unsafe)}"
            )


class EventData(ContractModel):
    """The data of one event type; `event_type` and `topic` say where it travels, and
    `producer` names the one service that may publish it: consumers dead-letter a
    record of this type whose `ce_source` is not that service's (see
    `contracts.registry.producer_source`)."""

    event_type: ClassVar[str]
    topic: ClassVar[Topic]
    producer: ClassVar[str]
    case_id: UUID = Field(description="Pseudonymous case id; also the record key and ce_subject")


# --- cases -------------------------------------------------------------------------


class ConsentV1(ContractModel):
    basis: ConsentBasis
    scope: ConsentScope | None = Field(
        default=None, description="What the consent covers; null for a best-interest decision"
    )
    service_types: list[ServiceType] = Field(
        default_factory=list, description="With scope listed_service_types: what may be shared"
    )
    given_by: ConsentGiver | None = None
    recorded_at: datetime
    decided_by: StaffId | None = Field(
        default=None, description="For a best-interest decision: the staff member who took it"
    )

    def covers(self, service_type: ServiceType) -> bool:
        if self.basis is ConsentBasis.BEST_INTEREST_DECISION:
            return True
        if self.basis is not ConsentBasis.CONSENT:
            return False
        if self.scope is ConsentScope.ALL_REFERRAL_SERVICES:
            return True
        return service_type in self.service_types


class CaseCreatedV1(EventData):
    event_type: ClassVar[str] = "case.created"
    topic: ClassVar[Topic] = Topic.CASES
    producer: ClassVar[str] = "intake"

    reference: CaseReference
    registering_agency_id: AgencyId
    registered_at: datetime
    country: CountryCode
    region: RegionCode
    age_band: AgeBand
    sex: Sex
    nationality: CountryCode | None = Field(description="Null when stateless or unknown")
    languages: list[LanguageCode]
    unaccompanied: bool
    separated: bool
    has_disability: bool
    concerns: list[ConcernCode] = Field(min_length=1)
    needs: list[ServiceType]
    risk_level: RiskLevel
    consent: ConsentV1
    caseworker_id: StaffId = Field(description="Assigned caseworker, within the registering agency")
    possible_duplicate: bool = Field(
        default=False,
        description="Another agency registered a case that may be the same child (same "
        "normalised name, birth date and region); never merged silently. Which case, and "
        "whose, is for coordination only, through intake's API",
    )
    possible_duplicate_of: list[UUID] = Field(
        default_factory=list,
        deprecated="Always empty: read possible_duplicate",
        description="Deprecated: kept for v1 compatibility, always empty. Who matched whom "
        "is for coordination only, through intake's API (GET "
        "/v1/coordination/possible-duplicates); read possible_duplicate",
    )


class CaseConsentWithdrawnV1(EventData):
    event_type: ClassVar[str] = "case.consent_withdrawn"
    topic: ClassVar[Topic] = Topic.CASES
    producer: ClassVar[str] = "intake"

    reference: CaseReference
    registering_agency_id: AgencyId
    withdrawn_at: datetime


class CaseErasedV1(EventData):
    """The case's identifying details are gone for good: its data key is destroyed in
    intake. Every service removes what it holds that identifies a person and keeps
    its non-identifying audit (who, when, which referral)."""

    event_type: ClassVar[str] = "case.erased"
    topic: ClassVar[Topic] = Topic.CASES
    producer: ClassVar[str] = "intake"

    reference: CaseReference
    registering_agency_id: AgencyId
    erased_at: datetime
    reason: ErasureReason


# --- referrals -----------------------------------------------------------------------


class ReferralEventV1(EventData):
    """Fields every referral event carries, so a consumer needs no lookup to route it."""

    referral_id: UUID
    reference: CaseReference
    state: ReferralState = Field(description="State after the transition")
    version: int = Field(ge=1, description="Referral version after the transition")
    from_agency_id: AgencyId
    to_agency_id: AgencyId
    service_id: ServiceId
    service_type: ServiceType
    urgency: RiskLevel
    case_country: CountryCode
    case_region: RegionCode
    service_country: CountryCode
    cross_border: bool
    occurred_at: datetime


class ReferralProposedV1(ReferralEventV1):
    event_type: ClassVar[str] = "referral.proposed"
    topic: ClassVar[Topic] = Topic.REFERRALS
    producer: ClassVar[str] = "referral"
    routing_rule: Code


class ReferralSentV1(ReferralEventV1):
    event_type: ClassVar[str] = "referral.sent"
    topic: ClassVar[Topic] = Topic.REFERRALS
    producer: ClassVar[str] = "referral"
    routing_rule: Code | None = Field(default=None, description="Null when sent by hand")
    mandatory: bool
    respond_by: datetime = Field(description="Acknowledge-by deadline, from the urgency")


class ReferralAcknowledgedV1(ReferralEventV1):
    event_type: ClassVar[str] = "referral.acknowledged"
    topic: ClassVar[Topic] = Topic.REFERRALS
    producer: ClassVar[str] = "referral"


class ReferralAcceptedV1(ReferralEventV1):
    event_type: ClassVar[str] = "referral.accepted"
    topic: ClassVar[Topic] = Topic.REFERRALS
    producer: ClassVar[str] = "referral"


class ReferralRejectedV1(ReferralEventV1):
    event_type: ClassVar[str] = "referral.rejected"
    topic: ClassVar[Topic] = Topic.REFERRALS
    producer: ClassVar[str] = "referral"
    reason: RejectionReason


class ReferralStartedV1(ReferralEventV1):
    event_type: ClassVar[str] = "referral.started"
    topic: ClassVar[Topic] = Topic.REFERRALS
    producer: ClassVar[str] = "referral"


class ReferralClosedV1(ReferralEventV1):
    event_type: ClassVar[str] = "referral.closed"
    topic: ClassVar[Topic] = Topic.REFERRALS
    producer: ClassVar[str] = "referral"
    outcome: ClosureOutcome


class ReferralCancelledV1(ReferralEventV1):
    event_type: ClassVar[str] = "referral.cancelled"
    topic: ClassVar[Topic] = Topic.REFERRALS
    producer: ClassVar[str] = "referral"
    reason: CancellationReason


class ReferralOverdueV1(ReferralEventV1):
    event_type: ClassVar[str] = "referral.overdue"
    topic: ClassVar[Topic] = Topic.REFERRALS
    producer: ClassVar[str] = "followup"
    deadline: DeadlineKind
    due_at: datetime
    escalation_level: int = Field(ge=1)


class ReferralUnmetNeedV1(EventData):
    """No eligible service in coverage for a need: flagged, never silently ignored."""

    event_type: ClassVar[str] = "referral.unmet_need"
    topic: ClassVar[Topic] = Topic.REFERRALS
    producer: ClassVar[str] = "referral"

    reference: CaseReference
    registering_agency_id: AgencyId
    service_type: ServiceType
    country: CountryCode
    region: RegionCode
    urgency: RiskLevel
    reason: Code = Field(description="no_service_in_coverage | none_eligible | none_accepting")
    occurred_at: datetime


# --- follow-up ---------------------------------------------------------------------


class FollowupDueV1(EventData):
    event_type: ClassVar[str] = "followup.due"
    topic: ClassVar[Topic] = Topic.FOLLOWUPS
    producer: ClassVar[str] = "followup"

    followup_id: UUID
    reference: CaseReference
    referral_id: UUID | None
    kind: FollowupKind
    agency_id: AgencyId
    caseworker_id: StaffId | None
    risk_level: RiskLevel
    due_at: datetime


class FollowupCompletedV1(EventData):
    event_type: ClassVar[str] = "followup.completed"
    topic: ClassVar[Topic] = Topic.FOLLOWUPS
    producer: ClassVar[str] = "followup"

    followup_id: UUID
    reference: CaseReference
    referral_id: UUID | None
    agency_id: AgencyId
    child_reached: bool
    service_received: bool
    current_risk: RiskLevel
    reopened: bool
    completed_at: datetime


# --- notifications -----------------------------------------------------------------


class NotificationEventV1(EventData):
    notification_id: UUID
    reference: CaseReference
    source_event_id: EventRef
    source_event_type: Code
    recipient_id: Code = Field(description="Contact-directory id of the recipient")
    channel: Channel
    attempts: int = Field(ge=1)


class NotificationSentV1(NotificationEventV1):
    event_type: ClassVar[str] = "notification.sent"
    topic: ClassVar[Topic] = Topic.NOTIFICATIONS
    producer: ClassVar[str] = "notifications"
    provider_message_id: EventRef | None
    sent_at: datetime


class NotificationFailedV1(NotificationEventV1):
    event_type: ClassVar[str] = "notification.failed"
    topic: ClassVar[Topic] = Topic.NOTIFICATIONS
    producer: ClassVar[str] = "notifications"
    error_code: Code
    permanent: bool
    failed_at: datetime
