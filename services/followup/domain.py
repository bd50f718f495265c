"""Follow-up rules, with no I/O: which deadline each referral transition starts or
finishes, when a deadline escalates, when follow-up checks fall due, and the
closed-loop report maths.

Deadlines (durations per urgency, configurable, except the first):

- referral.sent starts *acknowledge*, due at the event's `respond_by`: the referral
  service sets that promise from its own `respond_within_*_hours` and is its only
  owner (the contract makes `respond_by` required on referral.sent);
- referral.acknowledged finishes *acknowledge* and starts *decide* (from the acknowledgement);
- referral.accepted finishes acknowledge and decide, and starts *start_service*;
- referral.rejected / started / closed / cancelled finish whatever is still open.

Only the newest referral version may start a deadline; finishing always applies. A
(referral, deadline) pair has one timer ever, so a late or replayed event can never
bring a finished deadline back.

Escalation: level n fires at start + multiple[n-1] x (due - start). With the default
multiples (1, 2), level 1 fires at the deadline and level 2 at twice the deadline.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from contracts.codes import ClosureOutcome, DeadlineKind, ReferralState, RiskLevel
from contracts.events import (
    ReferralAcceptedV1,
    ReferralAcknowledgedV1,
    ReferralCancelledV1,
    ReferralClosedV1,
    ReferralRejectedV1,
    ReferralSentV1,
    ReferralStartedV1,
)

OPEN_STATES = frozenset(
    {
        ReferralState.SENT,
        ReferralState.ACKNOWLEDGED,
        ReferralState.ACCEPTED,
        ReferralState.IN_PROGRESS,
    }
)


class FollowupStatus(StrEnum):
    """A follow-up check's life (stored as `followups.status`)."""

    SCHEDULED = "scheduled"  # its timer has not fired yet
    DUE = "due"  # announced with followup.due, waiting for the caseworker
    COMPLETED = "completed"
    CANCELLED = "cancelled"  # never to be done: its case was erased (cancelled_reason)


class Granularity(StrEnum):
    """How the referral report groups by period."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"


# --- deadlines -------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadlinePolicy:
    """Follow-up's own deadlines. The acknowledge deadline is not here: it is the
    referral service's promise, `respond_by` on referral.sent."""

    decide: Mapping[RiskLevel, timedelta]
    start_service: Mapping[RiskLevel, timedelta]
    escalation_multiples: tuple[float, ...] = (1.0, 2.0)
    post_closure_followup: timedelta = timedelta(days=14)
    reopened_followup: timedelta = timedelta(days=7)
    periodic_review: timedelta = timedelta(days=7)
    review_risk_levels: frozenset[RiskLevel] = frozenset({RiskLevel.HIGH, RiskLevel.CRITICAL})

    def __post_init__(self) -> None:
        multiples = self.escalation_multiples
        if not multiples or multiples[0] <= 0:
            raise ValueError("escalation_multiples: at least one positive multiple")
        if any(b <= a for a, b in itertools.pairwise(multiples)):
            raise ValueError("escalation_multiples: must be strictly increasing")
        for name in ("decide", "start_service"):
            table: Mapping[RiskLevel, timedelta] = getattr(self, name)
            missing = set(RiskLevel) - set(table)
            if missing:
                raise ValueError(f"{name}: no duration for {sorted(missing)}")
            if any(d <= timedelta(0) for d in table.values()):
                raise ValueError(f"{name}: durations must be positive")

    @property
    def levels(self) -> int:
        return len(self.escalation_multiples)

    def escalation_at(self, started_at: datetime, due_at: datetime, level: int) -> datetime | None:
        """When escalation `level` (1-based) fires; None past the top of the ladder."""
        if level < 1 or level > self.levels:
            return None
        span = max(due_at - started_at, timedelta(0))
        return started_at + span * self.escalation_multiples[level - 1]

    def review_applies(self, risk: RiskLevel) -> bool:
        return risk in self.review_risk_levels


@dataclass(frozen=True)
class DeadlineStart:
    kind: DeadlineKind
    started_at: datetime
    due_at: datetime


@dataclass(frozen=True)
class TransitionPlan:
    """What a referral event does to the referral's deadlines and follow-ups."""

    starts: tuple[DeadlineStart, ...] = ()
    finishes: frozenset[DeadlineKind] = frozenset()
    post_closure_followup_at: datetime | None = None
    terminal: bool = False
    milestones: Mapping[str, datetime] = field(default_factory=dict)


ALL_DEADLINES = frozenset(DeadlineKind)
_RESPONDED = frozenset({DeadlineKind.ACKNOWLEDGE, DeadlineKind.DECIDE})


def plan_transition(
    policy: DeadlinePolicy,
    event_type: str,
    *,
    urgency: RiskLevel,
    occurred_at: datetime,
    is_latest: bool,
    respond_by: datetime | None = None,
) -> TransitionPlan:
    """The deadline effects of one referral event (see the module docstring).

    `is_latest` is False when a newer version of the referral was already applied:
    such an event may still finish deadlines and record milestones, never start one.
    `respond_by` is referral.sent's promise, the acknowledge deadline.
    """
    at = occurred_at
    starts: list[DeadlineStart] = []
    if event_type == ReferralSentV1.event_type:
        if respond_by is None:
            raise ValueError("referral.sent needs respond_by: it is the acknowledge deadline")
        due = respond_by
        starts.append(DeadlineStart(DeadlineKind.ACKNOWLEDGE, at, due))
        plan = TransitionPlan(milestones={"sent_at": at, "acknowledge_due_at": due})
    elif event_type == ReferralAcknowledgedV1.event_type:
        starts.append(DeadlineStart(DeadlineKind.DECIDE, at, at + policy.decide[urgency]))
        plan = TransitionPlan(
            finishes=frozenset({DeadlineKind.ACKNOWLEDGE}), milestones={"acknowledged_at": at}
        )
    elif event_type == ReferralAcceptedV1.event_type:
        starts.append(
            DeadlineStart(DeadlineKind.START_SERVICE, at, at + policy.start_service[urgency])
        )
        plan = TransitionPlan(
            finishes=_RESPONDED, milestones={"acknowledged_at": at, "decided_at": at}
        )
    elif event_type == ReferralRejectedV1.event_type:
        plan = TransitionPlan(
            finishes=ALL_DEADLINES,
            terminal=True,
            milestones={"acknowledged_at": at, "decided_at": at, "finished_at": at},
        )
    elif event_type == ReferralStartedV1.event_type:
        plan = TransitionPlan(
            finishes=ALL_DEADLINES,
            milestones={"acknowledged_at": at, "decided_at": at, "service_started_at": at},
        )
    elif event_type == ReferralClosedV1.event_type:
        plan = TransitionPlan(
            finishes=ALL_DEADLINES,
            terminal=True,
            post_closure_followup_at=at + policy.post_closure_followup,
            milestones={"closed_at": at, "finished_at": at},
        )
    elif event_type == ReferralCancelledV1.event_type:
        plan = TransitionPlan(finishes=ALL_DEADLINES, terminal=True, milestones={"finished_at": at})
    else:
        plan = TransitionPlan()
    if is_latest and starts:
        plan = TransitionPlan(
            starts=tuple(starts),
            finishes=plan.finishes,
            post_closure_followup_at=plan.post_closure_followup_at,
            terminal=plan.terminal,
            milestones=plan.milestones,
        )
    return plan


@dataclass(frozen=True)
class Firing:
    """The outcome of firing a deadline timer at one escalation level."""

    level: int
    next_fire_at: datetime | None  # None: top of the ladder reached


def fire_deadline(
    policy: DeadlinePolicy, *, started_at: datetime, due_at: datetime, level: int
) -> Firing:
    """Fire `level`; the next level is scheduled at its own time, or the ladder is done.

    Levels whose time has already passed (the service was down) are not skipped: each
    fires once, on the next pass of the loop, so nobody on the ladder is left untold.
    """
    return Firing(level=level, next_fire_at=policy.escalation_at(started_at, due_at, level + 1))


def next_review_at(previous: datetime, interval: timedelta, now: datetime) -> datetime:
    """The next periodic review after `previous`, strictly after `now`: a service that
    was down for weeks sends one review, not a burst."""
    nxt = previous + interval
    if nxt <= now:
        skipped = math.floor((now - previous) / interval)
        nxt = previous + interval * (skipped + 1)
    return nxt


# --- follow-up outcomes ----------------------------------------------------------------


def should_reopen(*, service_received: bool, requested: bool | None) -> bool:
    """A follow-up reopens when the service was not received, unless the caseworker
    says there is nothing more to follow up."""
    if requested is None:
        return not service_received
    return requested and not service_received


# --- report maths ----------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Linear-interpolated percentile (PostgreSQL percentile_cont); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class TrackedReferral:
    """What the report needs about one referral follow-up tracks (the referral
    service's own `ReferralFacts` is another thing)."""

    referral_id: UUID
    from_agency_id: str
    to_agency_id: str
    service_type: str
    region: str
    urgency: str
    sent_at: datetime
    acknowledge_due_at: datetime | None
    acknowledged_at: datetime | None
    closed_at: datetime | None
    outcome: str | None
    overdue_now: bool

    @property
    def hours_to_acknowledge(self) -> float | None:
        if self.acknowledged_at is None:
            return None
        return max((self.acknowledged_at - self.sent_at).total_seconds(), 0.0) / 3600

    @property
    def hours_to_close(self) -> float | None:
        if self.closed_at is None:
            return None
        return max((self.closed_at - self.sent_at).total_seconds(), 0.0) / 3600

    @property
    def acknowledged_in_time(self) -> bool:
        return (
            self.acknowledged_at is not None
            and self.acknowledge_due_at is not None
            and self.acknowledged_at <= self.acknowledge_due_at
        )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _median_p90(values: Sequence[float]) -> dict[str, float | None]:
    return {"median": _rounded(percentile(values, 50)), "p90": _rounded(percentile(values, 90))}


def figures(facts: Iterable[TrackedReferral], agency_id: str | None) -> dict[str, Any]:
    """The closed-loop figures over some referrals, from `agency_id`'s point of view
    (None: operations, everything). `sent`/`received` count the agency's side; every
    other figure counts each referral the agency is part of once."""
    rows = [
        f for f in facts if agency_id is None or agency_id in (f.from_agency_id, f.to_agency_id)
    ]
    ack_hours = [h for f in rows if (h := f.hours_to_acknowledge) is not None]
    close_hours = [h for f in rows if (h := f.hours_to_close) is not None]
    return {
        "sent": sum(1 for f in rows if agency_id is None or f.from_agency_id == agency_id),
        "received": sum(1 for f in rows if agency_id is None or f.to_agency_id == agency_id),
        "acknowledged": len(ack_hours),
        "acknowledged_in_time": sum(1 for f in rows if f.acknowledged_in_time),
        "hours_to_acknowledge": _median_p90(ack_hours),
        "hours_to_close": _median_p90(close_hours),
        "overdue_now": sum(1 for f in rows if f.overdue_now),
        "closed": len(close_hours),
        "closed_with_service_provided": sum(
            1
            for f in rows
            if f.closed_at is not None and f.outcome == ClosureOutcome.SERVICE_PROVIDED.value
        ),
    }


def period_key(moment: datetime, granularity: Granularity) -> str:
    moment = moment.astimezone(UTC)
    if granularity == Granularity.DAY:
        return moment.strftime("%Y-%m-%d")
    if granularity == Granularity.WEEK:
        year, week, _ = moment.isocalendar()
        return f"{year}-W{week:02d}"
    return moment.strftime("%Y-%m")


def referral_report(
    facts: Sequence[TrackedReferral],
    agency_id: str | None,
    granularity: Granularity = Granularity.MONTH,
) -> dict[str, Any]:
    """Totals, then the same figures by service type, by region and by period."""

    def grouped(key: Any) -> dict[str, Any]:
        groups: dict[str, list[TrackedReferral]] = {}
        for f in facts:
            groups.setdefault(key(f), []).append(f)
        out = {name: figures(rows, agency_id) for name, rows in sorted(groups.items())}
        return {name: figs for name, figs in out.items() if figs["sent"] or figs["received"]}

    return {
        "totals": figures(facts, agency_id),
        "by_service_type": grouped(lambda f: f.service_type),
        "by_region": grouped(lambda f: f.region),
        "by_period": grouped(lambda f: period_key(f.sent_at, granularity)),
    }
