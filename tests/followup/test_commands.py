"""Follow-up's use cases against a real PostgreSQL database, without HTTP or Kafka:
what referral and case events do to the timers, and how follow-up checks are
read and completed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from contracts.codes import FollowupKind, RiskLevel
from contracts.events import CaseCreatedV1, ReferralEventV1
from services.followup import commands, domain
from services.followup.app import MIGRATIONS, FollowupSettings
from services.followup.domain import FollowupStatus
from services.kit.clock import MovableClock
from services.kit.db import create_pool, migrate
from services.kit.errors import Conflict, InvalidField, NotFound
from tests.followup.conftest import T0, Referral

H = timedelta(hours=1)
DAY = timedelta(days=1)
SOURCE = "/enlace/followup"


@pytest.fixture(scope="module")
async def pool(databases: Callable[[str], Any]) -> AsyncIterator[asyncpg.Pool]:
    created = await create_pool(await databases("followup"), min_size=1, max_size=4)
    await migrate(created, MIGRATIONS, "followup")
    yield created
    await created.close()


@pytest.fixture(scope="module")
def policy() -> domain.DeadlinePolicy:
    return FollowupSettings().policy()


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(T0)


async def apply(
    pool: asyncpg.Pool, policy: domain.DeadlinePolicy, *events: ReferralEventV1 | CaseCreatedV1
) -> None:
    """Each event in a transaction of its own, as the kit consumer applies it."""
    for ev in events:
        async with pool.acquire() as conn, conn.transaction():
            if isinstance(ev, CaseCreatedV1):
                await commands.record_case(conn, ev, policy=policy)
            else:
                await commands.apply_referral_event(conn, ev, policy=policy)


async def timers_of(pool: asyncpg.Pool, referral: Referral) -> dict[str, asyncpg.Record]:
    rows = await pool.fetch(
        "SELECT * FROM timers WHERE kind = 'deadline' AND referral_id = $1", referral.referral_id
    )
    return {r["deadline"]: r for r in rows}


async def closed_referral_followup(
    pool: asyncpg.Pool, policy: domain.DeadlinePolicy, referral: Referral
) -> uuid.UUID:
    """The post-closure check a closed referral schedules for the referring agency."""
    await apply(
        pool,
        policy,
        referral.sent(T0),
        referral.acknowledged(T0 + H),
        referral.accepted(T0 + 2 * H),
        referral.closed(T0 + DAY),
    )
    followup_id: uuid.UUID = await pool.fetchval(
        "SELECT followup_id FROM followups WHERE origin = $1", f"closure:{referral.referral_id}"
    )
    return followup_id


def outcome(followup_id: uuid.UUID, agency_id: str, **changes: Any) -> commands.CompleteFollowup:
    fields: dict[str, Any] = dict(
        followup_id=followup_id,
        agency_id=agency_id,
        child_reached=True,
        service_received=True,
        current_risk=RiskLevel.MEDIUM,
    )
    return commands.CompleteFollowup(**{**fields, **changes})


async def test_acknowledging_a_sent_referral_finishes_its_acknowledge_timer(
    pool: asyncpg.Pool, policy: domain.DeadlinePolicy
) -> None:
    referral = Referral(urgency=RiskLevel.CRITICAL)
    await apply(pool, policy, referral.sent(T0))
    (acknowledge,) = (await timers_of(pool, referral)).values()
    assert (acknowledge["deadline"], acknowledge["status"]) == ("acknowledge", "pending")

    await apply(pool, policy, referral.acknowledged(T0 + H))
    timers = await timers_of(pool, referral)
    assert (timers["acknowledge"]["status"], timers["acknowledge"]["finished_by"]) == (
        "finished",
        "referral.acknowledged",
    )
    assert timers["decide"]["status"] == "pending"
    assert timers["decide"]["due_at"] == T0 + H + policy.decide[RiskLevel.CRITICAL]


async def test_the_acknowledge_deadline_is_the_referral_services_promise(
    pool: asyncpg.Pool, policy: domain.DeadlinePolicy
) -> None:
    referral = Referral(urgency=RiskLevel.CRITICAL)
    await apply(pool, policy, referral.sent(T0, respond_within=48 * H))
    timers = await timers_of(pool, referral)
    assert timers["acknowledge"]["due_at"] == T0 + 48 * H
    assert (
        await pool.fetchval(
            "SELECT acknowledge_due_at FROM referrals WHERE referral_id = $1",
            referral.referral_id,
        )
        == T0 + 48 * H
    )


async def test_a_replayed_older_event_changes_nothing(
    pool: asyncpg.Pool, policy: domain.DeadlinePolicy
) -> None:
    referral = Referral(urgency=RiskLevel.HIGH)
    sent = referral.sent(T0)
    await apply(pool, policy, sent, referral.acknowledged(T0 + H))

    async def state() -> list[asyncpg.Record]:
        return [
            *await pool.fetch(
                "SELECT * FROM referrals WHERE referral_id = $1", referral.referral_id
            ),
            *await pool.fetch(
                "SELECT * FROM timers WHERE referral_id = $1 ORDER BY deadline",
                referral.referral_id,
            ),
        ]

    before = await state()
    await apply(pool, policy, sent)
    assert await state() == before


async def test_case_created_after_the_referral_starts_the_periodic_review(
    pool: asyncpg.Pool, policy: domain.DeadlinePolicy
) -> None:
    referral = Referral(urgency=RiskLevel.MEDIUM)
    await apply(pool, policy, referral.sent(T0))
    review = "SELECT fire_at FROM timers WHERE kind = 'review' AND case_id = $1"
    assert await pool.fetchval(review, referral.case_id) is None  # a medium referral alone

    await apply(pool, policy, referral.case_created(T0 - H, RiskLevel.CRITICAL))
    assert await pool.fetchval(review, referral.case_id) == T0 + policy.periodic_review


async def test_completing_twice_is_a_conflict(
    pool: asyncpg.Pool, policy: domain.DeadlinePolicy, clock: MovableClock
) -> None:
    referral = Referral()
    followup_id = await closed_referral_followup(pool, policy, referral)
    clock.advance(15 * DAY)
    async with pool.acquire() as conn:
        done = await commands.complete_followup(
            conn,
            outcome(followup_id, referral.from_agency),
            policy=policy,
            clock=clock,
            source=SOURCE,
        )
        with pytest.raises(Conflict) as again:
            await commands.complete_followup(
                conn,
                outcome(followup_id, referral.from_agency, current_risk=RiskLevel.HIGH),
                policy=policy,
                clock=clock,
                source=SOURCE,
            )
    assert again.value.title == "Already completed"
    assert (done.status, done.completed_at, done.reopened_as) == (
        FollowupStatus.COMPLETED,
        clock.now(),
        None,
    )
    assert done.current_risk is RiskLevel.MEDIUM  # the second outcome was not recorded
    events = await pool.fetch(
        "SELECT event_type FROM outbox WHERE subject = $1", str(referral.case_id)
    )
    assert [e["event_type"] for e in events] == ["followup.completed"]
    timer = await pool.fetchrow(
        "SELECT status, finished_by FROM timers WHERE followup_id = $1", followup_id
    )
    assert timer is not None
    assert (timer["status"], timer["finished_by"]) == ("finished", "followup.completed")


async def test_another_agencys_followup_is_not_found(
    pool: asyncpg.Pool, policy: domain.DeadlinePolicy, clock: MovableClock
) -> None:
    referral = Referral()
    followup_id = await closed_referral_followup(pool, policy, referral)
    async with pool.acquire() as conn:
        with pytest.raises(NotFound) as other:
            await commands.complete_followup(
                conn,
                outcome(followup_id, referral.to_agency),
                policy=policy,
                clock=clock,
                source=SOURCE,
            )
        with pytest.raises(NotFound) as missing:
            await commands.complete_followup(
                conn,
                outcome(uuid.uuid4(), referral.to_agency),
                policy=policy,
                clock=clock,
                source=SOURCE,
            )
        with pytest.raises(NotFound):
            await commands.read_followup(conn, followup_id, referral.to_agency)
        mine = await commands.read_followup(conn, followup_id, referral.from_agency)
    assert other.value.detail == missing.value.detail == "No such follow-up."
    assert (mine.kind, mine.status) == (FollowupKind.POST_CLOSURE_CHECK, FollowupStatus.SCHEDULED)


async def test_a_service_not_received_reopens_a_check_a_week_later(
    pool: asyncpg.Pool, policy: domain.DeadlinePolicy, clock: MovableClock
) -> None:
    referral = Referral(from_agency=f"agency-{uuid.uuid4().hex[:8]}")
    followup_id = await closed_referral_followup(pool, policy, referral)
    clock.advance(15 * DAY)
    async with pool.acquire() as conn:
        done = await commands.complete_followup(
            conn,
            outcome(
                followup_id,
                referral.from_agency,
                service_received=False,
                current_risk=RiskLevel.HIGH,
            ),
            policy=policy,
            clock=clock,
            source=SOURCE,
        )
        assert done.reopened_as is not None
        reopened = await commands.read_followup(conn, done.reopened_as, referral.from_agency)
        scheduled = await commands.list_followups(
            conn, referral.from_agency, FollowupStatus.SCHEDULED
        )
    assert reopened.reopened_from == followup_id
    assert (reopened.due_at, reopened.risk_level) == (
        clock.now() + policy.reopened_followup,
        RiskLevel.HIGH,
    )
    assert [f.followup_id for f in scheduled] == [done.reopened_as]


async def test_outcomes_that_cannot_be_recorded_name_the_field(
    pool: asyncpg.Pool, policy: domain.DeadlinePolicy, clock: MovableClock
) -> None:
    referral = Referral()
    followup_id = await closed_referral_followup(pool, policy, referral)
    refused: list[str] = []
    for bad in (
        outcome(followup_id, referral.from_agency, completed_at=clock.now() + H),
        outcome(followup_id, referral.from_agency, completed_at=T0.replace(tzinfo=None)),
        outcome(followup_id, referral.from_agency, reopen=True),  # the service was received
    ):
        async with pool.acquire() as conn:
            with pytest.raises(InvalidField) as error:
                await commands.complete_followup(
                    conn, bad, policy=policy, clock=clock, source=SOURCE
                )
        refused.append(error.value.field)
    assert refused == ["completed_at", "completed_at", "reopen"]
    status = await pool.fetchval("SELECT status FROM followups WHERE followup_id = $1", followup_id)
    assert status == "scheduled"


async def test_the_report_counts_the_agencys_side(
    pool: asyncpg.Pool, policy: domain.DeadlinePolicy
) -> None:
    sender = f"agency-{uuid.uuid4().hex[:8]}"
    on_time, late = Referral(from_agency=sender), Referral(from_agency=sender)
    await apply(
        pool,
        policy,
        on_time.sent(T0),
        on_time.acknowledged(T0 + H),
        late.sent(T0),
        late.acknowledged(T0 + 5 * H),
    )
    query = commands.ReportQuery(agency_id=sender, every_agency=False)
    async with pool.acquire() as conn:
        report = await commands.referral_report(conn, query, now=T0 + DAY)
        with pytest.raises(InvalidField) as backwards:
            await commands.referral_report(
                conn,
                commands.ReportQuery(
                    agency_id=sender, every_agency=False, period_from=T0, period_to=T0 - DAY
                ),
                now=T0 + DAY,
            )
    totals = report.figures["totals"]
    assert report.scope == sender
    assert (totals["sent"], totals["acknowledged"], totals["acknowledged_in_time"]) == (2, 2, 1)
    assert backwards.value.field == "query.period_from"
