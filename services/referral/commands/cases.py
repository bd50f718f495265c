"""What referral does when intake publishes about a case: route a new case, cancel
its open referrals when consent is withdrawn, and when the case is erased cancel
them too and remove what identifies a person (see `erase_case`).

All run in the caller's transaction (the kit consumer records the event id beside
their effects) and take the case lock first, so a case's events leave in commit
order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from contracts.codes import CancellationReason, ReferralState
from contracts.envelope import new_traceparent
from contracts.events import CaseCreatedV1, CaseErasedV1, ReferralUnmetNeedV1
from services.kit.db import Conn
from services.kit.erasures import apply_erasure
from services.kit.logging import get_logger
from services.referral import store
from services.referral.commands.context import Context
from services.referral.commands.lifecycle import apply_step, initial_event, publish
from services.referral.domain.case import CaseProfile
from services.referral.domain.lifecycle import Action, StepDetails
from services.referral.domain.routing import (
    PlannedReferral,
    RoutingPlan,
    plan_routing,
    referral_facts,
)

log = get_logger(__name__)


@dataclass(frozen=True)
class RouteCase:
    case: CaseCreatedV1
    data: dict[str, Any]  # the event's data as received, kept as the case's profile
    trace_id: str | None = None


async def route_case(conn: Conn, ctx: Context, command: RouteCase) -> RoutingPlan | None:
    """Make the referrals the routing rules ask for and report unmet needs; None
    (and nothing written) when the case was routed before, under any event id, or
    was erased (a replay must not bring an erased case back)."""
    await ctx.directory.wait_loaded()
    now = ctx.clock.now()
    case = CaseProfile.from_event(command.case)
    plan = plan_routing(case, ctx.rules, ctx.directory.offers)
    new = [_new_referral(ctx, case, planned, now) for planned in plan.referrals]
    # The case row is also the case lock; a case seen before (the same case.created
    # under another event id) was routed then and is not routed again, and an erased
    # one never (case.created and case.erased share the case's partition).
    if not await store.insert_routed_case(conn, command.data, command.case, new, now):
        log.info("case routed before or erased: not routed", case_id=str(case.case_id))
        return None
    unmet = [
        ReferralUnmetNeedV1(
            case_id=case.case_id,
            reference=case.reference,
            registering_agency_id=case.registering_agency_id,
            service_type=u.service_type,
            country=case.country,
            region=case.region,
            urgency=u.urgency,
            reason=u.reason.value,
            occurred_at=now,
        )
        for u in plan.unmet
    ]
    await publish(
        conn,
        [*(initial_event(n) for n in new), *unmet],
        source=ctx.source,
        traceparent=new_traceparent(command.trace_id),
    )
    for n in new:
        ctx.metrics.referrals_created.labels(n.state.value, n.facts.service_type.value).inc()
    for u in plan.unmet:
        ctx.metrics.unmet_needs.labels(u.service_type.value, case.country, u.reason.value).inc()
    log.debug(
        "case routed",
        case_id=str(case.case_id),
        reference=case.reference,
        sent=sum(n.state is ReferralState.SENT for n in new),
        proposed=sum(n.state is ReferralState.PROPOSED for n in new),
        unmet=[u.service_type.value for u in plan.unmet],
        served_internally=[t.value for t in plan.served_internally],
    )
    return plan


def _new_referral(
    ctx: Context, case: CaseProfile, planned: PlannedReferral, now: datetime
) -> store.NewReferral:
    """Sent at once when mandatory and covered by consent, else proposed."""
    return store.NewReferral(
        facts=referral_facts(case, planned.offer, planned.urgency, uuid4()),
        state=ReferralState.SENT if planned.send_now else ReferralState.PROPOSED,
        routing_rule=planned.rule_id,
        mandatory=planned.mandatory,
        respond_by=ctx.deadlines.respond_by(planned.urgency, now) if planned.send_now else None,
        best_interest=None,
        created_at=now,
    )


@dataclass(frozen=True)
class WithdrawConsent:
    case_id: UUID
    withdrawn_at: datetime
    trace_id: str | None = None


async def withdraw_consent(conn: Conn, ctx: Context, command: WithdrawConsent) -> int:
    """Record the withdrawal (which stops every further disclosure) and cancel the
    case's open referrals on the sender's behalf; returns how many were cancelled."""
    case = await store.lock_case(conn, command.case_id)
    if case is None:
        log.info("consent withdrawn for a case never routed here", case_id=str(command.case_id))
        return 0
    await store.mark_consent_withdrawn(conn, case.case_id, command.withdrawn_at)
    cancelled = await _cancel_open_referrals(
        conn, ctx, case.case_id, CancellationReason.CONSENT_WITHDRAWN, command.trace_id
    )
    log.info(
        "consent withdrawn: open referrals cancelled",
        case_id=str(case.case_id),
        cancelled=cancelled,
    )
    return cancelled


async def _cancel_open_referrals(
    conn: Conn, ctx: Context, case_id: UUID, reason: CancellationReason, trace_id: str | None
) -> int:
    """Cancel every open referral of the case on the sender's behalf, each with its
    referral.cancelled in the outbox; the caller holds the case lock. How many."""
    now = ctx.clock.now()
    traceparent = new_traceparent(trace_id)
    cancelled = 0
    for referral in await store.open_referrals_of_case(conn, case_id):
        await apply_step(
            conn,
            ctx,
            referral,
            Action.CANCEL,
            now=now,
            traceparent=traceparent,
            details=StepDetails(cancellation_reason=reason),
        )
        cancelled += 1
    return cancelled


@dataclass(frozen=True)
class EraseCase:
    erased: CaseErasedV1
    trace_id: str | None = None


async def erase_case(conn: Conn, ctx: Context, command: EraseCase) -> bool:
    """Intake erased the case: cancel its open referrals (reason `erased`), empty its
    profile, drop the free text typed about it, and record the erasure, which from
    then on refuses new referrals, further steps and disclosure. Referral rows, their
    states and codes, and the disclosure audit stay. Recorded also for a case never
    routed here, so a later case.created cannot bring it back. False (and nothing
    changed) when the case was erased before."""
    case = await store.lock_case(conn, command.erased.case_id)

    async def remove() -> dict[str, int]:
        removed = {"referrals_cancelled": 0, "profile": 0, "best_interest_reasons": 0}
        if case is not None:
            removed["referrals_cancelled"] = await _cancel_open_referrals(
                conn, ctx, case.case_id, CancellationReason.ERASED, command.trace_id
            )
            removed |= await store.scrub_case(conn, case.case_id)
        return removed

    removed = await apply_erasure(conn, command.erased, applied_at=ctx.clock.now(), remove=remove)
    if removed is None:
        return False
    ctx.metrics.erasures.labels("routed" if case is not None else "never_routed").inc()
    return True
