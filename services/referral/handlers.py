"""Kafka handlers: each maps an event of the cases topic to a use case
(services/referral/commands/cases.py) — a new case is routed, a consent withdrawal
cancels the case's open referrals, an erasure cancels them and removes what
identifies a person.

They run inside the kit consumer's transaction, which records the event id beside
their effects, so a redelivered event changes nothing. `case_consumers` identical
subscriptions are listed: each is one consumer-group member, so the topic's
partitions are split among them and cases are routed in parallel (a case stays on
one partition, hence on one consumer, in order).
"""

from __future__ import annotations

from contracts.envelope import CloudEvent
from contracts.events import CaseConsentWithdrawnV1, CaseCreatedV1, CaseErasedV1
from contracts.topics import Topic
from services.kit.consumer import Subscription
from services.kit.db import Conn
from services.referral import commands


class Handlers:
    def __init__(self, ctx: commands.Context, *, case_consumers: int = 1) -> None:
        self.ctx = ctx
        self.case_consumers = case_consumers

    def subscriptions(self) -> list[Subscription]:
        return [
            Subscription(
                Topic.CASES,
                {
                    CaseCreatedV1.event_type: self.on_case_created,
                    CaseConsentWithdrawnV1.event_type: self.on_consent_withdrawn,
                    CaseErasedV1.event_type: self.on_case_erased,
                },
                name="referral-cases",
            )
            for _ in range(self.case_consumers)
        ]

    async def on_case_created(self, conn: Conn, event: CloudEvent) -> None:
        case = CaseCreatedV1.model_validate(event.data)
        await commands.route_case(
            conn, self.ctx, commands.RouteCase(case, event.data, event.trace_id)
        )

    async def on_consent_withdrawn(self, conn: Conn, event: CloudEvent) -> None:
        withdrawal = CaseConsentWithdrawnV1.model_validate(event.data)
        await commands.withdraw_consent(
            conn,
            self.ctx,
            commands.WithdrawConsent(withdrawal.case_id, withdrawal.withdrawn_at, event.trace_id),
        )

    async def on_case_erased(self, conn: Conn, event: CloudEvent) -> None:
        erased = CaseErasedV1.model_validate(event.data)
        await commands.erase_case(
            conn,
            self.ctx,
            commands.EraseCase(erased, event.trace_id),
        )
