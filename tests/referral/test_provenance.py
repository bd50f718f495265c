"""Provenance: a consent withdrawal that intake did not publish cancels nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import httpx

from contracts.events import CaseConsentWithdrawnV1
from contracts.registry import to_cloud_event
from contracts.topics import Topic, namespaced
from services.kit.kafka import make_producer, start_producer
from tests.factories import piura_adolescent_girl
from tests.helpers import TopicReader, auth, poll_until
from tests.infra import Infra
from tests.referral.conftest import referrals_of, register


async def test_a_forged_consent_withdrawal_is_dead_lettered_and_cancels_nothing(
    infra: Infra,
    namespace: str,
    intake: httpx.AsyncClient,
    referral: httpx.AsyncClient,
    referral_dsn: str,
    topics: TopicReader,
) -> None:
    case_id = await register(intake, piura_adolescent_girl(), "ong-amanecer")
    await referrals_of(referral, "ong-amanecer", case_id, 5)
    reference = (await intake.get(f"/v1/cases/{case_id}", headers=auth("ong-amanecer"))).json()[
        "reference"
    ]
    # Schema-valid, on the right topic, written with the only principal that may
    # write it, but not from intake: ce_source says someone else.
    forged = to_cloud_event(
        CaseConsentWithdrawnV1(
            case_id=case_id,
            reference=reference,
            registering_agency_id="ong-amanecer",
            withdrawn_at=datetime.now(UTC),
        ),
        source="/someone/else",
    )
    client = infra.service_kafka("intake")
    producer = await start_producer(make_producer(client, "forger"), client)
    try:
        await producer.send_and_wait(
            namespaced(namespace, Topic.CASES),
            key=forged.key,
            value=forged.value(),
            headers=forged.headers(),
        )
    finally:
        await producer.stop()

    async def dead_lettered() -> list[object]:
        records = await topics.read(Topic.CASES.dlq)
        return [r for r in records if r.headers.get("ce_id") == forged.id]

    (dead,) = await poll_until(dead_lettered, what="the forged record in the DLQ")
    assert dead.headers["x-error-type"] == "untrusted_source"  # type: ignore[attr-defined]
    # Who refused it: the service, its subscription and its consumer group.
    assert dead.headers["x-consumer-service"] == "referral"  # type: ignore[attr-defined]
    assert dead.headers["x-consumer-subscription"] == "referral-cases"  # type: ignore[attr-defined]
    assert dead.headers["x-consumer-group"].endswith(".referral-cases")  # type: ignore[attr-defined]

    # Dead-lettering happens in partition order before the offset moves on: the
    # record has been handled, and nothing changed.
    after = await referrals_of(referral, "ong-amanecer", case_id, 5)
    assert all(r["state"] != "cancelled" for r in after)
    conn = await asyncpg.connect(referral_dsn)
    try:
        assert not await conn.fetchval(
            "SELECT count(*) FROM processed_events WHERE event_id = $1", forged.id
        )
    finally:
        await conn.close()
    case = await intake.get(f"/v1/cases/{case_id}", headers=auth("ong-amanecer"))
    assert case.json()["consent_status"] == "active"
