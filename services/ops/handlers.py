"""Referral health, projected from the events (kit consumer, idempotent): overdue
referrals until they end, unmet needs, failed notifications. Each handler only
translates an event into a row of the ops database."""

from __future__ import annotations

from contracts.codes import ReferralState
from contracts.envelope import CloudEvent
from contracts.events import (
    NotificationFailedV1,
    ReferralCancelledV1,
    ReferralClosedV1,
    ReferralEventV1,
    ReferralOverdueV1,
    ReferralRejectedV1,
    ReferralUnmetNeedV1,
)
from contracts.registry import parse_data
from contracts.topics import Topic
from services.kit.consumer import PoisonEventError, Subscription
from services.kit.db import Conn
from services.ops import store

ENDED = (ReferralClosedV1, ReferralCancelledV1, ReferralRejectedV1)
TERMINAL = {ReferralState.CLOSED, ReferralState.CANCELLED, ReferralState.REJECTED}


def subscriptions() -> list[Subscription]:
    return [
        Subscription(
            Topic.REFERRALS,
            {
                ReferralOverdueV1.event_type: on_overdue,
                ReferralUnmetNeedV1.event_type: on_unmet_need,
                **{model.event_type: on_ended for model in ENDED},
            },
        ),
        Subscription(Topic.NOTIFICATIONS, {NotificationFailedV1.event_type: on_failed}),
    ]


async def on_overdue(conn: Conn, event: CloudEvent) -> None:
    ev = parse_data(event)
    if not isinstance(ev, ReferralOverdueV1):
        raise PoisonEventError(f"{event.type} is not referral.overdue")
    if ev.state in TERMINAL:
        return
    await store.record_overdue(
        conn,
        {
            "referral_id": ev.referral_id,
            "case_id": ev.case_id,
            "reference": ev.reference,
            "to_agency_id": ev.to_agency_id,
            "service_type": ev.service_type.value,
            "deadline": str(ev.deadline),
            "due_at": ev.due_at,
            "escalation_level": ev.escalation_level,
        },
    )


async def on_ended(conn: Conn, event: CloudEvent) -> None:
    ev = parse_data(event)
    if not isinstance(ev, ReferralEventV1):
        raise PoisonEventError(f"{event.type} is not a referral transition")
    await store.end_referral(conn, ev.referral_id, ev.state.value, ev.occurred_at)


async def on_unmet_need(conn: Conn, event: CloudEvent) -> None:
    ev = parse_data(event)
    if not isinstance(ev, ReferralUnmetNeedV1):
        raise PoisonEventError(f"{event.type} is not referral.unmet_need")
    await store.record_unmet_need(
        conn,
        {
            "event_id": event.id,
            "case_id": ev.case_id,
            "service_type": ev.service_type.value,
            "country": ev.country,
            "region": ev.region,
            "reason": ev.reason,
            "occurred_at": ev.occurred_at,
        },
    )


async def on_failed(conn: Conn, event: CloudEvent) -> None:
    ev = parse_data(event)
    if not isinstance(ev, NotificationFailedV1):
        raise PoisonEventError(f"{event.type} is not notification.failed")
    await store.record_notification_failure(
        conn,
        {
            "event_id": event.id,
            "case_id": ev.case_id,
            "notification_id": ev.notification_id,
            "channel": str(ev.channel),
            "error_code": ev.error_code,
            "permanent": ev.permanent,
            "failed_at": ev.failed_at,
        },
    )
