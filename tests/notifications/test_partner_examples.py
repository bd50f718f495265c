"""The partner examples (examples/partner/) against the real notifications service: the
webhook receiver registered through the API and fed by the delivery worker, and the
Kafka consumer reading an agency's feed topic as that agency's principal."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from standardwebhooks.webhooks import Webhook

from contracts.registry import producer_source
from contracts.topics import namespaced, partner_topic
from examples.partner import kafka_consumer
from examples.partner.webhook_receiver import Receiver
from tests.helpers import auth, free_port, poll_until
from tests.infra import Infra
from tests.notifications import events
from tests.notifications.conftest import Kafka, Notifications

PARTNER = "red-reencuentro"  # has a webhook endpoint here and a feed topic (kafka-access.yaml)
OTHER = "ong-amanecer"

T = TypeVar("T")


def probe(read: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """`read` as poll_until's probe (what the example has taken so far)."""

    async def run() -> T:
        return read()

    return run


@dataclass
class Endpoint:
    id: str
    secret: str
    receiver: Receiver
    url: str


@pytest.fixture
async def endpoint(notifications: Notifications) -> AsyncIterator[Endpoint]:
    """An endpoint of PARTNER registered through the API, for referral.sent, served by
    the example receiver with the secret the registration answered; deleted after."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/enlace/webhooks"
    response = await notifications.client.post(
        "/v1/webhook-endpoints",
        json={
            "url": url,
            "event_types": ["referral.sent"],
            "description": "example receiver",
        },
        headers=auth(PARTNER),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["enabled"] is True
    assert body["event_types"] == ["referral.sent"]
    assert body["secret"].startswith("whsec_")
    receiver = Receiver(body["secret"])
    assert await receiver.start(port) == url
    try:
        yield Endpoint(body["endpoint_id"], body["secret"], receiver, url)
    finally:
        await receiver.stop()
        deleted = await notifications.client.delete(
            f"/v1/webhook-endpoints/{body['endpoint_id']}", headers=auth(PARTNER)
        )
        assert deleted.status_code == 204, deleted.text


def received(receiver: Receiver, event_id: str) -> list[dict[str, Any]]:
    return [e for e in receiver.received if e["id"] == event_id]


async def delivery_of(
    client: httpx.AsyncClient, endpoint_id: str, event_id: str, status: str
) -> dict[str, Any]:
    async def log() -> list[dict[str, Any]]:
        response = await client.get(
            f"/v1/webhook-endpoints/{endpoint_id}/deliveries",
            params={"status": status},
            headers=auth(PARTNER),
        )
        assert response.status_code == 200, response.text
        return [d for d in response.json()["deliveries"] if d["source_event_id"] == event_id]

    found = await poll_until(log, what=f"a {status} delivery of {event_id} in the log")
    assert len(found) == 1, found
    return found[0]


async def test_the_example_receiver_verifies_and_takes_a_referral_sent_to_the_agency(
    notifications: Notifications, kafka: Kafka, endpoint: Endpoint
) -> None:
    data = events.referral_sent(from_agency_id=OTHER, to_agency_id=PARTNER)
    sent = await kafka.publish(data)

    got = await poll_until(
        probe(lambda: received(endpoint.receiver, sent.id)),
        what=f"the receiver to take {sent.id}",
    )
    assert len(got) == 1
    event = got[0]
    assert (event["type"], event["id"]) == ("referral.sent", sent.id)
    assert event["specversion"] == "1.0"
    assert event["source"] == producer_source("referral.sent")
    assert event["subject"] == str(data.case_id)
    assert event["data"]["to_agency_id"] == PARTNER
    assert event["data"]["referral_id"] == str(data.referral_id)
    assert endpoint.receiver.rejected == 0

    delivered = await delivery_of(notifications.client, endpoint.id, sent.id, "sent")
    assert delivered["event_type"] == "referral.sent"
    assert delivered["response_status"] == 200
    assert delivered["case_id"] == str(data.case_id)

    # Asked for again: the same webhook-id, which the receiver recognises.
    again = await notifications.client.post(
        f"/v1/webhook-endpoints/{endpoint.id}/deliveries/{delivered['notification_id']}/redeliver",
        headers=auth(PARTNER),
    )
    assert again.status_code == 202, again.text
    await poll_until(
        probe(lambda: endpoint.receiver.duplicates),
        lambda n: n >= 1,
        what="the redelivery to reach the receiver",
    )
    assert len(received(endpoint.receiver, sent.id)) == 1
    assert endpoint.receiver.rejected == 0


async def test_a_receiver_keeping_either_secret_verifies_during_a_rotation_overlap(
    notifications: Notifications, kafka: Kafka, endpoint: Endpoint
) -> None:
    rotated = await notifications.client.post(
        f"/v1/webhook-endpoints/{endpoint.id}/secret/rotate",
        json={"overlap_hours": 1},
        headers=auth(PARTNER),
    )
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_")
    assert new_secret != endpoint.secret
    assert rotated.json()["rotation_overlap"] is True

    # Still on the old secret: verified (both signatures are sent).
    first = await kafka.publish(events.referral_sent(from_agency_id=OTHER, to_agency_id=PARTNER))
    await poll_until(
        probe(lambda: received(endpoint.receiver, first.id)),
        what=f"the receiver (old secret) to take {first.id}",
    )
    # Switched to the new secret alone: verified too.
    endpoint.receiver.use_secrets(new_secret)
    second = await kafka.publish(events.referral_sent(from_agency_id=PARTNER, to_agency_id=OTHER))
    await poll_until(
        probe(lambda: received(endpoint.receiver, second.id)),
        what=f"the receiver (new secret) to take {second.id}",
    )
    assert endpoint.receiver.rejected == 0


async def test_the_example_receiver_refuses_a_forged_or_stale_delivery_with_400() -> None:
    """Without the service: what a receiver must answer to what Enlace did not sign."""
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    taken: list[dict[str, Any]] = []
    receiver = Receiver(secret, taken.append)
    port = free_port()
    url = await receiver.start(port)
    body = b'{"specversion":"1.0","id":"e-1","type":"referral.sent","source":"/x","data":{}}'

    def headers(signing_secret: str, at: float) -> dict[str, str]:
        stamp = int(at)
        signature = Webhook(signing_secret).sign(
            "msg_1", datetime.fromtimestamp(stamp, UTC), body.decode()
        )
        return {
            "webhook-id": "msg_1",
            "webhook-timestamp": str(stamp),
            "webhook-signature": signature,
            "content-type": "application/cloudevents+json",
        }

    forged = "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="
    try:
        async with httpx.AsyncClient() as client:
            for bad in (
                headers(forged, time.time()),  # another secret
                headers(secret, time.time() - 3600),  # replayed an hour later
                {"webhook-id": "msg_1", "webhook-timestamp": str(int(time.time()))},
            ):
                answer = await client.post(url, content=body, headers=bad)
                assert answer.status_code == 400
            assert taken == []
            assert receiver.rejected == 3
            good = await client.post(url, content=body, headers=headers(secret, time.time()))
            assert good.status_code == 200
            again = await client.post(url, content=body, headers=headers(secret, time.time()))
            assert again.status_code == 200
    finally:
        await receiver.stop()
    assert [e["id"] for e in taken] == ["e-1"]
    assert receiver.duplicates == 1


def feed_config(infra: Infra, namespace: str, group: str) -> kafka_consumer.FeedConfig:
    client = infra.kafka(PARTNER)
    return kafka_consumer.FeedConfig(
        bootstrap=client.bootstrap,
        username=PARTNER,
        password=client.password,
        cafile=client.cafile,
        topic=namespaced(namespace, partner_topic(PARTNER)),
        group=group,
        security_protocol=client.security_protocol,
    )


@contextlib.asynccontextmanager
async def consuming(
    config: kafka_consumer.FeedConfig, stop: asyncio.Event
) -> AsyncIterator[tuple[list[kafka_consumer.Event], asyncio.Task[kafka_consumer.Consumed]]]:
    handled: list[kafka_consumer.Event] = []
    task = asyncio.create_task(kafka_consumer.consume(config, handled.append, stop=stop))
    try:
        yield handled, task
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)


async def test_the_example_consumer_reads_the_agency_feed_once_per_event_and_commits(
    infra: Infra, namespace: str, kafka: Kafka
) -> None:
    group = f"{PARTNER}.example-{uuid.uuid4().hex[:8]}"
    config = feed_config(infra, namespace, group)
    data = events.referral_sent(from_agency_id=OTHER, to_agency_id=PARTNER)
    sent = await kafka.publish(data)
    stop = asyncio.Event()
    marker_id = f"marker-{uuid.uuid4()}"
    async with consuming(config, stop) as (handled, task):

        def of(event_id: str) -> list[kafka_consumer.Event]:
            return [e for e in handled if e.id == event_id]

        got = await poll_until(probe(lambda: of(sent.id)), what=f"{sent.id} on {PARTNER}'s feed")
        event = got[0]
        assert event.type == "referral.sent"
        assert event.source == producer_source("referral.sent")
        assert event.subject == event.key == str(data.case_id)
        assert event.attributes["specversion"] == "1.0"
        assert event.attributes["traceparent"] == sent.traceparent
        assert event.data["to_agency_id"] == PARTNER
        assert event.data["referral_id"] == str(data.referral_id)

        # The same record again (as after a rebalance), then a marker behind it in the
        # same partition (same key): once the marker is handled, the copy was seen.
        writer = AIOKafkaProducer(**infra.service_kafka("notifications").aiokafka(), acks="all")
        await writer.start()
        try:
            for value, headers in (
                (sent.value(), sent.headers()),
                (b"{}", [("ce_id", marker_id.encode()), ("ce_type", b"example.marker")]),
            ):
                await writer.send_and_wait(
                    config.topic_name, key=sent.key, value=value, headers=headers
                )
        finally:
            await writer.stop()
        await poll_until(probe(lambda: of(marker_id)), what="the marker")
        stop.set()
        counts = await asyncio.wait_for(task, 30)

    assert len(of(sent.id)) == 1
    assert counts.duplicates == 1
    # Committed after handling: the group resumes after the marker.
    marker = of(marker_id)[0]
    reader = AIOKafkaConsumer(**infra.kafka(PARTNER).aiokafka(), group_id=group)
    await reader.start()
    try:
        tp = TopicPartition(config.topic_name, marker.partition)
        assert await reader.committed(tp) == marker.offset + 1
    finally:
        await reader.stop()


async def test_the_example_consumer_refuses_a_group_outside_the_agency_prefix(
    infra: Infra, namespace: str
) -> None:
    config = feed_config(infra, namespace, "case-system")
    with pytest.raises(ValueError, match=r"must start with 'red-reencuentro\.'"):
        await kafka_consumer.consume(config, stop_after=1)
