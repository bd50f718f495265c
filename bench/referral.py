"""Routing throughput: case.created consumed → referral records published.

N case.created records are produced straight to the cases topic, then the referral
service starts (real code paths: FastStream batch consumer, PostgreSQL, transactional
outbox, relay) and we time until every referral record (sent, proposed, unmet need)
is on the referrals topic. Measured from the first referral record (steady state)
and from service start (including start-up, migrations and the consumer joining).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import BenchContext, Figure
from contracts.codes import (
    AgeBand,
    ConcernCode,
    ConsentBasis,
    ConsentGiver,
    ConsentScope,
    RiskLevel,
    ServiceType,
    Sex,
)
from contracts.events import CaseCreatedV1, ConsentV1
from contracts.registry import producer_source, to_cloud_event
from contracts.topics import Topic, namespaced
from services.referral.app import ReferralSettings
from services.referral.domain import CaseProfile, load_directory, load_rules, plan_routing
from tests.helpers import free_port

CASES = 5000
TARGET = 500.0  # cases/s
TIMEOUT_S = 45.0

_TEMPLATES: list[dict[str, Any]] = [
    {
        "registering_agency_id": "ong-amanecer",
        "country": "PE",
        "region": "PE-PIU",
        "age_band": AgeBand.FROM_15_TO_17,
        "sex": Sex.FEMALE,
        "nationality": "VE",
        "unaccompanied": True,
        "risk_level": RiskLevel.HIGH,
        "concerns": [
            ConcernCode.PHYSICAL_VIOLENCE,
            ConcernCode.GENDER_BASED_VIOLENCE,
            ConcernCode.IRREGULAR_MIGRATION_STATUS,
        ],
        "needs": [ServiceType.SPECIAL_PROTECTION, ServiceType.PSYCHOSOCIAL_SUPPORT],
    },
    {
        "registering_agency_id": "comunidad-segura-gt",
        "country": "GT",
        "region": "GT-01",
        "age_band": AgeBand.FROM_12_TO_14,
        "sex": Sex.MALE,
        "nationality": "HN",
        "unaccompanied": True,
        "risk_level": RiskLevel.CRITICAL,
        "concerns": [ConcernCode.TRAFFICKING_INDICATORS, ConcernCode.MIGRANT_SMUGGLING],
        "needs": [ServiceType.SHELTER, ServiceType.SAFE_RETURN],
    },
    {
        "registering_agency_id": "demuna-piura",
        "country": "PE",
        "region": "PE-LIM",
        "age_band": AgeBand.FROM_6_TO_11,
        "sex": Sex.FEMALE,
        "nationality": "PE",
        "unaccompanied": False,
        "risk_level": RiskLevel.CRITICAL,
        "concerns": [ConcernCode.SEXUAL_VIOLENCE],
        "needs": [ServiceType.PSYCHOSOCIAL_SUPPORT],
    },
]


def _cases(count: int) -> list[CaseCreatedV1]:
    now = datetime.now(UTC)
    consent = ConsentV1(
        basis=ConsentBasis.CONSENT,
        scope=ConsentScope.ALL_REFERRAL_SERVICES,
        given_by=ConsentGiver.CHILD,
        recorded_at=now - timedelta(hours=1),
    )
    out = []
    for i in range(count):
        t = _TEMPLATES[i % len(_TEMPLATES)]
        out.append(
            CaseCreatedV1(
                case_id=uuid.uuid4(),
                reference=f"{t['region']}-{now.year}-{i + 1:06d}",
                registered_at=now,
                languages=["es"],
                separated=False,
                has_disability=False,
                consent=consent,
                caseworker_id="cw-bench",
                **t,
            )
        )
    return out


async def _end_offset_total(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> int:
    return sum((await consumer.end_offsets(tps)).values())


WORKERS = int(os.environ.get("ENLACE_BENCH_REFERRAL_WORKERS", "2"))


async def run(ctx: BenchContext) -> list[Figure]:
    namespace = ctx.namespace
    settings = ReferralSettings(
        **ctx.settings("referral"),
        database_url=await ctx.make_database("referral"),
        outbox_fallback_poll_seconds=0.5,
        log_level="WARNING",
    )
    directory = load_directory(settings.directory_file.read_text())
    rules = load_rules(settings.routing_file.read_text())
    cases = _cases(CASES)
    expected = sum(
        len(plan.referrals) + len(plan.unmet)
        for plan in (
            plan_routing(CaseProfile.from_event(c), rules, directory.offers()) for c in cases
        )
    )

    # The cases are written as intake writes them: its principal, its ce_source (the
    # referral service dead-letters a case.created from anyone else).
    producer = AIOKafkaProducer(
        **ctx.service_kafka("intake").aiokafka(), linger_ms=5, max_batch_size=512 * 1024
    )
    await producer.start()
    try:
        topic = namespaced(namespace, Topic.CASES)
        futures = []
        for case in cases:
            event = to_cloud_event(case, source=producer_source(case.event_type))
            futures.append(
                await producer.send(topic, event.value(), key=event.key, headers=event.headers())
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()

    watcher = AIOKafkaConsumer(**ctx.kafka.aiokafka())  # the bench's watcher: the admin
    await watcher.start()
    referrals_topic = namespaced(namespace, Topic.REFERRALS)
    tps = [
        TopicPartition(referrals_topic, p)
        for p in sorted(watcher.partitions_for_topic(referrals_topic) or {0, 1, 2})
    ]
    # The service runs as its own processes, one per core, as a deployment here would.
    env = {
        **ctx.env("referral"),  # its own principal and namespace
        "DATABASE_URL": settings.database_url,
        "ENLACE_CONSUMER_GROUP": settings.consumer_group,
        "ENLACE_OUTBOX_FALLBACK_POLL_SECONDS": "0.5",
        "ENLACE_LOG_LEVEL": "WARNING",
        "ENLACE_HTTP_PORT": str(free_port()),
        "ENLACE_HTTP_WORKERS": str(WORKERS),
    }
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "services.referral"], env=env,
                            stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        first: float | None = None
        while True:
            total = await _end_offset_total(watcher, tps)
            now = time.perf_counter()
            if total and first is None:
                first = now
            if total >= expected or now - started > TIMEOUT_S or proc.poll() is not None:
                break
            await asyncio.sleep(0.02)
        finished = time.perf_counter()
    finally:
        await watcher.stop()
        proc.terminate()
        proc.wait(timeout=30)
    done = total >= expected
    steady = CASES / (finished - (first or started)) if done else 0.0
    overall = CASES / (finished - started) if done else 0.0
    return [
        Figure(
            f"referral: routing, {WORKERS} procs, {CASES} cases → {expected} referral records",
            steady,
            "cases/s",
            f">= {TARGET:.0f} cases/s",
            steady >= TARGET,
        ),
        Figure("referral: same, including service start-up", overall, "cases/s"),
        Figure(
            "referral: referral records published",
            total,
            "records",
            f"= {expected}",
            total >= expected,
        ),
    ]
