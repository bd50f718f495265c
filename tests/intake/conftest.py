from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from contracts import events as ev
from contracts.codes import (
    CancellationReason,
    ClosureOutcome,
    ReferralState,
    RejectionReason,
    RiskLevel,
    ServiceType,
)
from contracts.envelope import CloudEvent
from contracts.registry import to_cloud_event
from contracts.topics import namespaced
from services.intake.app import MIGRATIONS, IntakeSettings, create_app
from services.intake.keks import FileKeys, KekRing
from services.intake.vault import Vault
from services.kit.db import create_pool, migrate
from tests.conftest import package_namespace, running, service_settings
from tests.factories import piura_adolescent_girl
from tests.infra import Infra

namespace = package_namespace("intake")


def fresh_vault() -> Vault:
    """A vault of its own for a test module: KEK files in a fresh directory, a random
    identity hash key."""
    directory = Path(tempfile.mkdtemp(prefix="enlace-kek-"))
    return Vault(KekRing(FileKeys(directory, create_first=True)), os.urandom(32))


@contextlib.asynccontextmanager
async def fresh_intake_db(databases: Callable[..., Any]) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    """A database of its own, migrated: its DSN and a pool, as intake's role."""
    dsn: str = await databases("intake")
    pool = await create_pool(dsn, min_size=1, max_size=4)
    await migrate(pool, MIGRATIONS, "intake")
    try:
        yield dsn, pool
    finally:
        await pool.close()


@pytest.fixture(scope="module")
async def pool(databases: Callable[..., Any]) -> AsyncIterator[asyncpg.Pool]:
    """A migrated database per test module, for the use cases without HTTP or Kafka."""
    async with fresh_intake_db(databases) as (_, created):
        yield created


@pytest.fixture(scope="package")
async def intake_dsn(databases: Callable[[str], Any]) -> str:
    dsn: str = await databases("intake")
    return dsn


@pytest.fixture(scope="package")
async def intake(infra: Infra, namespace: str, intake_dsn: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(service_settings(IntakeSettings, infra, namespace, intake_dsn))
    async with running(app) as client:
        yield client


@pytest.fixture
async def intake_db(intake_dsn: str, intake: httpx.AsyncClient) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(intake_dsn, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


# --- bad input: a body with one change, and proof that nothing was written -----------


@pytest.fixture
async def nothing_written(intake_dsn: str) -> AsyncIterator[None]:
    """Counts rows before and after the test: bad input must change none of them. The
    outbox is counted by its sequence, since the relay deletes the rows it published
    (an earlier test's, perhaps, while this one runs)."""

    async def counts() -> tuple[int, ...]:
        conn = await asyncpg.connect(intake_dsn)
        try:
            rows = [
                await conn.fetchval(f"SELECT count(*) FROM {table}")
                for table in ("cases", "idempotency_keys", "reference_counters")
            ]
            outbox = await conn.fetchval("SELECT last_value FROM outbox_seq_seq")
            return (*rows, outbox)
        finally:
            await conn.close()

    before = await counts()
    yield
    assert await counts() == before, "bad input wrote something"


def with_change(path: str, value: Any, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """`body` (the Piura registration) with `path` ("child.sex") set to `value` (or
    DELETE)."""
    body = piura_adolescent_girl() if body is None else body
    target = body
    *parents, leaf = path.split(".")
    for part in parents:
        target = target[part]
    if value is DELETE:
        del target[leaf]
    else:
        target[leaf] = value
    return body


DELETE = object()


# --- referral events, as the referral service publishes them ----------------------------

_STATES: dict[type[ev.ReferralEventV1], ReferralState] = {
    ev.ReferralSentV1: ReferralState.SENT,
    ev.ReferralAcknowledgedV1: ReferralState.ACKNOWLEDGED,
    ev.ReferralAcceptedV1: ReferralState.ACCEPTED,
    ev.ReferralRejectedV1: ReferralState.REJECTED,
    ev.ReferralStartedV1: ReferralState.IN_PROGRESS,
    ev.ReferralClosedV1: ReferralState.CLOSED,
    ev.ReferralCancelledV1: ReferralState.CANCELLED,
}
_EXTRA: dict[type[ev.ReferralEventV1], Callable[[datetime], dict[str, Any]]] = {
    ev.ReferralSentV1: lambda now: {
        "mandatory": True,
        "respond_by": now + timedelta(hours=24),
        "routing_rule": "unaccompanied-migrant-special-protection",
    },
    ev.ReferralRejectedV1: lambda _: {"reason": RejectionReason.NO_CAPACITY},
    ev.ReferralClosedV1: lambda _: {"outcome": ClosureOutcome.SERVICE_PROVIDED},
    ev.ReferralCancelledV1: lambda _: {"reason": CancellationReason.NO_LONGER_NEEDED},
}


@dataclass
class Referral:
    """One referral of a real intake case to `to_agency`; each step is the next version."""

    case_id: uuid.UUID
    to_agency: str = "upe-piura"
    service_id: str = "upe-piura-proteccion"
    referral_id: uuid.UUID = field(default_factory=uuid.uuid4)
    version: int = 0

    def step(self, model: type[ev.ReferralEventV1]) -> ev.ReferralEventV1:
        self.version += 1
        now = datetime.now(UTC)
        return model(
            case_id=self.case_id,
            referral_id=self.referral_id,
            reference="PE-PIU-2026-000001",
            state=_STATES[model],
            version=self.version,
            from_agency_id="ong-amanecer",
            to_agency_id=self.to_agency,
            service_id=self.service_id,
            service_type=ServiceType.SPECIAL_PROTECTION,
            urgency=RiskLevel.HIGH,
            case_country="PE",
            case_region="PE-PIU",
            service_country="PE",
            cross_border=False,
            occurred_at=now,
            **(_EXTRA[model](now) if model in _EXTRA else {}),
        )

    def accepted(self) -> list[ev.ReferralEventV1]:
        return [
            self.step(ev.ReferralSentV1),
            self.step(ev.ReferralAcknowledgedV1),
            self.step(ev.ReferralAcceptedV1),
        ]


@dataclass
class ReferralTopic:
    producer: AIOKafkaProducer
    namespace: str

    async def publish(self, *models: ev.EventData) -> list[CloudEvent]:
        """On the real topic, as the referral service does (binary CloudEvent, key =
        case id, its ce_source)."""
        events = []
        for model in models:
            event = to_cloud_event(model, source="/enlace/referral")
            await self.producer.send_and_wait(
                namespaced(self.namespace, model.topic),
                key=event.key,
                value=event.value(),
                headers=event.headers(),
            )
            events.append(event)
        return events


@pytest.fixture(scope="package")
async def referral_topic(infra: Infra, namespace: str) -> AsyncIterator[ReferralTopic]:
    producer = AIOKafkaProducer(**infra.service_kafka("referral").aiokafka(), acks="all")
    await producer.start()
    try:
        yield ReferralTopic(producer, namespace)
    finally:
        await producer.stop()
