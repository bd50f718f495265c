"""The closed-loop lifecycle of a referral, after FHIR Task:

    proposed → sent → acknowledged → accepted | rejected → in_progress → closed

and cancelled by the sender while open. `TRANSITIONS` is the whole state machine:
for each `Action`, the party that may take it, the states it is allowed from, the
state it leads to and the event it emits. The partner API's lifecycle routes are
generated from it.

Who is which party: the agency that sent a referral is its sender; the agency it is
addressed to becomes its receiver once it is sent (a proposal is the case-owning
agency's business only). Anyone else is not a party and must not learn it exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from contracts.codes import (
    CancellationReason,
    ClosureOutcome,
    ReferralState,
    RejectionReason,
    RiskLevel,
    ServiceType,
)
from contracts.events import (
    ReferralAcceptedV1,
    ReferralAcknowledgedV1,
    ReferralCancelledV1,
    ReferralClosedV1,
    ReferralEventV1,
    ReferralRejectedV1,
    ReferralSentV1,
    ReferralStartedV1,
)
from services.kit.safeguarding import BestInterestDecision


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


def allowed_actions(state: ReferralState, party: Party) -> list[Action]:
    """What `party` may do with a referral in `state`, in lifecycle order."""
    return [a for a, t in TRANSITIONS.items() if t.party is party and state in t.from_states]


@dataclass(frozen=True)
class StepDetails:
    """What a step records besides the new state: the sender's best-interest decision
    when confirming, the receiver's reason for rejecting, the outcome of a closed
    loop, the sender's reason for cancelling."""

    best_interest: BestInterestDecision | None = None
    rejection_reason: RejectionReason | None = None
    outcome: ClosureOutcome | None = None
    cancellation_reason: CancellationReason | None = None


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

    def party_of(self, agency_id: str, *, sent: bool) -> Party | None:
        """The agency's part in the referral, or None when it is none of its business
        (a receiver does not see a referral before it is sent)."""
        if self.from_agency_id == agency_id:
            return Party.SENDER
        if self.to_agency_id == agency_id and sent:
            return Party.RECEIVER
        return None

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
