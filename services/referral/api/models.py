"""The partner API's request bodies and response views, and how a stored referral
is shown to each party (the sender sees its best-interest decision, the receiver
the child's identity once disclosed). Pure shapes: no rule of the service here.
"""

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from contracts.codes import (
    CancellationReason,
    ClosureOutcome,
    ReferralState,
    RejectionReason,
    RiskLevel,
    ServiceType,
)
from services.kit.safeguarding import BestInterestDecision
from services.referral import store
from services.referral.domain.directory import ContactPoint, Organization
from services.referral.domain.disclosure import IdentityStatus
from services.referral.domain.lifecycle import Action, Party, StepDetails, allowed_actions

# --- bodies ----------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StepBody(_Body):
    """The body of a lifecycle step, turned into what the step records."""

    def details(self) -> StepDetails:
        return StepDetails()


class ConfirmBody(StepBody):
    best_interest: BestInterestDecision | None = Field(
        default=None, description="Needed when the case's consent does not cover this service"
    )

    def details(self) -> StepDetails:
        return StepDetails(best_interest=self.best_interest)


class RejectBody(StepBody):
    reason: RejectionReason

    def details(self) -> StepDetails:
        return StepDetails(rejection_reason=self.reason)


class CloseBody(StepBody):
    outcome: ClosureOutcome

    def details(self) -> StepDetails:
        return StepDetails(outcome=self.outcome)


class CancelBody(StepBody):
    reason: CancellationReason

    def details(self) -> StepDetails:
        return StepDetails(cancellation_reason=self.reason)


class NewReferralBody(_Body):
    case_id: UUID
    service_id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,80}$")]
    urgency: RiskLevel | None = Field(default=None, description="Defaults to the case's risk")
    best_interest: BestInterestDecision | None = None


# --- views ----------------------------------------------------------------------------


class Identity(BaseModel):
    """The child's identifying details, from intake, for the service to be delivered."""

    child: dict[str, Any]
    location: dict[str, Any]
    guardian: dict[str, Any] | None


class ReferralView(BaseModel):
    referral_id: UUID
    case_id: UUID
    reference: str
    state: ReferralState
    version: int
    from_agency_id: str
    to_agency_id: str
    service_id: str
    service_type: ServiceType
    urgency: RiskLevel
    case_country: str
    case_region: str
    service_country: str
    cross_border: bool
    routing_rule: str | None
    mandatory: bool
    respond_by: datetime | None
    rejection_reason: RejectionReason | None
    closure_outcome: ClosureOutcome | None
    cancellation_reason: CancellationReason | None
    best_interest: dict[str, Any] | None = Field(description="Shown to the sending agency only")
    created_at: datetime
    sent_at: datetime | None
    updated_at: datetime
    your_role: Party
    allowed_actions: list[Action] = Field(description="What the caller may do now")
    identity: Identity | None = None
    identity_status: IdentityStatus | None = Field(
        default=None,
        description="Receiving agency only: disclosed | after_acceptance_only | "
        "consent_withdrawn | erased | unavailable",
    )


class ReferralPage(BaseModel):
    items: list[ReferralView]
    next_cursor: str | None


class ServiceView(BaseModel):
    organization: dict[str, Any]
    service: dict[str, Any]


class DirectoryView(BaseModel):
    version: int
    organizations: list[Organization]


class ContactPointView(BaseModel):
    id: str
    name: str
    phone: str | None
    email: str | None
    language: str
    time_zone: str
    channels: list[str]


class ServiceContactsView(BaseModel):
    id: str
    contacts: list[ContactPointView]


class AgencyContactsView(BaseModel):
    id: str
    name: str
    focal_point: ContactPointView | None
    supervisor: ContactPointView | None
    services: list[ServiceContactsView]


class ContactDirectoryView(BaseModel):
    """Who is told about what, for the notifications service: the directory's contact
    points only, never sent on a topic."""

    version: int
    organizations: list[AgencyContactsView]


def contact_directory(version: int, organizations: list[Organization]) -> ContactDirectoryView:
    def point(c: ContactPoint) -> ContactPointView:
        return ContactPointView.model_validate(c.model_dump(mode="json"))

    return ContactDirectoryView(
        version=version,
        organizations=[
            AgencyContactsView(
                id=o.id,
                name=o.name,
                focal_point=point(o.focal_point),
                supervisor=point(o.supervisor),
                services=[
                    ServiceContactsView(id=s.id, contacts=[point(c) for c in s.contacts])
                    for s in o.services
                ],
            )
            for o in organizations
        ],
    )


def referral_view(referral: store.StoredReferral, role: Party) -> ReferralView:
    f = referral.facts
    return ReferralView(
        referral_id=f.referral_id,
        case_id=f.case_id,
        reference=f.reference,
        state=referral.state,
        version=referral.version,
        from_agency_id=f.from_agency_id,
        to_agency_id=f.to_agency_id,
        service_id=f.service_id,
        service_type=f.service_type,
        urgency=f.urgency,
        case_country=f.case_country,
        case_region=f.case_region,
        service_country=f.service_country,
        cross_border=f.cross_border,
        routing_rule=referral.routing_rule,
        mandatory=referral.mandatory,
        respond_by=referral.respond_by,
        rejection_reason=referral.rejection_reason,
        closure_outcome=referral.closure_outcome,
        cancellation_reason=referral.cancellation_reason,
        best_interest=referral.best_interest if role is Party.SENDER else None,
        created_at=referral.created_at,
        sent_at=referral.sent_at,
        updated_at=referral.updated_at,
        your_role=role,
        allowed_actions=allowed_actions(referral.state, role),
    )
