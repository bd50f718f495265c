"""Follow-up's use cases: what the API asks (list, read and complete follow-up checks,
the closed-loop report) and what the referral and case events do (keep the
projections, start and finish deadlines, schedule checks and reviews; and when a
case is erased, end all of that for it and record the erasure).

Each is a plain async function taking a connection and a command value (or the
contract event), with the deadline policy, the injected clock and the events'
ce_source as keywords where it needs them. It raises `services.kit.errors` and
knows nothing of HTTP or Kafka. The timer loop (`timers`) fires what these start.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from contracts.codes import FollowupKind, RiskLevel, ServiceType
from contracts.events import (
    CaseCreatedV1,
    CaseErasedV1,
    FollowupCompletedV1,
    ReferralClosedV1,
    ReferralEventV1,
    ReferralSentV1,
)
from contracts.registry import to_cloud_event
from services.followup import domain, store
from services.followup.domain import FollowupStatus, Granularity
from services.followup.store.followups import Followup
from services.kit.clock import Clock
from services.kit.db import Conn
from services.kit.erasures import apply_erasure
from services.kit.errors import Conflict, InvalidField, NotFound
from services.kit.logging import get_logger
from services.kit.outbox import enqueue
from services.kit.safeguarding import moment_problem

log = get_logger(__name__)


# --- follow-up checks ------------------------------------------------------------------


@dataclass(frozen=True)
class CompleteFollowup:
    """What the caseworker found when following up."""

    followup_id: UUID
    agency_id: str
    child_reached: bool
    service_received: bool
    current_risk: RiskLevel
    completed_at: datetime | None = None  # None: now
    reopen: bool | None = None  # None: reopen when the service was not received


async def list_followups(
    conn: Conn, agency_id: str, status: FollowupStatus | None = None, limit: int = 100
) -> list[Followup]:
    """An agency's follow-up checks, soonest first."""
    return await store.followups.list_followups(conn, agency_id, status, limit)


async def read_followup(conn: Conn, followup_id: UUID, agency_id: str) -> Followup:
    """One follow-up check, for its agency; anyone else is told it does not exist."""
    followup = await store.followups.get_followup(conn, followup_id)
    if followup is None or followup.agency_id != agency_id:
        raise NotFound("follow-up")
    return followup


async def complete_followup(
    conn: Conn,
    cmd: CompleteFollowup,
    *,
    policy: domain.DeadlinePolicy,
    clock: Clock,
    source: str,
) -> Followup:
    """Record the outcome once, reopen a new check when the service was not received,
    and announce followup.completed, in one transaction."""
    now = clock.now()
    completed_at = cmd.completed_at or now
    problem = moment_problem(completed_at, now)
    if problem is not None:
        raise InvalidField("completed_at", problem)
    if cmd.reopen and cmd.service_received:
        raise InvalidField("reopen", "a follow-up reopens only when the service was not received")
    reopen = domain.should_reopen(service_received=cmd.service_received, requested=cmd.reopen)
    async with conn.transaction():
        followup = await store.followups.get_followup(conn, cmd.followup_id, lock=True)
        if followup is None or followup.agency_id != cmd.agency_id:
            raise NotFound("follow-up")
        if followup.status is FollowupStatus.COMPLETED:
            raise Conflict("Already completed", "This follow-up was completed already.")
        if followup.status is FollowupStatus.CANCELLED:
            raise Conflict(
                "Follow-up cancelled",
                "This follow-up was cancelled: its case was erased.",
                reason="case_erased",
            )
        reopened_as = None
        if reopen:
            reopened_as = await store.followups.create_followup(
                conn,
                origin=f"reopen:{followup.followup_id}",
                kind=followup.kind,
                case_id=followup.case_id,
                reference=followup.reference,
                referral_id=followup.referral_id,
                agency_id=followup.agency_id,
                caseworker_id=followup.caseworker_id,
                risk_level=cmd.current_risk,
                due_at=completed_at + policy.reopened_followup,
                reopened_from=followup.followup_id,
            )
        await store.followups.complete_followup(
            conn,
            followup.followup_id,
            child_reached=cmd.child_reached,
            service_received=cmd.service_received,
            current_risk=cmd.current_risk,
            completed_at=completed_at,
            reopened_as=reopened_as,
        )
        event = FollowupCompletedV1(
            case_id=followup.case_id,
            followup_id=followup.followup_id,
            reference=followup.reference,
            referral_id=followup.referral_id,
            agency_id=followup.agency_id,
            child_reached=cmd.child_reached,
            service_received=cmd.service_received,
            current_risk=cmd.current_risk,
            reopened=reopened_as is not None,
            completed_at=completed_at,
        )
        await enqueue(conn, event.topic, to_cloud_event(event, source=source))
        done = await store.followups.get_followup(conn, followup.followup_id)
    assert done is not None
    log.info(
        "follow-up completed",
        followup_id=str(done.followup_id),
        case_id=str(done.case_id),
        agency_id=cmd.agency_id,
        reopened=reopened_as is not None,
    )
    return done


# --- the closed-loop report ------------------------------------------------------------


@dataclass(frozen=True)
class ReportQuery:
    agency_id: str
    every_agency: bool  # operations: every referral, not only the agency's own
    period_from: datetime | None = None  # sent at or after
    period_to: datetime | None = None  # sent before
    service_type: ServiceType | None = None
    region: str | None = None
    granularity: Granularity = Granularity.MONTH


@dataclass(frozen=True)
class Report:
    scope: str | None  # the agency whose side is counted; None: every agency
    figures: dict[str, Any]  # totals, by service type, by region, by period
    generated_at: datetime


async def referral_report(conn: Conn, query: ReportQuery, *, now: datetime) -> Report:
    """How well the referral loop closes, from the agency's side (or everyone's)."""
    start, end = query.period_from, query.period_to
    if start is not None and end is not None and start >= end:
        raise InvalidField("query.period_from", "must be before period_to")
    scope = None if query.every_agency else query.agency_id
    referrals = await store.reports.tracked_referrals(
        conn,
        agency_id=scope,
        period_from=start,
        period_to=end,
        service_type=query.service_type.value if query.service_type else None,
        region=query.region,
        now=now,
    )
    return Report(scope, domain.referral_report(referrals, scope, query.granularity), now)


# --- what the events do ----------------------------------------------------------------


async def apply_referral_event(
    conn: Conn, ev: ReferralEventV1, *, policy: domain.DeadlinePolicy
) -> None:
    """Keep the referral's projection and its deadlines, in the caller's transaction
    (the consumer's, beside the event id, so a redelivery changes nothing)."""
    event_type = ev.event_type
    respond_by = ev.respond_by if isinstance(ev, ReferralSentV1) else None
    # Decided before the row lock; is_latest comes from the stored version below.
    probe = domain.plan_transition(
        policy,
        event_type,
        urgency=ev.urgency,
        occurred_at=ev.occurred_at,
        is_latest=True,
        respond_by=respond_by,
    )
    outcome = ev.outcome if isinstance(ev, ReferralClosedV1) else None
    is_latest = await store.projections.record_referral_event(conn, ev, probe.milestones, outcome)
    plan = (
        probe
        if is_latest
        else domain.plan_transition(
            policy,
            event_type,
            urgency=ev.urgency,
            occurred_at=ev.occurred_at,
            is_latest=False,
            respond_by=respond_by,
        )
    )
    if plan.finishes:
        await store.timers.finish_deadlines(conn, ev.referral_id, sorted(plan.finishes), event_type)
    if await store.erasures.is_erased(conn, ev.case_id):
        # A referral event late after its case's erasure (the topics are not ordered
        # together): kept in the projection (the audit), but nothing starts again.
        log.info(
            "referral event of an erased case: nothing started", referral_id=str(ev.referral_id)
        )
        return
    for start in plan.starts:
        await store.timers.start_deadline(
            conn,
            case_id=ev.case_id,
            referral_id=ev.referral_id,
            kind=start.kind,
            started_at=start.started_at,
            due_at=start.due_at,
        )
    if plan.post_closure_followup_at is not None:
        await _schedule_post_closure_check(conn, ev, plan.post_closure_followup_at)
    if isinstance(ev, ReferralSentV1) and is_latest:
        await _keep_reviewing(conn, policy, ev)
    if plan.terminal:
        still_open = await store.projections.open_referrals(conn, ev.case_id)
        if still_open.count == 0:
            await store.timers.finish_review(conn, ev.case_id, event_type)
    log.info(
        "referral event applied",
        referral_id=str(ev.referral_id),
        version=ev.version,
        latest=is_latest,
        started=[s.kind.value for s in plan.starts],
        finished=sorted(k.value for k in plan.finishes),
    )


async def _schedule_post_closure_check(conn: Conn, ev: ReferralEventV1, due_at: datetime) -> None:
    """The referring agency checks with its caseworker that the child got the service."""
    case = await store.projections.get_case(conn, ev.case_id)
    caseworker = (
        case.caseworker_id if case and case.registering_agency_id == ev.from_agency_id else None
    )
    await store.followups.create_followup(
        conn,
        origin=f"closure:{ev.referral_id}",
        kind=FollowupKind.POST_CLOSURE_CHECK,
        case_id=ev.case_id,
        reference=ev.reference,
        referral_id=ev.referral_id,
        agency_id=ev.from_agency_id,
        caseworker_id=caseworker,
        risk_level=case.risk_level if case else ev.urgency,
        due_at=due_at,
    )


async def _keep_reviewing(conn: Conn, policy: domain.DeadlinePolicy, ev: ReferralEventV1) -> None:
    case = await store.projections.get_case(conn, ev.case_id)
    risk = RiskLevel.highest(case.risk_level, ev.urgency) if case else ev.urgency
    if policy.review_applies(risk):
        await store.timers.ensure_review(
            conn, ev.case_id, anchor=ev.occurred_at, fire_at=ev.occurred_at + policy.periodic_review
        )


async def record_case(conn: Conn, ev: CaseCreatedV1, *, policy: domain.DeadlinePolicy) -> None:
    """Keep the case's projection; start its periodic review when a referral of the
    case was seen first (the two topics are not ordered together). Nothing for a
    case erased before (a replay must not bring it back)."""
    if await store.erasures.is_erased(conn, ev.case_id):
        log.info("case.created for an erased case: not kept", case_id=str(ev.case_id))
        return
    await store.projections.upsert_case(
        conn,
        case_id=ev.case_id,
        reference=ev.reference,
        registering_agency_id=ev.registering_agency_id,
        region=ev.region,
        risk_level=ev.risk_level,
        caseworker_id=ev.caseworker_id,
    )
    if policy.review_applies(ev.risk_level):
        still_open = await store.projections.open_referrals(conn, ev.case_id)
        if still_open.count and still_open.first_sent_at is not None:
            anchor = still_open.first_sent_at
            await store.timers.ensure_review(
                conn, ev.case_id, anchor=anchor, fire_at=anchor + policy.periodic_review
            )


async def erase_case(conn: Conn, ev: CaseErasedV1, *, now: datetime) -> bool:
    """Intake erased the case: finish its timers, cancel its open follow-up checks
    (reason `erased`), drop its case projection, and record the erasure, in the
    caller's transaction. The referral projection and completed checks stay (codes,
    who, when: the audit). Recorded also for a case never seen here. False (and
    nothing changed) when the case was erased before."""
    removed = await apply_erasure(
        conn, ev, applied_at=now, remove=lambda: store.erasures.end_case(conn, ev.case_id)
    )
    return removed is not None
