"""One case's life as the producing services publish it, built from the contract
models: what the handler contract suite delivers, in order, to each subscription."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from contracts import events as ev
from contracts.codes import (
    AgeBand,
    CancellationReason,
    ClosureOutcome,
    ConcernCode,
    ConsentBasis,
    ConsentGiver,
    ConsentScope,
    DeadlineKind,
    ErasureReason,
    FollowupKind,
    ReferralState,
    RejectionReason,
    RiskLevel,
    ServiceType,
    Sex,
)

# Which earlier events a service must have seen for an event to mean something.
PREREQUISITES: dict[str, tuple[str, ...]] = {
    "case.created": (),
    "case.consent_withdrawn": ("case.created",),
    "case.erased": ("case.created", "referral.sent"),
    "referral.proposed": ("case.created",),
    "referral.sent": ("case.created",),
    "referral.acknowledged": ("case.created", "referral.sent"),
    "referral.accepted": ("case.created", "referral.sent", "referral.acknowledged"),
    "referral.rejected": ("case.created", "referral.sent", "referral.acknowledged"),
    "referral.started": (
        "case.created",
        "referral.sent",
        "referral.acknowledged",
        "referral.accepted",
    ),
    "referral.closed": (
        "case.created",
        "referral.sent",
        "referral.acknowledged",
        "referral.accepted",
        "referral.started",
    ),
    "referral.cancelled": ("case.created", "referral.sent"),
    "referral.overdue": ("case.created", "referral.sent"),
    "referral.unmet_need": ("case.created",),
    "followup.due": ("case.created",),
    "followup.completed": ("case.created", "followup.due"),
}

_VERSION = {
    "referral.proposed": (1, ReferralState.PROPOSED),
    "referral.sent": (1, ReferralState.SENT),
    "referral.acknowledged": (2, ReferralState.ACKNOWLEDGED),
    "referral.accepted": (3, ReferralState.ACCEPTED),
    "referral.rejected": (3, ReferralState.REJECTED),
    "referral.started": (4, ReferralState.IN_PROGRESS),
    "referral.closed": (5, ReferralState.CLOSED),
    "referral.cancelled": (2, ReferralState.CANCELLED),
    "referral.overdue": (1, ReferralState.SENT),
}


@dataclass
class Story:
    """A Piura case routed to the special protection unit, at `now`."""

    now: datetime
    case_id: uuid.UUID = field(default_factory=uuid.uuid4)
    referral_id: uuid.UUID = field(default_factory=uuid.uuid4)
    followup_id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def reference(self) -> str:
        return f"PE-PIU-2026-{self.case_id.int % 1_000_000:06d}"

    def event(self, event_type: str) -> ev.EventData:
        if event_type == "case.created":
            return self._case_created()
        if event_type == "case.consent_withdrawn":
            return ev.CaseConsentWithdrawnV1(
                case_id=self.case_id,
                reference=self.reference,
                registering_agency_id="ong-amanecer",
                withdrawn_at=self.now,
            )
        if event_type == "case.erased":
            return ev.CaseErasedV1(
                case_id=self.case_id,
                reference=self.reference,
                registering_agency_id="ong-amanecer",
                erased_at=self.now,
                reason=ErasureReason.DATA_SUBJECT_REQUEST,
            )
        if event_type == "followup.due":
            return ev.FollowupDueV1(
                case_id=self.case_id,
                followup_id=self.followup_id,
                reference=self.reference,
                referral_id=self.referral_id,
                kind=FollowupKind.POST_CLOSURE_CHECK,
                agency_id="ong-amanecer",
                caseworker_id="cw-rosa",
                risk_level=RiskLevel.HIGH,
                due_at=self.now + timedelta(days=3),
            )
        if event_type == "followup.completed":
            return ev.FollowupCompletedV1(
                case_id=self.case_id,
                followup_id=self.followup_id,
                reference=self.reference,
                referral_id=self.referral_id,
                agency_id="ong-amanecer",
                child_reached=True,
                service_received=True,
                current_risk=RiskLevel.MEDIUM,
                reopened=False,
                completed_at=self.now + timedelta(days=3),
            )
        if event_type == "referral.unmet_need":
            return ev.ReferralUnmetNeedV1(
                case_id=self.case_id,
                reference=self.reference,
                registering_agency_id="ong-amanecer",
                service_type=ServiceType.LEGAL_AID_MIGRATION,
                country="PE",
                region="PE-PIU",
                urgency=RiskLevel.HIGH,
                reason="no_service_in_coverage",
                occurred_at=self.now,
            )
        return self._referral(event_type)

    @staticmethod
    def versioned(event_type: str) -> int | None:
        return _VERSION[event_type][0] if event_type in _VERSION else None

    def _case_created(self) -> ev.CaseCreatedV1:
        return ev.CaseCreatedV1(
            case_id=self.case_id,
            reference=self.reference,
            registering_agency_id="ong-amanecer",
            registered_at=self.now - timedelta(minutes=5),
            country="PE",
            region="PE-PIU",
            age_band=AgeBand.FROM_15_TO_17,
            sex=Sex.FEMALE,
            nationality="VE",
            languages=["es"],
            unaccompanied=True,
            separated=False,
            has_disability=False,
            concerns=[ConcernCode.PHYSICAL_VIOLENCE, ConcernCode.GENDER_BASED_VIOLENCE],
            needs=[ServiceType.SPECIAL_PROTECTION, ServiceType.PSYCHOSOCIAL_SUPPORT],
            risk_level=RiskLevel.HIGH,
            consent=ev.ConsentV1(
                basis=ConsentBasis.CONSENT,
                scope=ConsentScope.ALL_REFERRAL_SERVICES,
                given_by=ConsentGiver.CHILD,
                recorded_at=self.now - timedelta(hours=1),
            ),
            caseworker_id="cw-rosa",
        )

    def _referral(self, event_type: str) -> ev.EventData:
        version, state = _VERSION[event_type]
        common: dict[str, Any] = {
            "case_id": self.case_id,
            "referral_id": self.referral_id,
            "reference": self.reference,
            "state": state,
            "version": version,
            "from_agency_id": "ong-amanecer",
            "to_agency_id": "upe-piura",
            "service_id": "upe-piura-proteccion",
            "service_type": ServiceType.SPECIAL_PROTECTION,
            "urgency": RiskLevel.HIGH,
            "case_country": "PE",
            "case_region": "PE-PIU",
            "service_country": "PE",
            "cross_border": False,
            "occurred_at": self.now + timedelta(minutes=version),
        }
        if event_type == "referral.sent":
            return ev.ReferralSentV1(
                **common,
                routing_rule="unaccompanied-migrant-special-protection",
                mandatory=True,
                respond_by=self.now + timedelta(hours=24),
            )
        if event_type == "referral.proposed":
            return ev.ReferralProposedV1(**common, routing_rule="psychosocial-support")
        if event_type == "referral.acknowledged":
            return ev.ReferralAcknowledgedV1(**common)
        if event_type == "referral.accepted":
            return ev.ReferralAcceptedV1(**common)
        if event_type == "referral.rejected":
            return ev.ReferralRejectedV1(**common, reason=RejectionReason.NO_CAPACITY)
        if event_type == "referral.started":
            return ev.ReferralStartedV1(**common)
        if event_type == "referral.closed":
            return ev.ReferralClosedV1(**common, outcome=ClosureOutcome.SERVICE_PROVIDED)
        if event_type == "referral.cancelled":
            return ev.ReferralCancelledV1(**common, reason=CancellationReason.NO_LONGER_NEEDED)
        if event_type == "referral.overdue":
            return ev.ReferralOverdueV1(
                **common,
                deadline=DeadlineKind.ACKNOWLEDGE,
                due_at=self.now - timedelta(hours=1),
                escalation_level=1,
            )
        raise KeyError(event_type)
