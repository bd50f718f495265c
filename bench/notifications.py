"""Notification throughput: referral.sent events on the real topic -> delivery rows ->
SMS through the local Twilio-compatible server and email through the local aiosmtpd
server (each its own process, as `make run` starts them), outcomes and
notification.sent events written to PostgreSQL. Counts the messages the two servers
actually recorded (Maildir files, SMS log lines) per second."""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from bench.common import BenchContext, Figure, Sequenced, module_process, percentile
from contracts.codes import ReferralState, RiskLevel, ServiceType
from contracts.events import ReferralSentV1
from contracts.topics import Topic, namespaced
from services.notifications.app import NotificationsSettings, create_app
from services.referral.app import ReferralSettings
from services.referral.app import create_app as create_referral
from tests.helpers import DEMO_KEYS, free_port

EVENTS = 2000  # each one SMS + one email
TARGET = 600.0  # issue: notifications at least 600 messages/s through the local providers


def _referral_sent(sequence: int) -> ReferralSentV1:
    now = datetime.now(UTC)
    return ReferralSentV1(
        case_id=uuid.uuid4(),
        referral_id=uuid.uuid4(),
        reference=f"PE-PIU-2026-{sequence:06d}",
        state=ReferralState.SENT,
        version=2,
        from_agency_id="ong-amanecer",
        to_agency_id="upe-piura",
        service_id="upe-piura-proteccion",
        service_type=ServiceType.SPECIAL_PROTECTION,
        urgency=RiskLevel.HIGH,
        case_country="PE",
        case_region="PE-PIU",
        service_country="PE",
        cross_border=False,
        occurred_at=now,
        routing_rule="bench",
        mandatory=True,
        respond_by=now + timedelta(hours=24),
    )


def _recorded(workdir: Path) -> int:
    sms_log = workdir / "sms" / "messages.jsonl"
    texts = sms_log.read_bytes().count(b"\n") if sms_log.exists() else 0
    mails = workdir / "mail" / "new"
    return texts + (len(os.listdir(mails)) if mails.exists() else 0)


async def run(ctx: BenchContext) -> list[Figure]:
    workdir = Path(tempfile.mkdtemp(prefix="enlace-bench-notifications-"))
    smtp_port, sms_port = free_port(), free_port()
    sms_auth_token = secrets.token_urlsafe(32)  # this run's, shared with the SMS server
    dsn = await ctx.make_database("notifications")
    # The contact points come from the referral service, seeded with deploy/directory.yaml.
    referral = create_referral(
        ReferralSettings(
            **ctx.settings("referral"),
            database_url=await ctx.make_database("referral"),
            log_level="WARNING",
            internal_api_key=DEMO_KEYS["svc-referral"],
        )
    )
    settings = NotificationsSettings(
        **ctx.settings("notifications"),
        database_url=dsn,
        smtp_port=smtp_port,
        sms_base_url=f"http://127.0.0.1:{sms_port}",
        sms_status_callback_url="",
        sms_auth_token=sms_auth_token,
        internal_api_key=DEMO_KEYS["svc-notifications"],
        worker_poll_seconds=0.2,
        worker_max_in_flight=64,
        db_pool_max=20,
        sms_rate_per_second=10_000,
        sms_rate_burst=500,
        email_rate_per_second=10_000,
        email_rate_burst=500,
        quiet_hours_channels=[],
        log_level="WARNING",
    )
    async with (
        module_process(
            "services.notifications.local_smtp",
            "--port",
            str(smtp_port),
            "--maildir",
            str(workdir / "mail"),
            port=smtp_port,
        ),
        module_process(
            "services.notifications.local_sms",
            "--port",
            str(sms_port),
            "--dir",
            str(workdir / "sms"),
            port=sms_port,
            env={"ENLACE_SMS_AUTH_TOKEN": sms_auth_token},
        ),
        referral.router.lifespan_context(referral) as _,
    ):
        app = create_app(
            settings,
            referral_client=httpx.AsyncClient(
                transport=httpx.ASGITransport(app=referral), base_url="http://referral"
            ),
        )
        async with app.router.lifespan_context(app):
            return await _measure(ctx, dsn, workdir)


async def _measure(ctx: BenchContext, dsn: str, workdir: Path) -> list[Figure]:
    # referral.sent is written as the referral service writes it: its principal and its
    # ce_source (notifications dead-letters one from anyone else).
    producer = AIOKafkaProducer(**ctx.service_kafka("referral").aiokafka(), acks="all", linger_ms=5)
    await producer.start()
    topic = namespaced(ctx.namespace, Topic.REFERRALS)
    conn = await asyncpg.connect(dsn)

    publish = Sequenced(producer, topic, _referral_sent).publish

    async def wait_recorded(count: int, within: float) -> None:
        deadline = time.perf_counter() + within
        while _recorded(workdir) < count and time.perf_counter() < deadline:
            await asyncio.sleep(0.2)  # the servers are other processes: poll their files

    try:
        await publish(1)  # warm-up: consumer groups joined, connections open
        await wait_recorded(2, 30)
        started = time.perf_counter()
        await publish(EVENTS)
        await wait_recorded(2 + EVENTS * 2, 45)
        elapsed = time.perf_counter() - started
        delivered = _recorded(workdir) - 2
        latencies = [
            r["s"]
            for r in await conn.fetch(
                "SELECT extract(epoch FROM sent_at - created_at)::float8 AS s FROM deliveries "
                "WHERE status = 'sent'"
            )
        ]
    finally:
        await conn.close()
        await producer.stop()
    rate = delivered / elapsed
    expected = EVENTS * 2
    return [
        Figure(
            "notifications: messages/s through local SMTP + SMS",
            rate,
            "msg/s",
            f">= {TARGET:.0f} msg/s",
            rate >= TARGET and delivered >= expected,
        ),
        Figure(
            "notifications: messages recorded by the servers",
            delivered,
            "msgs",
            f"= {expected}",
            delivered == expected,
        ),
        Figure(
            "notifications: p95 delivery row -> provider accepted",
            percentile(latencies, 95) * 1000,
            "ms",
        ),
    ]
