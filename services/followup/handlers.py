"""Kafka event handlers: referral transitions, case.created and case.erased, each
mapped to its use case in `commands`. Each runs inside the kit consumer's transaction (event id
recorded beside the effects), so a redelivered event changes nothing."""

from __future__ import annotations

from contracts.envelope import CloudEvent
from contracts.events import (
    CaseCreatedV1,
    CaseErasedV1,
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
from services.kit.clock import Clock, SystemClock
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
    def __init__(self, policy: domain.DeadlinePolicy, clock: Clock | None = None) -> None:
        self._policy = policy
        self._clock = clock or SystemClock()

    def subscriptions(self) -> list[Subscription]:
        return [
            Subscription(
                Topic.REFERRALS,
                {model.event_type: self.on_referral_transition for model in REFERRAL_TRANSITIONS},
            ),
            Subscription(
                Topic.CASES,
                {
                    CaseCreatedV1.event_type: self.on_case_created,
                    CaseErasedV1.event_type: self.on_case_erased,
                },
            ),
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

    async def on_case_erased(self, conn: Conn, event: CloudEvent) -> None:
        ev = parse_data(event)
        if not isinstance(ev, CaseErasedV1):
            raise PoisonEventError(f"{event.type} is not case.erased")
        await commands.erase_case(conn, ev, now=self._clock.now())
