"""Kafka handlers: each maps an event to a use case of `commands`. They run inside the
kit's consumer transaction (the event id is recorded beside their effects) and never
send anything themselves: the delivery worker does, from the database. Planning
waits for the contact directory to be loaded (TransientError until then)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from contracts import events as ev
from contracts.envelope import CloudEvent
from contracts.registry import parse_data
from contracts.topics import Topic
from services.kit.consumer import Subscription
from services.kit.db import Conn
from services.notifications import commands
from services.notifications.domain.recipients import CaseInfo, ContactBook


class Handlers:
    def __init__(
        self, *, contacts: Callable[[], Awaitable[ContactBook]], now: Callable[[], datetime]
    ) -> None:
        self.contacts = contacts
        self.now = now

    def subscriptions(self) -> list[Subscription]:
        notified = self.on_notified_event
        return [
            Subscription(
                Topic.CASES,
                {
                    ev.CaseCreatedV1.event_type: self.on_case_created,
                    ev.CaseErasedV1.event_type: self.on_case_erased,
                },
            ),
            Subscription(
                Topic.REFERRALS,
                {
                    ev.ReferralSentV1.event_type: notified,
                    ev.ReferralAcceptedV1.event_type: notified,
                    ev.ReferralRejectedV1.event_type: notified,
                    ev.ReferralClosedV1.event_type: notified,
                    ev.ReferralOverdueV1.event_type: notified,
                },
            ),
            Subscription(Topic.FOLLOWUPS, {ev.FollowupDueV1.event_type: notified}),
        ]

    async def on_case_created(self, conn: Conn, event: CloudEvent) -> None:
        data = parse_data(event)
        assert isinstance(data, ev.CaseCreatedV1)
        case = CaseInfo(
            str(data.case_id), data.reference, data.registering_agency_id, data.caseworker_id
        )
        await commands.record_case(
            conn, commands.RecordCase(case), contacts=self.contacts, now=self.now()
        )

    async def on_case_erased(self, conn: Conn, event: CloudEvent) -> None:
        data = parse_data(event)
        assert isinstance(data, ev.CaseErasedV1)
        await commands.erase_case(conn, commands.EraseCase(data), now=self.now())

    async def on_notified_event(self, conn: Conn, event: CloudEvent) -> None:
        command = commands.PlanDeliveries(event.id, event.traceparent, parse_data(event))
        await commands.plan_deliveries(conn, command, contacts=self.contacts, now=self.now())
