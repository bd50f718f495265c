"""Refusals that more than one use case makes: a best-interest decision dated in
the future, a referral the case's consent does not allow, and anything more done
about an erased case."""

from __future__ import annotations

from datetime import datetime

from contracts.codes import ServiceType
from contracts.events import ConsentV1
from services.kit.errors import Conflict, InvalidField
from services.kit.safeguarding import BestInterestDecision, moment_problem
from services.referral.domain.case import consent_covers


def check_decision(decision: BestInterestDecision | None, now: datetime) -> None:
    if decision is None:
        return
    problem = moment_problem(decision.decided_at, now)
    if problem:
        raise InvalidField("best_interest.decided_at", problem)


def check_consent(
    consent: ConsentV1, service_type: ServiceType, *, withdrawn: bool, decided: bool
) -> None:
    """A referral is sent only while the case's consent stands, and only when it
    covers the service or a best-interest decision is documented (`decided`)."""
    if withdrawn:
        raise Conflict(
            "Consent withdrawn",
            "Consent to share this case was withdrawn; it cannot be referred.",
            reason="consent_withdrawn",
        )
    if decided or consent_covers(consent, service_type):
        return
    raise Conflict(
        "Consent does not cover this referral",
        f"The case's recorded consent (basis {consent.basis.value}"
        + (f", scope {consent.scope.value}" if consent.scope else "")
        + f") does not cover sharing it for {service_type.value}. Record a best-interest "
        "decision (best_interest: decided_by, decided_at, reason) to send it.",
        reason="consent_does_not_cover_service",
    )


def check_not_erased(erased_at: datetime | None) -> None:
    """Nothing more happens to an erased case: no new referral, no further step."""
    if erased_at is not None:
        raise Conflict(
            "Case erased",
            "This case was erased (its identifying details are destroyed); it cannot be "
            "referred and its referrals cannot change.",
            reason="case_erased",
        )
