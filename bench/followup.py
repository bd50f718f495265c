"""Follow-up bench: due-timer throughput.

N referral deadlines are stored due (as the referral.sent handler would store them),
the injected clock is moved past them, and the service's own timer loop fires them:
claim with SKIP LOCKED, advance the ladder, enqueue referral.overdue in the same
transaction; the kit relay publishes. The figure is N over the time until every timer
has fired and the outbox is empty (every event acknowledged by the broker).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from bench.common import BenchContext, Figure
from services.followup.app import FollowupSettings, create_app
from services.kit.clock import MovableClock

TIMERS = 10_000
TARGET = 2_000.0
# Far in the past, so no referral another bench section sends is due in this window.
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)


async def _store_due_referrals(dsn: str, count: int) -> list[uuid.UUID]:
    referral_ids = [uuid.uuid4() for _ in range(count)]
    case_ids = [uuid.uuid4() for _ in range(count)]
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(
                """INSERT INTO referrals (referral_id, case_id, reference, state, version,
                       from_agency_id, to_agency_id, service_id, service_type, urgency,
                       case_country, case_region, service_country, cross_border, sent_at,
                       acknowledge_due_at)
                   SELECT r, c, 'PE-PIU-2026-' || lpad(n::text, 6, '0'), 'sent', 2,
                          'ong-amanecer', 'upe-piura', 'upe-piura-proteccion',
                          'special_protection', 'critical', 'PE', 'PE-PIU', 'PE', false,
                          $3::timestamptz, $3::timestamptz + interval '4 hours'
                   FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS u(r, c, n)""",
                referral_ids,
                case_ids,
                T0,
            )
            await conn.execute(
                """INSERT INTO timers (timer_id, kind, case_id, referral_id, deadline,
                                       started_at, due_at, fire_at)
                   SELECT gen_random_uuid(), 'deadline', c, r, 'acknowledge', $3::timestamptz,
                          $3::timestamptz + interval '4 hours', $3::timestamptz + interval '4 hours'
                   FROM unnest($1::uuid[], $2::uuid[]) AS u(r, c)""",
                referral_ids,
                case_ids,
                T0,
            )
    finally:
        await conn.close()
    return referral_ids


async def run(ctx: BenchContext) -> list[Figure]:
    dsn = await ctx.make_database("followup")
    clock = MovableClock(T0)
    settings = FollowupSettings(
        **ctx.settings("followup"),
        database_url=dsn,
        log_level="WARNING",
        timer_poll_seconds=0.2,
        report_metrics_refresh_seconds=3600,
    )
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        referral_ids = await _store_due_referrals(dsn, TIMERS)
        probe = await asyncpg.connect(dsn)
        try:
            clock.set(T0 + timedelta(hours=4, minutes=1))
            started = time.perf_counter()
            app.state.timers.wake()
            deadline = started + 50
            all_fired_after: float | None = None
            while time.perf_counter() < deadline:
                fired = await probe.fetchval(
                    "SELECT count(*) FROM timers WHERE referral_id = ANY($1) AND fired_count > 0",
                    referral_ids,
                )
                if fired == TIMERS and all_fired_after is None:
                    all_fired_after = time.perf_counter() - started
                if fired == TIMERS and await probe.fetchval("SELECT count(*) FROM outbox") == 0:
                    break
                await asyncio.sleep(0.02)
            elapsed = time.perf_counter() - started
            fired = await probe.fetchval(
                "SELECT count(*) FROM timers WHERE referral_id = ANY($1) AND fired_count > 0",
                referral_ids,
            )
        finally:
            await probe.close()
    rate = fired / elapsed if fired == TIMERS else 0.0
    return [
        Figure(
            f"followup: due timers fired + published ({TIMERS:,})",
            rate,
            "timers/s",
            f">= {TARGET:,.0f} timers/s",
            rate >= TARGET,
        ),
        Figure(
            "followup: time to fire them all (committed with their outbox rows)",
            all_fired_after or float("nan"),
            "s",
        ),
        Figure("followup: time to fire and publish them all", elapsed, "s"),
    ]
