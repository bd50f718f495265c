"""Referral's rules, with no I/O, one concern per module:

- `case`: a case as referral sees it (`CaseProfile`, codes only) and consent;
- `directory`: the service directory after Open Referral HSDS (organisation →
  service → coverage, eligibility, contact points) and its `Offer`s;
- `routing`: the rules of deploy/routing.yaml and `plan_routing`, which turns a new
  case into sent and proposed referrals and unmet needs;
- `lifecycle`: the closed-loop state machine (`TRANSITIONS`), its parties and the
  `ReferralFacts` every referral event repeats;
- `disclosure`: when the receiving agency may see the child's identifying details;
- `documents`: what the two YAML documents share (strict models, errors naming
  the place).

The names below are re-exported for callers outside the service (the bench); the
service's own modules import from the module that defines them.
"""

from services.referral.domain.case import CaseProfile, consent_covers
from services.referral.domain.directory import (
    ContactPoint,
    Directory,
    DirectoryService,
    Offer,
    Organization,
    load_directory,
)
from services.referral.domain.documents import DirectoryError
from services.referral.domain.lifecycle import (
    OPEN_STATES,
    TRANSITIONS,
    Action,
    Deadlines,
    Party,
    ReferralFacts,
    TransitionNotAllowed,
    next_state,
)
from services.referral.domain.routing import (
    PlannedReferral,
    RoutingPlan,
    RoutingRules,
    UnmetReason,
    load_rules,
    plan_routing,
)

__all__ = [
    "OPEN_STATES",
    "TRANSITIONS",
    "Action",
    "CaseProfile",
    "ContactPoint",
    "Deadlines",
    "Directory",
    "DirectoryError",
    "DirectoryService",
    "Offer",
    "Organization",
    "Party",
    "PlannedReferral",
    "ReferralFacts",
    "RoutingPlan",
    "RoutingRules",
    "TransitionNotAllowed",
    "UnmetReason",
    "consent_covers",
    "load_directory",
    "load_rules",
    "next_state",
    "plan_routing",
]
