"""Kafka handlers: turn case, referral and follow-up events into delivery rows. They
run inside the kit's consumer transaction (the event id is recorded beside them) and
never send anything themselves: the delivery worker does, from the database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from contracts import events as ev
from contracts.envelope import CloudEvent
from contracts.registry import model_for, parse_data
from contracts.topics import Topic
from services.kit.consumer import EventHandler, Subscription
from services.kit.db import Conn
from services.kit.logging import get_logger
from services.notifications import store
from services.notifications.domain import (
    NOTIFIED_EVENT_TYPES,
    CaseInfo,
    Directory,
    is_urgent,
    plan_recipients,
)

log = get_logger(__name__)


@dataclass
class Handlers:
    directory: Callable[[], Directory]
    now: Callable[[], datetime]

    async def on_case_created(self, conn: Conn, event: CloudEvent) -> None:
        data = parse_data(event)
        assert isinstance(data, ev.CaseCreatedV1)
        case = CaseInfo(
            str(data.case_id), data.reference, data.registering_agency_id, data.caseworker_id
        )
        await store.save_case(conn, case)
        for waiting in await store.take_awaiting(conn, data.case_id):
            parked = model_for(waiting["event_type"]).model_validate(waiting["data"])
            await self._plan(conn, waiting["event_id"], parked, case)

    async def on_notified_event(self, conn: Conn, event: CloudEvent) -> None:
        data = parse_data(event)
        await store.save_source_event(
            conn,
            event_id=event.id,
            event_type=event.type,
            case_id=data.case_id,
            data=data.model_dump(mode="json"),
            traceparent=event.traceparent,
            received_at=self.now(),
        )
        case = await store.get_case(conn, data.case_id)
        await self._plan(conn, event.id, data, case)

    async def _plan(
        self, conn: Conn, event_id: str, data: ev.EventData, case: CaseInfo | None
    ) -> None:
        plan = plan_recipients(data, case, self.directory())
        created = await store.insert_deliveries(
            conn,
            event_id=event_id,
            case_id=data.case_id,
            owner_agency_id=owner_of(data, case),
            recipients=plan.recipients,
            urgent=is_urgent(data),
            now=self.now(),
        )
        if plan.waiting_for_case:
            await store.await_case(conn, event_id, data.case_id)
        if not plan.recipients and not plan.waiting_for_case:
            log.warning("no recipient in the directory for this event", event_id=event_id)
        log.info(
            "deliveries planned",
            event_id=event_id,
            deliveries=created,
            waiting_for_case=plan.waiting_for_case,
        )

    def subscriptions(self) -> list[Subscription]:
        notified: dict[str, EventHandler] = {
            t: self.on_notified_event for t in NOTIFIED_EVENT_TYPES
        }
        return [
            Subscription(Topic.CASES, {"case.created": self.on_case_created}),
            Subscription(
                Topic.REFERRALS, {t: h for t, h in notified.items() if t.startswith("referral.")}
            ),
            Subscription(
                Topic.FOLLOWUPS, {t: h for t, h in notified.items() if t.startswith("followup.")}
            ),
        ]


def owner_of(data: ev.EventData, case: CaseInfo | None) -> str:
    """The agency whose delivery log shows these notifications: the case's registering
    agency, else (case not seen yet) the referring agency or the follow-up's agency."""
    if case is not None:
        return case.agency_id
    if isinstance(data, ev.ReferralEventV1):
        return data.from_agency_id
    if isinstance(data, ev.FollowupDueV1):
        return data.agency_id
    raise ValueError(f"no owner for {data.event_type}")
