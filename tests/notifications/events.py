"""Events as referral, follow-up and intake publish them, built from the contract models."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts import events as ev
from contracts.codes import (
    CancellationReason,
    ClosureOutcome,
    DeadlineKind,
    FollowupKind,
    ReferralState,
    RejectionReason,
    RiskLevel,
    ServiceType,
)


def new_reference(region: str = "PIU") -> str:
    return f"PE-{region}-2026-{random.randint(0, 999_999):06d}"


def _referral_fields(case_id: uuid.UUID | str, reference: str, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "case_id": case_id,
        "referral_id": uuid.uuid4(),
        "reference": reference,
        "state": ReferralState.SENT,
        "version": 2,
        "from_agency_id": "ong-amanecer",
        "to_agency_id": "upe-piura",
        "service_id": "upe-piura-proteccion",
        "service_type": ServiceType.SPECIAL_PROTECTION,
        "urgency": RiskLevel.HIGH,
        "case_country": "PE",
        "case_region": "PE-PIU",
        "service_country": "PE",
        "cross_border": False,
        "occurred_at": datetime.now(UTC),
    }
    fields.update(overrides)
    return fields


def referral_sent(
    case_id: uuid.UUID | str | None = None,
    reference: str | None = None,
    respond_by: datetime | None = None,
    **overrides: Any,
) -> ev.ReferralSentV1:
    return ev.ReferralSentV1(
        **_referral_fields(case_id or uuid.uuid4(), reference or new_reference(), **overrides),
        routing_rule="pe-piu-violence",
        mandatory=True,
        respond_by=respond_by or datetime.now(UTC) + timedelta(hours=24),
    )


def referral_accepted(case_id: uuid.UUID | str, reference: str, **o: Any) -> ev.ReferralAcceptedV1:
    return ev.ReferralAcceptedV1(
        **_referral_fields(case_id, reference, state=ReferralState.ACCEPTED, **o)
    )


def referral_rejected(case_id: uuid.UUID | str, reference: str, **o: Any) -> ev.ReferralRejectedV1:
    return ev.ReferralRejectedV1(
        **_referral_fields(case_id, reference, state=ReferralState.REJECTED, **o),
        reason=RejectionReason.INSUFFICIENT_INFORMATION,
    )


def referral_closed(case_id: uuid.UUID | str, reference: str, **o: Any) -> ev.ReferralClosedV1:
    return ev.ReferralClosedV1(
        **_referral_fields(case_id, reference, state=ReferralState.CLOSED, **o),
        outcome=ClosureOutcome.PARTIALLY_PROVIDED,
    )


def referral_cancelled(case_id: uuid.UUID | str, reference: str) -> ev.ReferralCancelledV1:
    return ev.ReferralCancelledV1(
        **_referral_fields(case_id, reference, state=ReferralState.CANCELLED),
        reason=CancellationReason.NO_LONGER_NEEDED,
    )


def referral_overdue(
    case_id: uuid.UUID | str, reference: str, level: int, **o: Any
) -> ev.ReferralOverdueV1:
    return ev.ReferralOverdueV1(
        **_referral_fields(case_id, reference, **o),
        deadline=DeadlineKind.ACKNOWLEDGE,
        due_at=datetime.now(UTC) - timedelta(hours=2),
        escalation_level=level,
    )


def followup_due(
    case_id: uuid.UUID | str,
    reference: str,
    *,
    agency_id: str = "ong-amanecer",
    caseworker_id: str | None = "cw-rosa",
    risk: RiskLevel = RiskLevel.HIGH,
) -> ev.FollowupDueV1:
    return ev.FollowupDueV1(
        case_id=case_id,
        followup_id=uuid.uuid4(),
        reference=reference,
        referral_id=uuid.uuid4(),
        kind=FollowupKind.POST_CLOSURE_CHECK,
        agency_id=agency_id,
        caseworker_id=caseworker_id,
        risk_level=risk,
        due_at=datetime.now(UTC) + timedelta(days=3),
    )
