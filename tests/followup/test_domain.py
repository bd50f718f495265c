"""Deadline rules, escalation ladder and report maths, without I/O."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from contracts.codes import DeadlineKind, RiskLevel
from services.followup import domain
from services.followup.app import FollowupSettings

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)


@pytest.fixture
def policy() -> domain.DeadlinePolicy:
    return FollowupSettings().policy()


def test_default_deadlines_by_urgency(policy: domain.DeadlinePolicy) -> None:
    assert policy.decide[RiskLevel.CRITICAL] == 4 * H
    assert policy.decide[RiskLevel.HIGH] == 24 * H
    assert policy.decide[RiskLevel.MEDIUM] == 72 * H
    assert policy.decide[RiskLevel.LOW] == timedelta(days=7)
    # The time to acknowledge is the referral service's (respond_by), not set here.
    assert "acknowledge_within_hours" not in FollowupSettings.model_fields
    assert policy.post_closure_followup == timedelta(days=14)
    assert policy.periodic_review == timedelta(days=7)


def test_sent_starts_acknowledge_at_the_referral_services_promise(
    policy: domain.DeadlinePolicy,
) -> None:
    plan = domain.plan_transition(
        policy,
        "referral.sent",
        urgency=RiskLevel.CRITICAL,
        occurred_at=T0,
        is_latest=True,
        respond_by=T0 + 4 * H,
    )
    assert plan.starts == (domain.DeadlineStart(DeadlineKind.ACKNOWLEDGE, T0, T0 + 4 * H),)
    sooner = domain.plan_transition(
        policy,
        "referral.sent",
        urgency=RiskLevel.LOW,
        occurred_at=T0,
        is_latest=True,
        respond_by=T0 + 2 * H,
    )
    assert sooner.starts[0].due_at == T0 + 2 * H  # a promise made to the recipient stands
    later = domain.plan_transition(
        policy,
        "referral.sent",
        urgency=RiskLevel.CRITICAL,
        occurred_at=T0,
        is_latest=True,
        respond_by=T0 + 48 * H,
    )
    assert later.starts[0].due_at == T0 + 48 * H  # ...and is not shortened here either
    assert later.milestones == {"sent_at": T0, "acknowledge_due_at": T0 + 48 * H}
    with pytest.raises(ValueError, match="respond_by"):
        domain.plan_transition(
            policy, "referral.sent", urgency=RiskLevel.HIGH, occurred_at=T0, is_latest=True
        )


def test_each_transition_finishes_what_it_satisfies(policy: domain.DeadlinePolicy) -> None:
    def plan(event_type: str) -> domain.TransitionPlan:
        return domain.plan_transition(
            policy, event_type, urgency=RiskLevel.HIGH, occurred_at=T0, is_latest=True
        )

    ack = plan("referral.acknowledged")
    assert ack.finishes == {DeadlineKind.ACKNOWLEDGE}
    assert ack.starts == (domain.DeadlineStart(DeadlineKind.DECIDE, T0, T0 + 24 * H),)
    accepted = plan("referral.accepted")
    assert accepted.finishes == {DeadlineKind.ACKNOWLEDGE, DeadlineKind.DECIDE}
    assert accepted.starts[0].kind is DeadlineKind.START_SERVICE
    assert accepted.starts[0].due_at == T0 + 72 * H
    for terminal in ("referral.rejected", "referral.cancelled", "referral.closed"):
        assert plan(terminal).finishes == set(DeadlineKind)
        assert plan(terminal).terminal
    assert plan("referral.closed").post_closure_followup_at == T0 + timedelta(days=14)
    assert plan("referral.started").finishes == set(DeadlineKind)


def test_a_stale_event_never_starts_a_deadline(policy: domain.DeadlinePolicy) -> None:
    stale = domain.plan_transition(
        policy, "referral.acknowledged", urgency=RiskLevel.HIGH, occurred_at=T0, is_latest=False
    )
    assert stale.starts == ()
    assert stale.finishes == {DeadlineKind.ACKNOWLEDGE}  # finishing is always safe
    assert stale.milestones == {"acknowledged_at": T0}


def test_escalation_ladder(policy: domain.DeadlinePolicy) -> None:
    due = T0 + 4 * H
    assert policy.escalation_at(T0, due, 1) == T0 + 4 * H
    assert policy.escalation_at(T0, due, 2) == T0 + 8 * H
    assert policy.escalation_at(T0, due, 3) is None
    first = domain.fire_deadline(policy, started_at=T0, due_at=due, level=1)
    assert first == domain.Firing(level=1, next_fire_at=T0 + 8 * H)
    assert domain.fire_deadline(policy, started_at=T0, due_at=due, level=2).next_fire_at is None
    longer = FollowupSettings(escalation_multiples=[1, 2, 3.5]).policy()
    assert longer.escalation_at(T0, due, 3) == T0 + 14 * H


@pytest.mark.parametrize("multiples", [[], [0.0], [1.0, 1.0], [2.0, 1.0]])
def test_bad_ladders_are_refused(multiples: list[float]) -> None:
    with pytest.raises(ValueError, match="escalation_multiples"):
        FollowupSettings(escalation_multiples=multiples).policy()


def test_periodic_review_after_downtime_is_one_review_not_a_burst() -> None:
    week = timedelta(days=7)
    assert domain.next_review_at(T0, week, T0 + timedelta(days=1)) == T0 + week
    assert domain.next_review_at(T0, week, T0 + timedelta(days=30)) == T0 + 5 * week


def test_reopen_rules() -> None:
    assert domain.should_reopen(service_received=False, requested=None)
    assert not domain.should_reopen(service_received=True, requested=None)
    assert not domain.should_reopen(service_received=False, requested=False)


def test_percentile_interpolates_like_percentile_cont() -> None:
    assert domain.percentile([], 50) is None
    assert domain.percentile([3.0], 90) == 3.0
    assert domain.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert domain.percentile(list(map(float, range(1, 11))), 90) == pytest.approx(9.1)


def _facts(
    frm: str,
    to: str,
    *,
    ack_h: float | None,
    close_h: float | None = None,
    outcome: str | None = None,
    overdue: bool = False,
    service: str = "shelter",
    region: str = "PE-PIU",
    sent: datetime = T0,
) -> domain.TrackedReferral:
    return domain.TrackedReferral(
        referral_id=uuid.uuid4(),
        from_agency_id=frm,
        to_agency_id=to,
        service_type=service,
        region=region,
        urgency="critical",
        sent_at=sent,
        acknowledge_due_at=sent + 4 * H,
        acknowledged_at=None if ack_h is None else sent + ack_h * H,
        closed_at=None if close_h is None else sent + close_h * H,
        outcome=outcome,
        overdue_now=overdue,
    )


def test_report_figures_for_an_agency_and_for_operations() -> None:
    facts = [
        _facts("ong-amanecer", "upe-piura", ack_h=1, close_h=48, outcome="service_provided"),
        _facts(
            "ong-amanecer",
            "cem-piura",
            ack_h=6,
            close_h=100,
            outcome="child_unreachable",
            service="violence_emergency_care",
        ),
        _facts(
            "upe-piura",
            "ong-amanecer",
            ack_h=None,
            overdue=True,
            region="PE-TUM",
            sent=T0 + timedelta(days=40),
        ),
        _facts("cem-lima", "upe-lima", ack_h=2, region="PE-LIM"),
    ]
    mine = domain.referral_report(facts, "ong-amanecer")
    totals = mine["totals"]
    assert totals["sent"] == 2
    assert totals["received"] == 1
    assert totals["acknowledged"] == 2
    assert totals["acknowledged_in_time"] == 1  # 6 h is past the 4 h deadline
    assert totals["hours_to_acknowledge"] == {"median": 3.5, "p90": 5.5}
    assert totals["hours_to_close"] == {"median": 74.0, "p90": 94.8}
    assert totals["overdue_now"] == 1
    assert totals["closed"] == 2
    assert totals["closed_with_service_provided"] == 1
    assert set(mine["by_service_type"]) == {"shelter", "violence_emergency_care"}
    assert mine["by_region"]["PE-TUM"]["received"] == 1
    assert "PE-LIM" not in mine["by_region"]  # another agencies' referral is not counted
    assert set(mine["by_period"]) == {"2026-03", "2026-04"}

    everything = domain.referral_report(facts, None)["totals"]
    assert everything["sent"] == everything["received"] == 4
    assert everything["acknowledged_in_time"] == 2
