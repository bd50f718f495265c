"""The same case.created delivered twice creates its referrals once."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaProducer

from contracts.topics import Topic, namespaced
from tests.factories import guatemala_trafficking_boy
from tests.helpers import TopicReader, consumed, poll_until
from tests.infra import Infra
from tests.referral.conftest import register


async def test_duplicate_case_created_routes_once(
    intake: httpx.AsyncClient,
    referral: httpx.AsyncClient,
    topics: TopicReader,
    infra: Infra,
    namespace: str,
    db: asyncpg.Connection,
) -> None:
    case_id = await register(intake, guatemala_trafficking_boy(), "comunidad-segura-gt")
    (created,) = await topics.for_case(Topic.CASES, case_id, 1)
    await topics.for_case(Topic.REFERRALS, case_id, 5)

    # Redeliver it as is (same ce_id), then as a copy under a new event id (a replay by
    # another producer): neither may route the case again.
    headers = [(k, v.encode()) for k, v in created.headers.items()]
    copy_id = str(uuid.uuid4())
    copy_headers = [(k, copy_id.encode() if k == "ce_id" else v) for k, v in headers]
    producer = AIOKafkaProducer(**infra.kafka().aiokafka())
    await producer.start()
    try:
        value = orjson.dumps(created.value)
        topic = namespaced(namespace, Topic.CASES)
        await producer.send_and_wait(topic, value, key=case_id.encode(), headers=headers)
        await producer.send_and_wait(topic, value, key=case_id.encode(), headers=copy_headers)
    finally:
        await producer.stop()

    # Same key, same partition: once the copy is processed, so was the redelivery.
    await consumed(db, copy_id)
    count = await db.fetchval(
        "SELECT count(*) FROM referrals WHERE case_id = $1", uuid.UUID(case_id)
    )
    assert count == 5
    # Whatever they wrote is on the topic once the case's outbox rows are relayed
    # (the relay deletes a row once the broker has it): only then is "no more
    # records" a proof.
    await poll_until(
        lambda: db.fetchval("SELECT count(*) FROM outbox WHERE subject = $1", case_id),
        lambda n: n == 0,
        what="the case's events to be relayed",
    )
    records = [r for r in await topics.read(Topic.REFERRALS) if r.subject == case_id]
    assert len(records) == 5
    assert len({r.value["referral_id"] for r in records}) == 5
