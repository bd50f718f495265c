"""The operations JSON API: operations keys only (anyone else is told the path does
not exist, as on every role-restricted route); each route only translates into a
use case of `services.ops.commands`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.kit.http import Agency, not_found
from services.ops.commands import MAX_RECORDS, Operations
from services.ops.domain import (
    DLQ_TOPICS,
    ActionResult,
    AuditEntry,
    DeadLetter,
    DeadLetterDetail,
    DeadLetterFilter,
    GroupLag,
    LagHistory,
    Pipeline,
    RecordRef,
    ReferralHealth,
    Status,
)


class RecordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topic: str = Field(description="The .dlq topic, e.g. protection.referrals.v1.dlq")
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)

    @field_validator("topic")
    @classmethod
    def _dlq(cls, value: str) -> str:
        if value not in DLQ_TOPICS:
            raise ValueError(f"not one of {', '.join(DLQ_TOPICS)}")
        return value

    def ref(self) -> RecordRef:
        return RecordRef(topic=self.topic, partition=self.partition, offset=self.offset)


class RedriveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    records: list[RecordIn] = Field(min_length=1, max_length=MAX_RECORDS)
    reason: str = Field(default="", max_length=2000)
    force: bool = Field(
        default=False, description="Redrive records already redriven or discarded too"
    )


class DiscardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    records: list[RecordIn] = Field(min_length=1, max_length=MAX_RECORDS)
    reason: str = Field(min_length=1, max_length=2000, pattern=r"\S")
    force: bool = False


class LagNow(BaseModel):
    lag: list[GroupLag]


class DeadLetters(BaseModel):
    dead_letters: list[DeadLetter]


class Audit(BaseModel):
    audit: list[AuditEntry]


def build_router(
    ops: Callable[[], Operations], operations: Callable[..., Awaitable[Agency]]
) -> APIRouter:
    router = APIRouter(prefix="/v1/ops", tags=["operations"])
    operator = Depends(operations)

    @router.get("/pipeline", response_model=Pipeline, summary="Services, lag, dead letters")
    async def pipeline(_: Agency = operator) -> Pipeline:
        return await ops().pipeline()

    @router.get("/lag", response_model=LagNow, summary="Lag per group, topic and partition now")
    async def lag(
        group: str | None = None, topic: str | None = None, _: Agency = operator
    ) -> dict[str, Any]:
        return {"lag": await ops().lag_now(group, topic)}

    @router.get(
        "/lag/history", response_model=LagHistory, summary="Sampled lag of one group on a topic"
    )
    async def lag_history(
        group: Annotated[str, Query(min_length=1)],
        topic: Annotated[str, Query(min_length=1)],
        since: datetime | None = None,
        _: Agency = operator,
    ) -> LagHistory:
        return await ops().lag_history(group, topic, since)

    @router.get("/dead-letters", response_model=DeadLetters, summary="Dead letters, filtered")
    async def dead_letters(
        topic: str | None = None,
        error_type: str | None = None,
        service: str | None = None,
        event_type: str | None = None,
        status: Status | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
        _: Agency = operator,
    ) -> dict[str, Any]:
        filters = DeadLetterFilter(
            topic=topic,
            error_type=error_type,
            service=service,
            event_type=event_type,
            status=status,
            limit=limit,
        )
        return {"dead_letters": await ops().list_dead_letters(filters)}

    @router.get(
        "/dead-letters/{topic}/{partition}/{offset}",
        response_model=DeadLetterDetail,
        summary="One dead letter: headers and JSON value",
    )
    async def dead_letter(topic: str, partition: int, offset: int, _: Agency = operator) -> Any:
        if topic not in DLQ_TOPICS or partition < 0 or offset < 0:
            raise not_found("dead letter")
        return await ops().show_dead_letter(
            RecordRef(topic=topic, partition=partition, offset=offset)
        )

    @router.post(
        "/dead-letters/redrive",
        response_model=ActionResult,
        summary="Re-produce dead letters to their original topic (audited)",
        responses={409: {"description": "Already redriven or discarded (send force)"}},
    )
    async def redrive(body: RedriveIn, who: Agency = operator) -> ActionResult:
        return await ops().redrive(
            [r.ref() for r in body.records], who=who.id, reason=body.reason, force=body.force
        )

    @router.post(
        "/dead-letters/discard",
        response_model=ActionResult,
        summary="Mark dead letters as dealt with, with a reason (audited)",
        responses={409: {"description": "Already redriven or discarded (send force)"}},
    )
    async def discard(body: DiscardIn, who: Agency = operator) -> ActionResult:
        return await ops().discard(
            [r.ref() for r in body.records], who=who.id, reason=body.reason, force=body.force
        )

    @router.get("/audit", response_model=Audit, summary="Redrives and discards, newest first")
    async def audit(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100, _: Agency = operator
    ) -> dict[str, Any]:
        return {"audit": await ops().audit(limit)}

    @router.get(
        "/referral-health",
        response_model=ReferralHealth,
        summary="Overdue referrals, unmet needs, failed notifications",
    )
    async def referral_health(_: Agency = operator) -> ReferralHealth:
        return await ops().referral_health()

    return router
