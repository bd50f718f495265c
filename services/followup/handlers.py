"""Kafka event handlers: referral.* and case.created keep the projections and start or
finish timers. Each runs inside the kit consumer's transaction (event id recorded
beside the effects), so a redelivered event changes nothing."""

from __future__ import annotations

from datetime import datetime

from contracts.codes import FollowupKind, RiskLevel
from contracts.envelope import CloudEvent
from contracts.events import CaseCreatedV1, ReferralClosedV1, ReferralEventV1, ReferralSentV1
from contracts.registry import parse_data
from contracts.topics import Topic
from services.followup import domain, store
from services.kit.consumer import EventHandler, PoisonEventError, Subscription
from services.kit.db import Conn
from services.kit.logging import get_logger

log = get_logger(__name__)

REFERRAL_EVENTS = (
    "referral.proposed",
    "referral.sent",
    "referral.acknowledged",
    "referral.accepted",
    "referral.rejected",
    "referral.started",
    "referral.closed",
    "referral.cancelled",
)


def _referral_handler(policy: domain.DeadlinePolicy) -> EventHandler:
    async def handle(conn: Conn, event: CloudEvent) -> None:
        ev = parse_data(event)
        if not isinstance(ev, ReferralEventV1):
            raise PoisonEventError(f"{event.type} is not a referral transition")
        respond_by = ev.respond_by if isinstance(ev, ReferralSentV1) else None
        # Decided before the row lock; is_latest comes from the stored version below.
        probe = domain.plan_transition(
            policy,
            event.type,
            urgency=ev.urgency,
            occurred_at=ev.occurred_at,
            is_latest=True,
            respond_by=respond_by,
        )
        outcome = ev.outcome.value if isinstance(ev, ReferralClosedV1) else None
        is_latest = await store.record_referral_event(conn, ev, probe.milestones, outcome)
        plan = (
            probe
            if is_latest
            else domain.plan_transition(
                policy,
                event.type,
                urgency=ev.urgency,
                occurred_at=ev.occurred_at,
                is_latest=False,
                respond_by=respond_by,
            )
        )
        if plan.finishes:
            await store.finish_deadlines(conn, ev.referral_id, sorted(plan.finishes), event.type)
        for start in plan.starts:
            await store.start_deadline(
                conn,
                case_id=ev.case_id,
                referral_id=ev.referral_id,
                kind=start.kind,
                started_at=start.started_at,
                due_at=start.due_at,
            )
        if plan.post_closure_followup_at is not None:
            await _schedule_post_closure_check(conn, ev, plan.post_closure_followup_at)
        if event.type == "referral.sent" and is_latest:
            await _keep_reviewing(conn, policy, ev)
        if plan.terminal:
            still_open = await store.open_referrals(conn, ev.case_id)
            if still_open.count == 0:
                await store.finish_review(conn, ev.case_id, event.type)
        log.info(
            "referral event applied",
            referral_id=str(ev.referral_id),
            version=ev.version,
            latest=is_latest,
            started=[s.kind.value for s in plan.starts],
            finished=sorted(k.value for k in plan.finishes),
        )

    return handle


async def _schedule_post_closure_check(conn: Conn, ev: ReferralEventV1, due_at: datetime) -> None:
    """The referring agency checks with its caseworker that the child got the service."""
    case = await store.get_case(conn, ev.case_id)
    caseworker = (
        case.caseworker_id if case and case.registering_agency_id == ev.from_agency_id else None
    )
    risk = case.risk_level if case else ev.urgency
    await store.create_followup(
        conn,
        origin=f"closure:{ev.referral_id}",
        kind=FollowupKind.POST_CLOSURE_CHECK.value,
        case_id=ev.case_id,
        reference=ev.reference,
        referral_id=ev.referral_id,
        agency_id=ev.from_agency_id,
        caseworker_id=caseworker,
        risk_level=risk.value,
        due_at=due_at,
    )


async def _keep_reviewing(conn: Conn, policy: domain.DeadlinePolicy, ev: ReferralEventV1) -> None:
    case = await store.get_case(conn, ev.case_id)
    risk = RiskLevel.highest(case.risk_level, ev.urgency) if case else ev.urgency
    if policy.review_applies(risk):
        await store.ensure_review(
            conn, ev.case_id, anchor=ev.occurred_at, fire_at=ev.occurred_at + policy.periodic_review
        )


def _case_created_handler(policy: domain.DeadlinePolicy) -> EventHandler:
    async def handle(conn: Conn, event: CloudEvent) -> None:
        ev = parse_data(event)
        assert isinstance(ev, CaseCreatedV1)
        await store.upsert_case(
            conn,
            case_id=ev.case_id,
            reference=ev.reference,
            registering_agency_id=ev.registering_agency_id,
            region=ev.region,
            risk_level=ev.risk_level.value,
            caseworker_id=ev.caseworker_id,
        )
        # A referral may have been seen first (the topics are not ordered together).
        if policy.review_applies(ev.risk_level):
            still_open = await store.open_referrals(conn, ev.case_id)
            if still_open.count and still_open.first_sent_at is not None:
                anchor = still_open.first_sent_at
                await store.ensure_review(
                    conn, ev.case_id, anchor=anchor, fire_at=anchor + policy.periodic_review
                )

    return handle


def subscriptions(policy: domain.DeadlinePolicy) -> list[Subscription]:
    referral = _referral_handler(policy)
    return [
        Subscription(topic=Topic.REFERRALS, handlers=dict.fromkeys(REFERRAL_EVENTS, referral)),
        Subscription(topic=Topic.CASES, handlers={"case.created": _case_created_handler(policy)}),
    ]
