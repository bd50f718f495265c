"""Kafka authenticates every client and authorises each principal only for what
deploy/kafka-access.yaml declares: tried as an attacker, a partner, a service and an
operator would, with nothing but aiokafka, on the real broker."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)

from contracts.registry import producer_source, to_cloud_event
from contracts.topics import Topic, all_topic_names, namespaced, partner_topic
from services.followup.app import FollowupSettings
from services.followup.app import create_app as followup_app
from services.intake.app import IntakeSettings
from services.intake.app import create_app as intake_app
from services.kit.kafka import KafkaAuthError, KafkaClient, make_producer, start_producer
from services.kit.kafka_acl import load_access
from services.notifications.app import NotificationsSettings
from services.notifications.app import create_app as notifications_app
from services.ops.app import OpsSettings
from services.ops.app import create_app as ops_app
from services.referral.app import ReferralSettings
from services.referral.app import create_app as referral_app
from tests.conftest import service_settings
from tests.infra import Infra
from tests.notifications.events import referral_sent

PARTNER = "red-reencuentro"  # declared: reads its own feed topic only
OTHER_PARTNER = "uavt-gt"


async def _produce(client: KafkaClient, topic: str, value: bytes = b"{}") -> None:
    producer = AIOKafkaProducer(**client.aiokafka(), request_timeout_ms=10000)
    try:
        await producer.start()
        await producer.send_and_wait(topic, value=value, key=b"k")
    finally:
        await producer.stop()


async def _first_record(client: KafkaClient, topic: str, group: str) -> Any:
    consumer = AIOKafkaConsumer(
        topic, **client.aiokafka(), group_id=group, auto_offset_reset="earliest"
    )
    try:
        await consumer.start()
        return await consumer.getone()
    finally:
        await consumer.stop()


async def test_a_client_without_credentials_can_neither_read_nor_write(
    infra: Infra, namespace: str
) -> None:
    topic = namespaced(namespace, Topic.CASES)
    # No TLS, no SASL: the broker has no such listener.
    for protocol in ("PLAINTEXT", "SSL"):
        client = KafkaClient(infra.kafka_bootstrap, protocol, cafile=infra.kafka().cafile)
        with pytest.raises(KafkaConnectionError):
            await _produce(client, topic)
        consumer = AIOKafkaConsumer(topic, **client.aiokafka())
        with pytest.raises(KafkaConnectionError):
            await consumer.start()
        await consumer.stop()
    # SASL_SSL with a principal the broker does not know.
    stranger = infra.kafka().as_principal("someone-else", "guess")
    with pytest.raises(KafkaAuthError, match="someone-else"):
        await start_producer(make_producer(stranger, "stranger"), stranger)


async def test_a_wrong_password_fails_fast_with_a_clear_error(infra: Infra) -> None:
    wrong = infra.service_kafka("intake").as_principal("svc-intake", "not-the-password")
    started = time.monotonic()
    with pytest.raises(KafkaAuthError) as refused:
        await start_producer(make_producer(wrong, "wrong"), wrong)
    assert time.monotonic() - started < 15
    assert "svc-intake" in str(refused.value)
    assert "KAFKA_SASL_PASSWORD" in str(refused.value)


async def test_a_service_with_a_wrong_password_refuses_to_start(
    infra: Infra, namespace: str, databases: Any
) -> None:
    settings = service_settings(
        IntakeSettings, infra, namespace, await databases("intake"), kafka_sasl_password="nope"
    )
    app = intake_app(settings)
    with pytest.raises(KafkaAuthError, match=r"svc-intake.*KAFKA_SASL_PASSWORD"):
        async with app.router.lifespan_context(app):
            pass


async def test_a_partner_reads_its_own_feed_topic_with_its_own_group_prefix(
    infra: Infra, namespace: str
) -> None:
    """The feed's writer (svc-notifications) produces it; the partner reads it."""
    topic = namespaced(namespace, partner_topic(PARTNER))
    event = to_cloud_event(referral_sent(), source=producer_source("referral.sent"))
    producer = AIOKafkaProducer(**infra.service_kafka("notifications").aiokafka())
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, value=event.value(), key=event.key, headers=event.headers()
        )
    finally:
        await producer.stop()
    partner = infra.kafka(PARTNER)
    record = await _first_record(partner, topic, f"{PARTNER}.case-system-{uuid.uuid4().hex[:6]}")
    assert dict(record.headers)["ce_id"] == event.id.encode()


async def test_a_partner_never_writes_and_keeps_to_its_own_feed(
    infra: Infra, namespace: str
) -> None:
    """Need-to-know on the broker: no shared contract topic (every agency's
    coordination traffic), no other agency's feed, no other group prefix."""
    partner = infra.kafka(PARTNER)
    own = namespaced(namespace, partner_topic(PARTNER))
    for name in [*all_topic_names(), partner_topic(PARTNER), partner_topic(OTHER_PARTNER)]:
        with pytest.raises(TopicAuthorizationFailedError):
            await _produce(partner, namespaced(namespace, name))
    with pytest.raises(GroupAuthorizationFailedError):
        await _first_record(partner, own, "another-group")
    for name in (Topic.CASES, Topic.REFERRALS, Topic.FOLLOWUPS, partner_topic(OTHER_PARTNER)):
        with pytest.raises(TopicAuthorizationFailedError):
            await _first_record(partner, namespaced(namespace, name), f"{PARTNER}.x")
    # Services other than the feed's writer cannot write a feed either.
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(infra.service_kafka("referral"), own)


async def test_a_service_writes_only_what_it_produces(infra: Infra, namespace: str) -> None:
    notifications = infra.service_kafka("notifications")
    await _produce(notifications, namespaced(namespace, Topic.NOTIFICATIONS))  # its own
    await _produce(notifications, namespaced(namespace, Topic.REFERRALS.dlq))  # dead letters
    for other in (Topic.CASES, Topic.REFERRALS, Topic.FOLLOWUPS):
        with pytest.raises(TopicAuthorizationFailedError):
            await _produce(notifications, namespaced(namespace, other))
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(infra.service_kafka("referral"), namespaced(namespace, Topic.CASES))


async def test_operations_reads_dead_letters_only_and_never_writes(
    infra: Infra, namespace: str
) -> None:
    ops = infra.kafka("enlace-ops")
    dlq = namespaced(namespace, Topic.CASES.dlq)
    await _produce(infra.service_kafka("referral"), dlq, b'{"dead": true}')
    record = await _first_record(ops, dlq, f"enlace-ops.console-{uuid.uuid4().hex[:6]}")
    assert record.value == b'{"dead": true}'
    with pytest.raises(TopicAuthorizationFailedError):
        await _first_record(ops, namespaced(namespace, Topic.CASES), "enlace-ops.x")
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(ops, dlq)


async def test_the_declaration_grants_each_service_exactly_what_its_code_consumes(
    infra: Infra, namespace: str
) -> None:
    access = load_access()
    apps = {
        "intake": intake_app(
            service_settings(IntakeSettings, infra, namespace, "postgresql://x/y")
        ),
        "referral": referral_app(
            service_settings(ReferralSettings, infra, namespace, "postgresql://x/y")
        ),
        "followup": followup_app(
            service_settings(FollowupSettings, infra, namespace, "postgresql://x/y")
        ),
        "notifications": notifications_app(
            service_settings(NotificationsSettings, infra, namespace, "postgresql://x/y")
        ),
    }
    for service, app in apps.items():
        consumed = sorted({str(s.topic) for s in app.state.runtime.subscriptions})
        assert consumed == sorted(access.services[service].consumes), service
    ops = ops_app(service_settings(OpsSettings, infra, namespace, "postgresql://x/y"))
    consumed = sorted({str(s.topic) for s in ops.state.runtime.subscriptions})
    assert consumed == sorted(access.ops.consumes)


async def test_the_ops_service_reads_everything_and_writes_contract_topics_to_redrive(
    infra: Infra, namespace: str
) -> None:
    """svc-ops reads every topic and dead letter (projections, the dead-letter list)
    and writes the contract topics (redrive); never a .dlq it does not consume."""
    ops = infra.service_kafka("ops")
    assert ops.username == "svc-ops"
    dlq = namespaced(namespace, Topic.FOLLOWUPS.dlq)
    await _produce(infra.service_kafka("notifications"), dlq, b'{"dead": true}')
    record = await _first_record(ops, dlq, f"enlace-ops.console-{uuid.uuid4().hex[:6]}")
    assert record.value == b'{"dead": true}'
    # (Only topics no other test here reads from their beginning.)
    for topic in (Topic.FOLLOWUPS, Topic.NOTIFICATIONS):
        await _produce(ops, namespaced(namespace, topic), b"{}")
    await _first_record(ops, namespaced(namespace, Topic.FOLLOWUPS), f"enlace-ops.x-{uuid.uuid4()}")
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(ops, dlq)  # it consumes no followups: not its dead letters
    with pytest.raises(GroupAuthorizationFailedError):
        await _first_record(ops, namespaced(namespace, Topic.CASES), "enlace-followup.x")
