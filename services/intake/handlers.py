"""Kafka handlers: every referral transition, mapped to
`commands.record_referral_event` (the disclosure grants it opens and ends, and
whether the case's referrals are all ended, which retention waits for). They run
inside the kit consumer's transaction (the event id recorded beside their effects),
so a redelivered event changes nothing."""

from __future__ import annotations

from contracts.envelope import CloudEvent
from contracts.events import ReferralEventV1
from contracts.registry import EVENT_MODELS, parse_data
from contracts.topics import Topic
from services.intake import commands
from services.kit.consumer import PoisonEventError, Subscription
from services.kit.db import Conn


class Handlers:
    def subscriptions(self) -> list[Subscription]:
        return [
            Subscription(
                Topic.REFERRALS,
                {
                    model.event_type: self.on_referral_event
                    for model in EVENT_MODELS.values()
                    # The referral service's transitions (an overdue escalation is
                    # followup's, and changes no referral's state).
                    if issubclass(model, ReferralEventV1) and model.producer == "referral"
                },
            )
        ]

    async def on_referral_event(self, conn: Conn, event: CloudEvent) -> None:
        data = parse_data(event)
        if not isinstance(data, ReferralEventV1):
            raise PoisonEventError(f"{event.type} is not a referral transition")
        await commands.record_referral_event(conn, data)
