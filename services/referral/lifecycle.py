"""Referral writes with their events, shared by the partner API and the event
handlers. Callers hold the case lock (`store.lock_case`) and the transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from contracts.codes import CancellationReason, ClosureOutcome, ReferralState, RejectionReason
from contracts.events import ReferralEventV1, ReferralProposedV1, ReferralSentV1
from contracts.registry import to_cloud_event
from contracts.topics import Topic
from services.kit.db import Conn
from services.kit.outbox import enqueue
from services.referral import store
from services.referral.domain import (
    TRANSITIONS,
    Action,
    CaseProfile,
    Deadlines,
    PlannedReferral,
    ReferralFacts,
    facts_for,
    next_state,
)


async def publish(
    conn: Conn, events: list[ReferralEventV1] | list[Any], *, source: str, traceparent: str | None
) -> None:
    await enqueue(
        conn,
        Topic.REFERRALS,
        *(to_cloud_event(e, source=source, traceparent=traceparent) for e in events),
    )


def initial_event(new: store.NewReferral) -> ReferralEventV1:
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


def new_from_plan(
    case: CaseProfile,
    planned: PlannedReferral,
    *,
    now: datetime,
    deadlines: Deadlines,
    referral_id: UUID | None = None,
) -> store.NewReferral:
    state = ReferralState.SENT if planned.send_now else ReferralState.PROPOSED
    return store.NewReferral(
        facts=facts_for(case, planned, referral_id or uuid4()),
        state=state,
        routing_rule=planned.rule_id,
        mandatory=planned.mandatory,
        respond_by=deadlines.respond_by(planned.urgency, now) if planned.send_now else None,
        best_interest=None,
        created_at=now,
    )


def new_by_hand(
    facts: ReferralFacts,
    *,
    now: datetime,
    deadlines: Deadlines,
    best_interest: dict[str, Any] | None,
) -> store.NewReferral:
    return store.NewReferral(
        facts=facts,
        state=ReferralState.SENT,
        routing_rule=None,
        mandatory=False,
        respond_by=deadlines.respond_by(facts.urgency, now),
        best_interest=best_interest,
        created_at=now,
    )


async def transition(
    conn: Conn,
    referral: store.StoredReferral,
    action: Action,
    *,
    now: datetime,
    deadlines: Deadlines,
    source: str,
    traceparent: str | None,
    rejection_reason: RejectionReason | None = None,
    outcome: ClosureOutcome | None = None,
    cancellation_reason: CancellationReason | None = None,
    best_interest: dict[str, Any] | None = None,
) -> store.StoredReferral:
    """Apply one lifecycle step and enqueue its event; raises TransitionNotAllowed."""
    state = next_state(referral.state, action)
    respond_by = (
        deadlines.respond_by(referral.facts.urgency, now) if state is ReferralState.SENT else None
    )
    updated = await store.save_transition(
        conn,
        referral,
        state=state,
        at=now,
        respond_by=respond_by,
        rejection_reason=rejection_reason.value if rejection_reason else None,
        closure_outcome=outcome.value if outcome else None,
        cancellation_reason=cancellation_reason.value if cancellation_reason else None,
        best_interest=best_interest,
    )
    extra: dict[str, Any] = {}
    if action is Action.CONFIRM:
        extra = {
            "routing_rule": updated.routing_rule,
            "mandatory": updated.mandatory,
            "respond_by": respond_by,
        }
    elif action is Action.REJECT:
        extra = {"reason": rejection_reason}
    elif action is Action.CLOSE:
        extra = {"outcome": outcome}
    elif action is Action.CANCEL:
        extra = {"reason": cancellation_reason}
    event = updated.facts.event(
        TRANSITIONS[action].event, state=state, version=updated.version, occurred_at=now, **extra
    )
    await publish(conn, [event], source=source, traceparent=traceparent)
    return updated
