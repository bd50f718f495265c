"""The four consuming services, each running (real PostgreSQL, real Kafka for its
subscribers and dead letters) with its outbox relay stopped, so every event a
handler enqueues stays visible in the service's own database.

The suite hands records straight to the kit's `EventConsumer.handle_batch`, the
code path every Kafka poll goes through (decode, dedupe, apply, retry,
dead-letter); reading from Kafka and committing offsets is tested once, in
tests/kit/test_consumer.py."""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import ConsumerRecord
from fastapi import FastAPI

from contracts.envelope import CloudEvent
from contracts.registry import producer_source, to_cloud_event
from contracts.topics import namespaced
from services.followup.app import FollowupSettings
from services.followup.app import create_app as create_followup
from services.intake.app import IntakeSettings
from services.intake.app import create_app as create_intake
from services.kit.clock import MovableClock
from services.kit.consumer import EventConsumer, EventHandler, Subscription
from services.kit.runtime import ServiceRuntime
from services.notifications.app import NotificationsSettings
from services.notifications.app import create_app as create_notifications
from services.referral.app import ReferralSettings
from services.referral.app import create_app as create_referral
from tests.conftest import package_namespace, running, service_settings
from tests.factories import piura_adolescent_girl
from tests.handler_contract.story import Story
from tests.helpers import auth
from tests.infra import Infra

namespace = package_namespace("handler-contract")

NOW = datetime.now(UTC).replace(microsecond=0)
_offsets = itertools.count(1)


@dataclass
class ServiceUnderTest:
    name: str
    runtime: ServiceRuntime
    namespace: str
    # For a service whose handlers need the case in its own records (intake holds the
    # cases): registers a real one and returns its id, for the story to be about.
    new_case: Callable[[], Awaitable[uuid.UUID]] | None = None

    async def story(self) -> Story:
        """A new case's story, about a case this service knows when it must."""
        if self.new_case is None:
            return Story(NOW)
        return Story(NOW, case_id=await self.new_case())

    def subscription_for(self, event_type: str) -> Subscription:
        (found,) = {
            s.topic: s for s in self.runtime.subscriptions if event_type in s.handlers
        }.values()
        return found

    def consumer(
        self, subscription: Subscription, wrap: Callable[[EventHandler], EventHandler] | None = None
    ) -> EventConsumer:
        if wrap is not None:
            handlers = {t: wrap(h) for t, h in subscription.handlers.items()}
            subscription = Subscription(subscription.topic, handlers, subscription.name)
        return EventConsumer(
            subscription=subscription,
            pool=self.runtime.pool,
            producer=self.runtime.producer,
            service=self.runtime.settings.service_name,
            group_id=self.runtime.settings.group_id,
            namespace=self.namespace,
            metrics=self.runtime.metrics,
            max_attempts=2,
            backoff_initial=0.01,
            backoff_max=0.05,
        )

    async def deliver(
        self,
        event: CloudEvent,
        *,
        value: bytes | None = None,
        wrap: Callable[[EventHandler], EventHandler] | None = None,
    ) -> None:
        """One record, as a Kafka poll would hand it to the service's consumer."""
        subscription = self.subscription_for(event.type)
        record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
            topic=namespaced(self.namespace, subscription.topic),
            partition=0,
            offset=next(_offsets),
            timestamp=0,
            timestamp_type=0,
            key=event.key,
            value=event.value() if value is None else value,
            checksum=None,
            serialized_key_size=len(event.key),
            serialized_value_size=0,
            headers=event.headers(),
        )
        await self.consumer(subscription, wrap).handle_batch([record])

    async def snapshot(self) -> dict[str, list[str]]:
        """Every row of every table but the consumer's own bookkeeping."""
        async with self.runtime.pool.acquire() as conn:
            tables = await conn.fetch(
                """SELECT table_name FROM information_schema.tables
                   WHERE table_schema = 'public' AND table_type = 'BASE TABLE'
                     AND table_name NOT IN ('processed_events', 'schema_migrations')
                   ORDER BY table_name"""
            )
            out: dict[str, list[str]] = {}
            for row in tables:
                name = row["table_name"]
                rows = await conn.fetch(f'SELECT row_to_json(t)::text AS j FROM "{name}" AS t')
                out[name] = sorted(r["j"] for r in rows)
            return out

    async def processed(self, event_id: str) -> list[str]:
        rows = await self.runtime.pool.fetch(
            "SELECT coalesce(outcome, 'applied') AS o FROM processed_events WHERE event_id = $1",
            event_id,
        )
        return [r["o"] for r in rows]


def cloud_event(story: Story, event_type: str) -> CloudEvent:
    data = story.event(event_type)
    return to_cloud_event(data, source=producer_source(event_type))


def new_id(event: CloudEvent) -> CloudEvent:
    """The same content under another event id."""
    return CloudEvent(
        type=event.type,
        source=event.source,
        subject=event.subject,
        data=orjson.loads(orjson.dumps(event.data)),
        dataschema=event.dataschema,
    )


@contextlib.asynccontextmanager
async def _started(
    name: str,
    app: FastAPI,
    namespace: str,
    new_case: Callable[[httpx.AsyncClient], Callable[[], Awaitable[uuid.UUID]]] | None = None,
) -> AsyncIterator[ServiceUnderTest]:
    async with running(app) as client:
        runtime: ServiceRuntime = app.state.runtime
        assert runtime.relay is not None
        await runtime.relay.stop()  # keep enqueued events in the outbox, to be compared
        yield ServiceUnderTest(name, runtime, namespace, new_case(client) if new_case else None)


def _registered_case(client: httpx.AsyncClient) -> Callable[[], Awaitable[uuid.UUID]]:
    """Intake's grants are about its own cases: register one through its API."""

    async def register() -> uuid.UUID:
        created = await client.post(
            "/v1/cases", json=piura_adolescent_girl(), headers=auth("ong-amanecer")
        )
        assert created.status_code == 201, created.text
        return uuid.UUID(created.json()["case_id"])

    return register


@pytest.fixture(scope="package")
async def services(
    infra: Infra, namespace: str, databases: Callable[[str], Any]
) -> AsyncIterator[dict[str, ServiceUnderTest]]:
    clock = MovableClock(NOW)
    referral_app = create_referral(
        service_settings(ReferralSettings, infra, namespace, await databases("hc_referral")),
        clock=clock,
    )
    followup_app = create_followup(
        service_settings(FollowupSettings, infra, namespace, await databases("hc_followup")),
        clock=clock,
    )
    # No delivery worker capacity: rows the handlers plan stay as planned.
    notifications_app = create_notifications(
        service_settings(
            NotificationsSettings,
            infra,
            namespace,
            await databases("hc_notifications"),
            worker_max_in_flight=0,
        ),
        clock=clock,
        intake_client=httpx.AsyncClient(base_url="http://127.0.0.1:9"),
        referral_client=httpx.AsyncClient(  # the contact directory, from the real referral
            transport=httpx.ASGITransport(app=referral_app), base_url="http://referral"
        ),
    )
    intake_app = create_intake(
        service_settings(IntakeSettings, infra, namespace, await databases("hc_intake")),
        clock=clock,
    )
    async with (
        _started("referral", referral_app, namespace) as referral,
        _started("followup", followup_app, namespace) as followup,
        _started("notifications", notifications_app, namespace) as notifications,
        _started("intake", intake_app, namespace, _registered_case) as intake,
    ):
        yield {
            "referral": referral,
            "followup": followup,
            "notifications": notifications,
            "intake": intake,
        }
