"""When the receiving agency may see the child's identifying details.

Referral never stores them: intake holds them and answers an audited internal call
for each disclosure. They are disclosed to the receiving agency only, once it has
accepted the referral and while the service runs, never after the case's consent
was withdrawn, and never again once the case was erased (there is nothing to ask
intake for: the case's key is destroyed).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID

from contracts.codes import ReferralState, ServiceType

DISCLOSING_STATES = frozenset({ReferralState.ACCEPTED, ReferralState.IN_PROGRESS})


class IdentityStatus(StrEnum):
    """Why the receiving agency does or does not see the identifying details."""

    DISCLOSED = "disclosed"
    AFTER_ACCEPTANCE_ONLY = "after_acceptance_only"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    ERASED = "erased"  # the case was erased (case.erased): gone for good
    # Intake did not answer, or does not hold the grant yet (it learns of the acceptance
    # from the referral events): the caller may try again.
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class Identity:
    """The child's identifying details as intake gives them (never stored here)."""

    child: dict[str, Any]
    location: dict[str, Any]
    guardian: dict[str, Any] | None

    @property
    def fields(self) -> list[str]:
        """What was disclosed, for the audit."""
        return ["child", "location"] + (["guardian"] if self.guardian else [])


@dataclass(frozen=True)
class IdentityRequest:
    """One disclosure asked of intake, on behalf of the receiving agency."""

    case_id: UUID
    referral_id: UUID
    on_behalf_of: str
    purpose: str


def withheld(
    state: ReferralState, *, consent_withdrawn: bool, erased: bool = False
) -> IdentityStatus | None:
    """Why the details must not be disclosed now, or None when they may be."""
    if erased:
        return IdentityStatus.ERASED
    if consent_withdrawn:
        return IdentityStatus.CONSENT_WITHDRAWN
    if state not in DISCLOSING_STATES:
        return IdentityStatus.AFTER_ACCEPTANCE_ONLY
    return None


def disclosure_purpose(service_type: ServiceType) -> str:
    return f"delivery of {service_type.value} under an accepted referral"
