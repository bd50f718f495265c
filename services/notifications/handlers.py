"""Kafka handlers: each maps an event to a use case of `commands`. They run inside the
kit's consumer transaction (the event id is recorded beside their effects) and never
send anything themselves: the delivery worker does, from the database. Planning
messages waits for the contact directory to be loaded (TransientError until then).

Every coordination event is handled: those people are told about plan messages,
and all of them go to the partner feeds of the agencies they concern."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from contracts import events as ev
from contracts.envelope import CloudEvent
from contracts.registry import model_for, parse_data
from contracts.topics import Topic
from services.kit.consumer import EventHandler, Subscription
from services.kit.db import Conn
from services.notifications import commands
from services.notifications.domain.partners import PARTNER_EVENT_TYPES
from services.notifications.domain.recipients import CaseInfo, ContactBook
from services.notifications.partner_feeds import Published


def published(event: CloudEvent) -> Published:
    return Published(event.id, event.source, event.time, event.traceparent, parse_data(event))


class Handlers:
    def __init__(
        self,
        *,
        contacts: Callable[[], Awaitable[ContactBook]],
        feeds: frozenset[str],
        now: Callable[[], datetime],
    ) -> None:
        self.contacts = contacts
        self.feeds = feeds
        self.now = now

    def subscriptions(self) -> list[Subscription]:
        special: dict[str, EventHandler] = {
            ev.CaseCreatedV1.event_type: self.on_case_created,
            ev.CaseErasedV1.event_type: self.on_case_erased,
        }
        by_topic: dict[Topic, dict[str, EventHandler]] = {}
        for event_type in PARTNER_EVENT_TYPES:
            topic = model_for(event_type).topic
            handler = special.get(event_type, self.on_event)
            by_topic.setdefault(topic, {})[event_type] = handler
        return [Subscription(topic, handlers) for topic, handlers in sorted(by_topic.items())]

    async def on_case_created(self, conn: Conn, event: CloudEvent) -> None:
        kept = published(event)
        data = kept.data
        assert isinstance(data, ev.CaseCreatedV1)
        case = CaseInfo(
            str(data.case_id), data.reference, data.registering_agency_id, data.caseworker_id
        )
        await commands.record_case(
            conn,
            commands.RecordCase(case, kept),
            contacts=self.contacts,
            feeds=self.feeds,
            now=self.now(),
        )

    async def on_case_erased(self, conn: Conn, event: CloudEvent) -> None:
        await commands.erase_case(
            conn, commands.EraseCase(published(event)), feeds=self.feeds, now=self.now()
        )

    async def on_event(self, conn: Conn, event: CloudEvent) -> None:
        command = commands.PlanDeliveries(published(event))
        await commands.plan_deliveries(
            conn, command, contacts=self.contacts, feeds=self.feeds, now=self.now()
        )
