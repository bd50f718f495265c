"""Follow-up's HTTP API: an agency reads and completes its own follow-up checks, and
reads how well its referral loop closes (operations: every agency)."""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from contracts.codes import FollowupKind, RegionCode, RiskLevel, ServiceType
from contracts.events import FollowupCompletedV1
from contracts.registry import to_cloud_event
from services.followup import domain, store
from services.kit.clock import Clock
from services.kit.db import Pool
from services.kit.http import Agency, Problem, invalid_field, not_found, parse_id
from services.kit.logging import get_logger

log = get_logger(__name__)

CLOCK_SKEW = timedelta(minutes=10)


class FollowupView(BaseModel):
    followup_id: UUID
    kind: FollowupKind
    case_id: UUID
    reference: str
    referral_id: UUID | None
    agency_id: str
    caseworker_id: str | None
    risk_level: RiskLevel
    due_at: datetime
    status: Literal["scheduled", "due", "completed"]
    child_reached: bool | None
    service_received: bool | None
    current_risk: RiskLevel | None
    completed_at: datetime | None
    reopened_as: UUID | None
    reopened_from: UUID | None


class FollowupOutcome(BaseModel):
    """What the caseworker found when following up."""

    model_config = ConfigDict(extra="forbid")
    child_reached: StrictBool
    service_received: StrictBool
    current_risk: RiskLevel
    completed_at: datetime | None = Field(default=None, description="Defaults to now")
    reopen: StrictBool | None = Field(
        default=None,
        description="Schedule another follow-up. Defaults to true when the service was not "
        "received; cannot be true when it was.",
    )


def _view(f: store.Followup) -> FollowupView:
    return FollowupView.model_validate(f, from_attributes=True)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)  # dates and naive times in a query mean UTC


def build_router(
    pool_of: Any, clock: Clock, current_agency: Any, policy: domain.DeadlinePolicy, source: str
) -> APIRouter:
    router = APIRouter()

    def pool() -> Pool:
        result: Pool = pool_of()
        return result

    @router.get(
        "/v1/followups",
        response_model=list[FollowupView],
        tags=["followups"],
        summary="This agency's follow-up checks, soonest first",
    )
    async def list_followups(
        agency: Annotated[Agency, Depends(current_agency)],
        status: Literal["scheduled", "due", "completed"] | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[FollowupView]:
        async with pool().acquire() as conn:
            return [_view(f) for f in await store.list_followups(conn, agency.id, status, limit)]

    @router.get(
        "/v1/followups/{followup_id}",
        response_model=FollowupView,
        tags=["followups"],
        summary="One follow-up check of this agency",
    )
    async def read_followup(
        followup_id: str, agency: Annotated[Agency, Depends(current_agency)]
    ) -> FollowupView:
        async with pool().acquire() as conn:
            followup = await store.get_followup(conn, parse_id(followup_id, "follow-up"))
        if followup is None or followup.agency_id != agency.id:
            raise not_found("follow-up")
        return _view(followup)

    @router.post(
        "/v1/followups/{followup_id}/complete",
        response_model=FollowupView,
        tags=["followups"],
        summary="Record the outcome of a follow-up check",
    )
    async def complete_followup(
        followup_id: str,
        outcome: FollowupOutcome,
        agency: Annotated[Agency, Depends(current_agency)],
    ) -> FollowupView:
        now = clock.now()
        completed_at = outcome.completed_at or now
        if completed_at.tzinfo is None:
            raise invalid_field("completed_at", "needs a time zone offset")
        if completed_at > now + CLOCK_SKEW:
            raise invalid_field("completed_at", "is in the future")
        if outcome.reopen and outcome.service_received:
            raise invalid_field(
                "reopen", "a follow-up reopens only when the service was not received"
            )
        reopen = domain.should_reopen(
            service_received=outcome.service_received, requested=outcome.reopen
        )
        async with pool().acquire() as conn, conn.transaction():
            followup = await store.get_followup(conn, parse_id(followup_id, "follow-up"), lock=True)
            if followup is None or followup.agency_id != agency.id:
                raise not_found("follow-up")
            if followup.status == "completed":
                raise Problem(409, "Already completed", "This follow-up was completed already.")
            reopened_as = None
            if reopen:
                reopened_as = await store.create_followup(
                    conn,
                    origin=f"reopen:{followup.followup_id}",
                    kind=followup.kind,
                    case_id=followup.case_id,
                    reference=followup.reference,
                    referral_id=followup.referral_id,
                    agency_id=followup.agency_id,
                    caseworker_id=followup.caseworker_id,
                    risk_level=outcome.current_risk.value,
                    due_at=completed_at + policy.reopened_followup,
                    reopened_from=followup.followup_id,
                )
            await store.complete_followup(
                conn,
                followup.followup_id,
                child_reached=outcome.child_reached,
                service_received=outcome.service_received,
                current_risk=outcome.current_risk.value,
                completed_at=completed_at,
                reopened_as=reopened_as,
            )
            event = FollowupCompletedV1(
                case_id=followup.case_id,
                followup_id=followup.followup_id,
                reference=followup.reference,
                referral_id=followup.referral_id,
                agency_id=followup.agency_id,
                child_reached=outcome.child_reached,
                service_received=outcome.service_received,
                current_risk=outcome.current_risk,
                reopened=reopened_as is not None,
                completed_at=completed_at,
            )
            await store.enqueue(conn, event.topic, to_cloud_event(event, source=source))
            done = await store.get_followup(conn, followup.followup_id)
        assert done is not None
        log.info(
            "follow-up completed",
            followup_id=str(done.followup_id),
            case_id=str(done.case_id),
            agency_id=agency.id,
            reopened=reopened_as is not None,
        )
        return _view(done)

    @router.get(
        "/v1/reports/referrals",
        tags=["reports"],
        summary="How well the referral loop closes: this agency's, or all for operations",
    )
    async def referral_report(
        agency: Annotated[Agency, Depends(current_agency)],
        period_from: Annotated[
            datetime | None,
            Query(description="Referrals sent at or after (ISO date or time; UTC if no offset)"),
        ] = None,
        period_to: Annotated[
            datetime | None,
            Query(description="Referrals sent before (ISO date or time; UTC if no offset)"),
        ] = None,
        service_type: ServiceType | None = None,
        region: Annotated[RegionCode | None, Query(description="ISO 3166-2 case region")] = None,
        granularity: Literal["day", "week", "month"] = "month",
    ) -> dict[str, Any]:
        start, end = _utc(period_from), _utc(period_to)
        if start is not None and end is not None and start >= end:
            raise invalid_field("query.period_from", "must be before period_to")
        scope = None if agency.is_operations else agency.id
        now = clock.now()
        async with pool().acquire() as conn:
            facts = await store.report_facts(
                conn,
                agency_id=scope,
                period_from=start,
                period_to=end,
                service_type=service_type.value if service_type else None,
                region=region,
                now=now,
            )
        return {
            "agency_id": agency.id,
            "scope": "all" if scope is None else "agency",
            "period": {"from": start, "to": end, "granularity": granularity},
            "filters": {"service_type": service_type, "region": region},
            "generated_at": now,
            **domain.referral_report(facts, scope, granularity),
        }

    return router
