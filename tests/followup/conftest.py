from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from contracts import events as ev
from contracts.codes import ReferralState, RiskLevel, ServiceType
from contracts.registry import producer_source, to_cloud_event
from contracts.topics import namespaced
from services.followup.app import FollowupSettings, create_app
from services.kit.clock import MovableClock
from tests.conftest import fresh_namespace, package_namespace, running, service_settings
from tests.infra import Infra

namespace = package_namespace("followup")

T0 = datetime.now(UTC).replace(microsecond=0)


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient
    clock: MovableClock
    db: asyncpg.Pool

    async def advance(self, delta: timedelta) -> None:
        """Move the clock and let the timer loop look at once."""
        self.clock.advance(delta)
        self.app.state.timers.wake()


@pytest.fixture(scope="package")
async def followup_dsn(databases: Callable[[str], Any]) -> str:
    dsn: str = await databases("followup")
    return dsn


@pytest.fixture(scope="package")
async def followup(infra: Infra, namespace: str, followup_dsn: str) -> AsyncIterator[Service]:
    clock = MovableClock(T0)
    settings = service_settings(
        FollowupSettings,
        infra,
        namespace,
        followup_dsn,
        timer_poll_seconds=0.2,
        report_metrics_refresh_seconds=3600,
    )
    app = create_app(settings, clock=clock)
    async with running(app) as client:
        db = await asyncpg.create_pool(followup_dsn, min_size=1, max_size=3)
        try:
            yield Service(app, client, clock, db)
        finally:
            await db.close()


class Publisher:
    """Produces events onto the real namespaced topic exactly as the owning service would."""

    def __init__(self, producer: AIOKafkaProducer, namespace: str) -> None:
        self._producer = producer
        self._namespace = namespace

    async def __call__(self, *models: ev.EventData) -> list[str]:
        """Returns the event ids, in order."""
        ids = []
        for model in models:
            event = to_cloud_event(model, source=producer_source(model.event_type))
            await self._producer.send_and_wait(
                namespaced(self._namespace, model.topic),
                value=event.value(),
                key=event.key,
                headers=event.headers(),
            )
            ids.append(event.id)
        return ids


@pytest.fixture(scope="package")
async def producer(infra: Infra) -> AsyncIterator[AIOKafkaProducer]:
    started = AIOKafkaProducer(**infra.kafka().aiokafka(), enable_idempotence=True)
    await started.start()
    yield started
    await started.stop()


@pytest.fixture(scope="package")
def publish(producer: AIOKafkaProducer, namespace: str) -> Publisher:
    return Publisher(producer, namespace)


@pytest.fixture
async def own_namespace(infra: Infra) -> AsyncIterator[str]:
    """Topics of this test alone: the session's follow-up service (another deployment,
    with its own database) must not fire for the referrals a test counts."""
    async with fresh_namespace(infra, f"test-{uuid.uuid4().hex[:8]}") as ns:
        yield ns


@dataclass
class Referral:
    """One referral's life, told as the referral service would tell it."""

    urgency: RiskLevel = RiskLevel.CRITICAL
    from_agency: str = "ong-amanecer"
    to_agency: str = "upe-piura"
    service_type: ServiceType = ServiceType.SPECIAL_PROTECTION
    region: str = "PE-PIU"
    case_id: uuid.UUID = field(default_factory=uuid.uuid4)
    referral_id: uuid.UUID = field(default_factory=uuid.uuid4)
    reference: str = field(
        default_factory=lambda: f"PE-PIU-2026-{random.randint(0, 999_999):06d}"
    )  # any valid code
    version: int = 1

    def _common(self, state: ReferralState, at: datetime, version: int | None) -> dict[str, Any]:
        if version is None:
            self.version += 1
            version = self.version
        return dict(
            case_id=self.case_id,
            referral_id=self.referral_id,
            reference=self.reference,
            state=state,
            version=version,
            from_agency_id=self.from_agency,
            to_agency_id=self.to_agency,
            service_id=f"{self.to_agency}-svc",
            service_type=self.service_type,
            urgency=self.urgency,
            case_country=self.region[:2],
            case_region=self.region,
            service_country=self.region[:2],
            cross_border=False,
            occurred_at=at,
        )

    def sent(
        self,
        at: datetime,
        respond_within: timedelta = timedelta(hours=4),
        version: int | None = None,
    ) -> ev.ReferralSentV1:
        return ev.ReferralSentV1(
            **self._common(ReferralState.SENT, at, version),
            routing_rule="nearest",
            mandatory=True,
            respond_by=at + respond_within,
        )

    def acknowledged(self, at: datetime, version: int | None = None) -> ev.ReferralAcknowledgedV1:
        return ev.ReferralAcknowledgedV1(**self._common(ReferralState.ACKNOWLEDGED, at, version))

    def accepted(self, at: datetime, version: int | None = None) -> ev.ReferralAcceptedV1:
        return ev.ReferralAcceptedV1(**self._common(ReferralState.ACCEPTED, at, version))

    def started(self, at: datetime, version: int | None = None) -> ev.ReferralStartedV1:
        return ev.ReferralStartedV1(**self._common(ReferralState.IN_PROGRESS, at, version))

    def closed(
        self, at: datetime, outcome: str = "service_provided", version: int | None = None
    ) -> ev.ReferralClosedV1:
        return ev.ReferralClosedV1(
            **self._common(ReferralState.CLOSED, at, version), outcome=outcome
        )

    def case_created(
        self, at: datetime, risk: RiskLevel, caseworker: str = "cw-17"
    ) -> ev.CaseCreatedV1:
        return ev.CaseCreatedV1(
            case_id=self.case_id,
            reference=self.reference,
            registering_agency_id=self.from_agency,
            registered_at=at,
            country=self.region[:2],
            region=self.region,
            age_band="15-17",
            sex="female",
            nationality="VE",
            languages=["es"],
            unaccompanied=True,
            separated=False,
            has_disability=False,
            concerns=["sexual_violence"],
            needs=[self.service_type],
            risk_level=risk,
            consent={
                "basis": "consent",
                "scope": "all_referral_services",
                "given_by": "child",
                "recorded_at": at,
            },
            caseworker_id=caseworker,
        )
