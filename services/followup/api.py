"""Follow-up's HTTP API: an agency reads and completes its own follow-up checks, and
reads how well its referral loop closes (operations: every agency).

Each route maps the request to a use case in `commands` and its result to a
response; the kit answers the use cases' domain errors as problem responses."""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Query
from fastapi.openapi.models import Example
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from contracts.codes import FollowupKind, RegionCode, RiskLevel, ServiceType
from services.followup import commands, domain
from services.followup.domain import FollowupStatus, Granularity
from services.followup.store.followups import Followup
from services.kit.clock import Clock
from services.kit.db import Pool
from services.kit.http import Agency, Role, parse_id, roles_dependency
from services.kit.inputs import Instant
from services.kit.openapi import problems


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
    status: FollowupStatus
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
    completed_at: Instant | None = Field(default=None, description="Defaults to now")
    reopen: StrictBool | None = Field(
        default=None,
        description="Schedule another follow-up. Defaults to true when the service was not "
        "received; cannot be true when it was.",
    )


OUTCOME_EXAMPLES: dict[str, Example] = {
    "service_received": {
        "summary": "Child reached, service received: the loop is closed",
        "value": {"child_reached": True, "service_received": True, "current_risk": "medium"},
    },
    "not_received": {
        "summary": "Child reached but the service never started: follow up again",
        "value": {
            "child_reached": True,
            "service_received": False,
            "current_risk": "high",
            "completed_at": "2026-11-22T16:20:00-05:00",
        },
    },
}


def _view(f: Followup) -> FollowupView:
    return FollowupView.model_validate(f, from_attributes=True)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)  # dates and naive times in a query mean UTC


def build_router(
    pool_of: Callable[[], Pool],
    clock: Clock,
    current_agency: Callable[..., Awaitable[Agency]],
    policy: domain.DeadlinePolicy,
    source: str,
) -> APIRouter:
    router = APIRouter()
    # Follow-ups are partner agencies' (a service or operator key gets 403); the report
    # is also the operators' (every agency's figures).
    partner = roles_dependency(current_agency, Role.AGENCY)
    reader = roles_dependency(current_agency, Role.AGENCY, Role.OPERATIONS)

    @router.get(
        "/v1/followups",
        response_model=list[FollowupView],
        tags=["followups"],
        summary="This agency's follow-up checks, soonest first",
        responses=problems(403, s403="Not an agency key (a service or operator key)"),
    )
    async def list_followups(
        agency: Annotated[Agency, Depends(partner)],
        status: FollowupStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[FollowupView]:
        async with pool_of().acquire() as conn:
            followups = await commands.list_followups(conn, agency.id, status, limit)
        return [_view(f) for f in followups]

    @router.get(
        "/v1/followups/{followup_id}",
        response_model=FollowupView,
        tags=["followups"],
        summary="One follow-up check of this agency",
        responses=problems(403, s403="Not an agency key (a service or operator key)"),
    )
    async def read_followup(
        followup_id: str, agency: Annotated[Agency, Depends(partner)]
    ) -> FollowupView:
        async with pool_of().acquire() as conn:
            followup = await commands.read_followup(
                conn, parse_id(followup_id, "follow-up"), agency.id
            )
        return _view(followup)

    @router.post(
        "/v1/followups/{followup_id}/complete",
        response_model=FollowupView,
        tags=["followups"],
        summary="Record the outcome of a follow-up check",
        responses=problems(
            403,
            409,
            s403="Not an agency key (a service or operator key)",
            s409="This follow-up was completed already",
        ),
    )
    async def complete_followup(
        followup_id: str,
        outcome: Annotated[FollowupOutcome, Body(openapi_examples=OUTCOME_EXAMPLES)],
        agency: Annotated[Agency, Depends(partner)],
    ) -> FollowupView:
        command = commands.CompleteFollowup(
            followup_id=parse_id(followup_id, "follow-up"),
            agency_id=agency.id,
            child_reached=outcome.child_reached,
            service_received=outcome.service_received,
            current_risk=outcome.current_risk,
            completed_at=outcome.completed_at,
            reopen=outcome.reopen,
        )
        async with pool_of().acquire() as conn:
            done = await commands.complete_followup(
                conn, command, policy=policy, clock=clock, source=source
            )
        return _view(done)

    @router.get(
        "/v1/reports/referrals",
        tags=["reports"],
        summary="How well the referral loop closes: this agency's, or all for operations",
        responses=problems(403, s403="A service key: reports are for agencies and operators"),
    )
    async def referral_report(
        agency: Annotated[Agency, Depends(reader)],
        period_from: Annotated[
            Instant | None,
            Query(description="Referrals sent at or after (ISO date or time; UTC if no offset)"),
        ] = None,
        period_to: Annotated[
            Instant | None,
            Query(description="Referrals sent before (ISO date or time; UTC if no offset)"),
        ] = None,
        service_type: ServiceType | None = None,
        region: Annotated[RegionCode | None, Query(description="ISO 3166-2 case region")] = None,
        granularity: Granularity = Granularity.MONTH,
    ) -> dict[str, Any]:
        query = commands.ReportQuery(
            agency_id=agency.id,
            every_agency=agency.is_operations,
            period_from=_utc(period_from),
            period_to=_utc(period_to),
            service_type=service_type,
            region=region,
            granularity=granularity,
        )
        async with pool_of().acquire() as conn:
            report = await commands.referral_report(conn, query, now=clock.now())
        return {
            "agency_id": agency.id,
            "scope": "all" if report.scope is None else "agency",
            "period": {
                "from": query.period_from,
                "to": query.period_to,
                "granularity": granularity,
            },
            "filters": {"service_type": service_type, "region": region},
            "generated_at": report.generated_at,
            **report.figures,
        }

    return router
