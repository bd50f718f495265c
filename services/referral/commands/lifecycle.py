"""The lifecycle step: one party moves a referral along `TRANSITIONS`, and the
event saying so is written to the outbox in the same transaction.

`apply_step` is the write itself, shared with the consent-withdrawal and erasure
use cases (which cancel on the sender's behalf); `take_step` is the partner's use case
around it, with its refusals in this order: unknown or not a party (NotFound), the
other party's step (NotPermitted), a stale If-Match (StaleVersion), a step on a
case that was erased (Conflict, reason `case_erased`), a step the current state does
not allow (Conflict, naming `current_state` and `allowed_from`), and for a
confirmation, consent (Conflict).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from contracts.codes import ReferralState
from contracts.envelope import new_traceparent
from contracts.events import ReferralEventV1, ReferralProposedV1, ReferralSentV1
from contracts.registry import to_cloud_event
from contracts.topics import Topic
from services.kit.db import Conn, Pool
from services.kit.errors import Conflict, NotFound, NotPermitted, StaleVersion
from services.kit.logging import get_logger
from services.kit.outbox import enqueue
from services.referral import store
from services.referral.commands.context import Context, Versions
from services.referral.commands.guards import check_consent, check_decision, check_not_erased
from services.referral.domain.lifecycle import (
    TRANSITIONS,
    Action,
    StepDetails,
    TransitionNotAllowed,
    next_state,
)

log = get_logger(__name__)


@dataclass(frozen=True)
class TakeStep:
    referral_id: UUID
    agency_id: str
    action: Action
    details: StepDetails = field(default_factory=StepDetails)
    expected: Versions | None = None  # the caller's If-Match, if any
    trace_id: str | None = None


async def publish(
    conn: Conn, events: Sequence[Any], *, source: str, traceparent: str | None
) -> None:
    """Write referral-topic events to the outbox, in the caller's transaction."""
    await enqueue(
        conn,
        Topic.REFERRALS,
        *(to_cloud_event(e, source=source, traceparent=traceparent) for e in events),
    )


def initial_event(new: store.NewReferral) -> ReferralEventV1:
    """`referral.sent` for a referral sent at once, else `referral.proposed`."""
    if new.state is ReferralState.SENT:
        assert new.respond_by is not None
        return new.facts.event(
            ReferralSentV1,
            state=new.state,
            version=1,
            occurred_at=new.created_at,
            routing_rule=new.routing_rule,
            mandatory=new.mandatory,
            respond_by=new.respond_by,
        )
    assert new.routing_rule is not None
    return new.facts.event(
        ReferralProposedV1,
        state=new.state,
        version=1,
        occurred_at=new.created_at,
        routing_rule=new.routing_rule,
    )


async def apply_step(
    conn: Conn,
    ctx: Context,
    referral: store.StoredReferral,
    action: Action,
    *,
    now: datetime,
    traceparent: str | None,
    details: StepDetails,
) -> store.StoredReferral:
    """Save one lifecycle step and enqueue its event. The caller holds the case lock
    and has checked the step is allowed (raises TransitionNotAllowed otherwise)."""
    state = next_state(referral.state, action)
    respond_by = (
        ctx.deadlines.respond_by(referral.facts.urgency, now)
        if state is ReferralState.SENT
        else None
    )
    decision = details.best_interest
    updated = await store.save_transition(
        conn,
        referral,
        state=state,
        at=now,
        respond_by=respond_by,
        rejection_reason=details.rejection_reason,
        closure_outcome=details.outcome,
        cancellation_reason=details.cancellation_reason,
        best_interest=decision.model_dump(mode="json") if decision else None,
    )
    extra: dict[str, Any] = {}
    if action is Action.CONFIRM:
        extra = {
            "routing_rule": updated.routing_rule,
            "mandatory": updated.mandatory,
            "respond_by": respond_by,
        }
    elif action is Action.REJECT:
        extra = {"reason": details.rejection_reason}
    elif action is Action.CLOSE:
        extra = {"outcome": details.outcome}
    elif action is Action.CANCEL:
        extra = {"reason": details.cancellation_reason}
    event = updated.facts.event(
        TRANSITIONS[action].event, state=state, version=updated.version, occurred_at=now, **extra
    )
    await publish(conn, [event], source=ctx.source, traceparent=traceparent)
    return updated


async def take_step(pool: Pool, ctx: Context, command: TakeStep) -> store.StoredReferral:
    """A party's lifecycle step; the referral as it is now."""
    now = ctx.clock.now()
    action, transition = command.action, TRANSITIONS[command.action]
    check_decision(command.details.best_interest, now)
    async with store.transaction(pool) as conn:
        referral = await store.get_referral(conn, command.referral_id)
        if referral is None or referral.party_of(command.agency_id) is None:
            raise NotFound("referral")
        case = await store.lock_case(conn, referral.case_id)
        referral = await store.get_referral(conn, command.referral_id)  # again, under the lock
        assert referral is not None
        assert case is not None
        if referral.party_of(command.agency_id) is not transition.party:
            raise NotPermitted(
                "Not your step",
                f"Only the {transition.party.value} agency can {action.value} a referral.",
            )
        version = referral.version
        if command.expected is not None and not command.expected.include(version):
            raise StaleVersion(
                "Stale version",
                f'The referral is at version {version} (ETag "{version}"); read it again.',
                current_version=version,
            )
        check_not_erased(case.erased_at)
        try:
            next_state(referral.state, action)
        except TransitionNotAllowed as exc:
            raise Conflict(
                "Transition not allowed",
                str(exc),
                current_state=exc.current.value,
                allowed_from=[s.value for s in exc.allowed_from],
            ) from None
        if action is Action.CONFIRM:
            check_consent(
                case.event.consent,
                referral.facts.service_type,
                withdrawn=case.consent_withdrawn_at is not None,
                decided=command.details.best_interest is not None
                or referral.best_interest is not None,
            )
        updated = await apply_step(
            conn,
            ctx,
            referral,
            action,
            now=now,
            traceparent=new_traceparent(command.trace_id),
            details=command.details,
        )
    log.info(
        "referral transition",
        referral_id=str(command.referral_id),
        action=action.value,
        state=updated.state.value,
        version=updated.version,
        agency_id=command.agency_id,
    )
    return updated
