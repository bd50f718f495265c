"""Partner webhook throughput: referral.acknowledged events on the real topic (an
event people are not messaged about, so only the partner feeds work) -> the fan-out
writes one delivery row per subscribed endpoint of the two agencies concerned ->
the delivery worker signs and posts each to a local receiver (its own process) ->
outcomes recorded in PostgreSQL. Counts what the receiver got, per second, and the
time from the event's publication to its arrival at the receiver."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from bench.common import BenchContext, Figure, Sequenced, module_process, percentile
from contracts.codes import ReferralState, RiskLevel, ServiceType
from contracts.events import ReferralAcknowledgedV1
from contracts.topics import Topic, namespaced
from services.notifications.app import NotificationsSettings, create_app
from tests.helpers import DEMO_KEYS, free_port

EVENTS = 2000
# Referrals between four pairs of agencies, in turn; each agency's system has two
# endpoints, so each event is 4 webhooks, to 16 endpoints in all (each at most
# ENLACE_WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT in flight, the production default).
PAIRS = (
    ("ong-amanecer", "upe-piura"),
    ("upe-lima", "cem-lima"),
    ("upe-tumbes", "cem-piura"),
    ("red-reencuentro", "uavt-gt"),
)
ENDPOINTS_PER_AGENCY = 2
STEADY_EVENTS_PER_SECOND = 100  # 400 webhooks/s, well below capacity
STEADY_SECONDS = 5
TARGET = 1000.0  # issue: at least 1,000 webhook deliveries per second to a local receiver


def _acknowledged(sequence: int) -> ReferralAcknowledgedV1:
    return ReferralAcknowledgedV1(
        case_id=uuid.uuid4(),
        referral_id=uuid.uuid4(),
        reference=f"PE-PIU-2026-{sequence:06d}",
        state=ReferralState.ACKNOWLEDGED,
        version=3,
        from_agency_id=PAIRS[sequence % len(PAIRS)][0],
        to_agency_id=PAIRS[sequence % len(PAIRS)][1],
        service_id="upe-piura-proteccion",
        service_type=ServiceType.SPECIAL_PROTECTION,
        urgency=RiskLevel.HIGH,
        case_country="PE",
        case_region="PE-PIU",
        service_country="PE",
        cross_border=False,
        occurred_at=datetime.now(UTC),
    )


async def run(ctx: BenchContext) -> list[Figure]:
    receiver_port, api_port = free_port(), free_port()
    dsn = await ctx.make_database("notifications")
    settings = NotificationsSettings(
        **ctx.settings("notifications"),
        database_url=dsn,
        http_port=api_port,
        internal_api_key=DEMO_KEYS["svc-notifications"],
        worker_poll_seconds=0.2,
        webhook_max_in_flight=128,
        webhook_max_connections=128,
        db_pool_max=20,
        log_level="WARNING",
    )
    async with module_process(
        "bench.webhook_receiver", "--port", str(receiver_port), port=receiver_port
    ):
        app = create_app(settings)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://notifications"
            ) as api,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{receiver_port}") as receiver,
        ):
            for agency in (a for pair in PAIRS for a in pair):
                for _ in range(ENDPOINTS_PER_AGENCY):
                    created = await api.post(
                        "/v1/webhook-endpoints",
                        json={
                            "url": f"http://127.0.0.1:{receiver_port}/hooks",
                            "event_types": ["referral.acknowledged"],
                        },
                        headers={"Authorization": f"Bearer {DEMO_KEYS[agency]}"},
                    )
                    created.raise_for_status()
            return await _measure(ctx, dsn, receiver)


async def _measure(ctx: BenchContext, dsn: str, receiver: httpx.AsyncClient) -> list[Figure]:
    # Written as the referral service writes it: its principal and its ce_source.
    producer = AIOKafkaProducer(**ctx.service_kafka("referral").aiokafka(), acks="all", linger_ms=5)
    await producer.start()
    topic = namespaced(ctx.namespace, Topic.REFERRALS)
    fanout = 2 * ENDPOINTS_PER_AGENCY

    publish = Sequenced(producer, topic, _acknowledged).publish

    async def received() -> int:
        count: int = (await receiver.get("/stats")).json()["count"]
        return count

    async def wait_received(count: int, within: float) -> None:
        deadline = time.perf_counter() + within
        while await received() < count and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)  # the receiver is another process: poll it

    try:
        await publish(1)  # warm-up: consumer group joined, connections open
        await wait_received(fanout, 30)
        warm = await received()
        started = time.perf_counter()
        await publish(EVENTS)
        await wait_received(warm + EVENTS * fanout, 60)
        elapsed = time.perf_counter() - started
        stats = (await receiver.get("/stats")).json()
        burst = (await receiver.get("/latencies")).json()[warm:]
        # Latency at a steady rate below capacity (a burst measures its own queue).
        before = await received()
        for _ in range(STEADY_SECONDS * STEADY_EVENTS_PER_SECOND // 10):
            tick = time.perf_counter()
            await publish(10)
            await asyncio.sleep(
                max(0.0, 10 / STEADY_EVENTS_PER_SECOND - (time.perf_counter() - tick))
            )
        steady_total = STEADY_SECONDS * STEADY_EVENTS_PER_SECOND * fanout
        await wait_received(before + steady_total, 60)
        steady = (await receiver.get("/latencies")).json()[before:]
    finally:
        await producer.stop()
    conn = await asyncpg.connect(dsn)
    try:
        sent = await conn.fetchval(
            "SELECT count(*) FROM deliveries WHERE channel = 'webhook' AND status = 'sent'"
        )
    finally:
        await conn.close()
    delivered = stats["count"] - warm
    expected = EVENTS * fanout
    rate = delivered / elapsed
    return [
        Figure(
            "webhooks: deliveries/s to a local receiver (4 per event)",
            rate,
            "deliv/s",
            f">= {TARGET:.0f}/s",
            rate >= TARGET and delivered >= expected,
        ),
        Figure(
            "webhooks: deliveries received, each webhook-id once",
            stats["distinct"] - fanout,
            "deliv",
            f"= {expected}",
            delivered == expected and stats["distinct"] == stats["count"],
        ),
        Figure(
            "webhooks: deliveries recorded as sent",
            sent - fanout,
            "rows",
            f"= {expected + steady_total}",
            sent - fanout == expected + steady_total,
        ),
        Figure("webhooks: burst p50 event on the topic -> received", _ms(burst, 50), "ms"),
        Figure("webhooks: burst p99 event on the topic -> received", _ms(burst, 99), "ms"),
        Figure(
            f"webhooks: p50 at {STEADY_EVENTS_PER_SECOND * fanout}/s event -> received",
            _ms(steady, 50),
            "ms",
        ),
        Figure(
            f"webhooks: p99 at {STEADY_EVENTS_PER_SECOND * fanout}/s event -> received",
            _ms(steady, 99),
            "ms",
        ),
    ]


def _ms(latencies: list[float], pct: float) -> float:
    return percentile(latencies, pct) * 1000
