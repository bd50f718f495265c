"""Kafka event handlers: referral transitions and case.created, each mapped to its use
case in `commands`. Each runs inside the kit consumer's transaction (event id
recorded beside the effects), so a redelivered event changes nothing."""

from __future__ import annotations

from contracts.envelope import CloudEvent
from contracts.events import (
    CaseCreatedV1,
    ReferralAcceptedV1,
    ReferralAcknowledgedV1,
    ReferralCancelledV1,
    ReferralClosedV1,
    ReferralEventV1,
    ReferralProposedV1,
    ReferralRejectedV1,
    ReferralSentV1,
    ReferralStartedV1,
)
from contracts.registry import parse_data
from contracts.topics import Topic
from services.followup import commands, domain
from services.kit.consumer import PoisonEventError, Subscription
from services.kit.db import Conn

# The referral transitions whose deadlines and milestones follow-up keeps.
REFERRAL_TRANSITIONS: tuple[type[ReferralEventV1], ...] = (
    ReferralProposedV1,
    ReferralSentV1,
    ReferralAcknowledgedV1,
    ReferralAcceptedV1,
    ReferralRejectedV1,
    ReferralStartedV1,
    ReferralClosedV1,
    ReferralCancelledV1,
)


class Handlers:
    def __init__(self, policy: domain.DeadlinePolicy) -> None:
        self._policy = policy

    def subscriptions(self) -> list[Subscription]:
        return [
            Subscription(
                Topic.REFERRALS,
                {model.event_type: self.on_referral_transition for model in REFERRAL_TRANSITIONS},
            ),
            Subscription(Topic.CASES, {CaseCreatedV1.event_type: self.on_case_created}),
        ]

    async def on_referral_transition(self, conn: Conn, event: CloudEvent) -> None:
        ev = parse_data(event)
        if not isinstance(ev, ReferralEventV1):
            raise PoisonEventError(f"{event.type} is not a referral transition")
        await commands.apply_referral_event(conn, ev, policy=self._policy)

    async def on_case_created(self, conn: Conn, event: CloudEvent) -> None:
        ev = parse_data(event)
        if not isinstance(ev, CaseCreatedV1):
            raise PoisonEventError(f"{event.type} is not case.created")
        await commands.record_case(conn, ev, policy=self._policy)
