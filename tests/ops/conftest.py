"""The operations service under test with everything real: Kafka (as svc-ops), its
own PostgreSQL database, and the follow-up service (in-process, its consumers on
this package's topics) to dead-letter records for real."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from contracts.envelope import CloudEvent
from contracts.events import EventData
from contracts.registry import producer_source, to_cloud_event
from contracts.topics import namespaced
from services.followup.app import FollowupSettings
from services.followup.app import create_app as create_followup
from services.ops.app import OpsSettings
from services.ops.app import create_app as create_ops
from tests.conftest import package_namespace, running, service_settings
from tests.helpers import free_port
from tests.infra import Infra

namespace = package_namespace("ops")


@dataclass
class Kafka:
    producer: AIOKafkaProducer
    namespace: str

    async def publish(self, data: EventData, *, partition: int | None = None) -> CloudEvent:
        """As the producing service does: binary CloudEvent keyed by case id."""
        event = to_cloud_event(data, source=producer_source(data.event_type))
        await self.producer.send_and_wait(
            namespaced(self.namespace, data.topic),
            key=event.key,
            value=event.value(),
            headers=event.headers(),
            partition=partition,
        )
        return event

    async def send(
        self, topic: str, value: bytes, headers: list[tuple[str, bytes]], **kw: Any
    ) -> Any:
        return await self.producer.send_and_wait(
            namespaced(self.namespace, topic), value=value, headers=headers, **kw
        )


@pytest.fixture(scope="package")
async def kafka(infra: Infra, namespace: str) -> AsyncIterator[Kafka]:
    producer = AIOKafkaProducer(**infra.kafka().aiokafka(), acks="all")
    await producer.start()
    yield Kafka(producer, namespace)
    await producer.stop()


@dataclass
class Followup:
    client: httpx.AsyncClient
    dsn: str


@pytest.fixture(scope="package")
async def followup(
    infra: Infra, namespace: str, databases: Callable[..., Any]
) -> AsyncIterator[Followup]:
    dsn: str = await databases("followup")
    settings = service_settings(
        FollowupSettings,
        infra,
        namespace,
        dsn,
        consumer_max_attempts=2,
        consumer_backoff_initial_seconds=0.05,
        consumer_backoff_max_seconds=0.1,
    )
    async with running(create_followup(settings)) as client:
        yield Followup(client, dsn)


@dataclass
class Ops:
    app: FastAPI
    client: httpx.AsyncClient
    dsn: str
    settings: OpsSettings

    async def db(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn)


@pytest.fixture(scope="package")
async def ops(
    infra: Infra, namespace: str, databases: Callable[..., Any], followup: Followup
) -> AsyncIterator[Ops]:
    dsn: str = await databases("ops")
    nobody = {
        f"{s}_url": f"http://127.0.0.1:{free_port()}"
        for s in ("intake", "referral", "followup", "notifications")
    }
    settings: OpsSettings = service_settings(
        OpsSettings,
        infra,
        namespace,
        dsn,
        lag_sample_seconds=0.3,
        lag_group_filter=namespace,
        dead_letter_poll_seconds=0.1,
        probe_timeout_seconds=1.0,
        **nobody,
    )
    app = create_ops(settings)
    async with running(app) as client:
        yield Ops(app, client, dsn, settings)
