"""Provenance: a schema-valid event whose ce_source is not its type's declared
producer is dead-lettered as untrusted and sends nothing."""

from __future__ import annotations

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from contracts.topics import Topic
from tests.helpers import TopicReader
from tests.notifications import events
from tests.notifications.conftest import Kafka, Notifications
from tests.notifications.test_delivery import register_case


def untrusted_count(metrics: str, event_type: str, source: str) -> float:
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if (
                sample.name == "enlace_untrusted_events_total"
                and sample.labels.get("type") == event_type
                and sample.labels.get("source") == source
            ):
                return float(sample.value)
    return 0.0


async def test_an_overdue_escalation_not_from_followup_is_dead_lettered_and_sends_nothing(
    notifications: Notifications, intake: httpx.AsyncClient, kafka: Kafka, topics: TopicReader
) -> None:
    case_id, reference = await register_case(intake)
    # referral.overdue is follow-up's alone: this one claims to come from the referral
    # service (whose principal may write the topic, but not this type).
    forged = await kafka.publish(
        events.referral_overdue(case_id, reference, level=2), source="/enlace/referral"
    )
    # A genuine event after it, same case so same partition: once it is applied, the
    # forged record before it has been handled too.
    marker = await kafka.publish(events.referral_sent(case_id, reference))
    await notifications.consumed(marker.id)

    dead = [
        r for r in await topics.read(Topic.REFERRALS.dlq) if r.headers.get("ce_id") == forged.id
    ]
    assert len(dead) == 1
    assert dead[0].headers["x-error-type"] == "untrusted_source"
    assert "/enlace/followup" in dead[0].headers["x-error-message"]

    deliveries = await notifications.deliveries(case_id)
    assert deliveries, "the genuine referral.sent is delivered"
    assert {d["source_event_id"] for d in deliveries} == {marker.id}  # no escalation
    conn = await asyncpg.connect(notifications.dsn)
    try:
        # Not remembered as processed: a forged copy cannot shadow a genuine event id.
        assert not await conn.fetchval(
            "SELECT count(*) FROM processed_events WHERE event_id = $1", forged.id
        )
    finally:
        await conn.close()
    metrics = (await notifications.client.get("/metrics")).text
    assert untrusted_count(metrics, "referral.overdue", "/enlace/referral") >= 1
