"""HTTP API of partner webhooks, mapped onto `webhook_endpoints`: each agency manages
its own endpoints (/v1/webhook-endpoints), reads each one's delivery log and asks
for a delivery again. Agency keys only; another agency's endpoint is a 404."""

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Body, Depends, FastAPI, Header, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from services.kit.clock import Clock
from services.kit.http import Agency, Role, roles_dependency
from services.kit.inputs import LineText
from services.kit.openapi import problems
from services.notifications import webhook_endpoints as endpoints
from services.notifications.domain.partners import MAX_URL_LENGTH, PARTNER_EVENT_TYPES
from services.notifications.endpoint_secrets import SecretBox

# Checked by the use case (an unknown one is a 422 naming the field and listing the
# known ones); listed here for the OpenAPI document.
EventType = Annotated[str, Field(json_schema_extra={"enum": list(PARTNER_EVENT_TYPES)})]


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: LineText = Field(max_length=MAX_URL_LENGTH, description="https, public addresses only")
    event_types: list[EventType] = Field(min_length=1, max_length=len(PARTNER_EVENT_TYPES))
    description: LineText = Field(default="", max_length=200)
    enabled: bool = True


class EndpointPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: LineText | None = Field(default=None, max_length=MAX_URL_LENGTH)
    event_types: list[EventType] | None = Field(
        default=None, min_length=1, max_length=len(PARTNER_EVENT_TYPES)
    )
    description: LineText | None = Field(default=None, max_length=200)
    enabled: bool | None = None


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overlap_hours: float = Field(
        default=24.0, ge=0, le=168, description="How long the old secret keeps signing too"
    )


REGISTER_EXAMPLES: dict[str, Any] = {
    "case_system": {
        "summary": "A partner's case system",
        "value": {
            "url": "https://casos.red-reencuentro.example.org/enlace/webhooks",
            "event_types": ["referral.sent", "referral.accepted", "followup.due"],
            "description": "Sistema de casos de la Red Reencuentro",
        },
    }
}
CHANGE_EXAMPLES: dict[str, Any] = {
    "enable": {"summary": "Enable again (sends what was held)", "value": {"enabled": True}},
    "types": {
        "summary": "Change the event types",
        "value": {"event_types": ["case.created", "case.erased", "referral.sent"]},
    },
}
ROTATE_EXAMPLES: dict[str, Any] = {
    "overlap": {"summary": "Both secrets sign for a day", "value": {"overlap_hours": 24}},
    "leaked": {"summary": "The old secret leaked: stop it now", "value": {"overlap_hours": 0}},
}


def build_webhook_router(
    pool: Callable[[], asyncpg.Pool],
    current_agency: Callable[..., Awaitable[Agency]],
    *,
    clock: Clock,
    policy: endpoints.UrlPolicy,
    box: SecretBox,
) -> APIRouter:
    router = APIRouter(prefix="/v1/webhook-endpoints", tags=["partner webhooks"])
    partner = roles_dependency(current_agency, Role.AGENCY)
    AgencyDep = Annotated[Agency, Depends(partner)]
    EndpointId = Annotated[UUID, Path(description="The endpoint's id")]
    s403 = "Not an agency key (a service or operator key)"
    s404 = "No such endpoint of this agency"

    @router.post(
        "",
        status_code=201,
        summary="Register a webhook endpoint; its signing secret is in this answer only",
        responses=problems(403, s403=s403),
    )
    async def register(
        agency: AgencyDep, body: Annotated[EndpointIn, Body(openapi_examples=REGISTER_EXAMPLES)]
    ) -> dict[str, Any]:
        command = endpoints.RegisterEndpoint(
            agency.id, body.url, list(body.event_types), body.description, body.enabled
        )
        async with pool().acquire() as conn:
            created, secret = await endpoints.register(
                conn, command, policy=policy, box=box, now=clock.now()
            )
        return _json(created) | {"secret": secret}

    @router.get("", summary="The caller's webhook endpoints", responses=problems(403, s403=s403))
    async def list_all(agency: AgencyDep) -> dict[str, Any]:
        async with pool().acquire() as conn:
            found = await endpoints.list_endpoints(conn, agency.id)
        return {"endpoints": [_json(e) for e in found]}

    @router.get(
        "/{endpoint_id}", summary="One webhook endpoint", responses=problems(403, s403=s403)
    )
    async def read(agency: AgencyDep, endpoint_id: EndpointId) -> dict[str, Any]:
        async with pool().acquire() as conn:
            return _json(await endpoints.read(conn, endpoint_id, agency.id))

    @router.patch(
        "/{endpoint_id}",
        summary="Change an endpoint: URL, event types, description, enabled",
        responses=problems(403, s403=s403, s404=s404),
    )
    async def change(
        agency: AgencyDep,
        endpoint_id: EndpointId,
        body: Annotated[EndpointPatch, Body(openapi_examples=CHANGE_EXAMPLES)],
    ) -> Any:
        command = endpoints.ChangeEndpoint(
            agency.id,
            endpoint_id,
            url=body.url,
            event_types=list(body.event_types) if body.event_types is not None else None,
            description=body.description,
            enabled=body.enabled,
        )
        async with pool().acquire() as conn:
            return _json(await endpoints.change(conn, command, policy=policy, now=clock.now()))

    @router.delete(
        "/{endpoint_id}",
        status_code=204,
        summary="Delete an endpoint (its deliveries not yet made are cancelled)",
        responses=problems(403, s403=s403, s404=s404),
    )
    async def delete(agency: AgencyDep, endpoint_id: EndpointId) -> Response:
        async with pool().acquire() as conn:
            await endpoints.delete(conn, endpoint_id, agency.id, now=clock.now())
        return Response(status_code=204)

    @router.post(
        "/{endpoint_id}/secret/rotate",
        summary="A new signing secret (in this answer only); the old one signs too "
        "during the overlap",
        responses=problems(403, s403=s403, s404=s404),
    )
    async def rotate(
        agency: AgencyDep,
        endpoint_id: EndpointId,
        body: Annotated[RotateIn | None, Body(openapi_examples=ROTATE_EXAMPLES)] = None,
    ) -> dict[str, Any]:
        overlap = timedelta(hours=(body or RotateIn()).overlap_hours)
        async with pool().acquire() as conn:
            rotated, secret = await endpoints.rotate_secret(
                conn, endpoint_id, agency.id, overlap=overlap, box=box, now=clock.now()
            )
        return _json(rotated) | {"secret": secret}

    @router.get(
        "/{endpoint_id}/deliveries",
        summary="An endpoint's delivery log, newest first (no bodies)",
        responses=problems(403, s403=s403, s404=s404),
    )
    async def deliveries(
        agency: AgencyDep,
        endpoint_id: EndpointId,
        status: Annotated[
            Literal["pending", "sending", "sent", "failed", "held", "cancelled"] | None,
            Query(description="Only deliveries in this status"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> dict[str, Any]:
        async with pool().acquire() as conn:
            log = await endpoints.delivery_log(
                conn, endpoint_id, agency.id, limit=limit, status=status
            )
        return {"endpoint_id": str(endpoint_id), "deliveries": [_json(e) for e in log]}

    @router.post(
        "/{endpoint_id}/deliveries/{delivery_id}/redeliver",
        status_code=202,
        summary="Send a delivery again (same webhook-id), now",
        responses=problems(
            403,
            404,
            409,
            410,
            s403=s403,
            s404="No such delivery of this agency's endpoint",
            s409="The endpoint is disabled: enable it first",
            s410="The delivery's case was erased",
        ),
    )
    async def redeliver(
        agency: AgencyDep,
        endpoint_id: EndpointId,
        delivery_id: Annotated[UUID, Path(description="The delivery's notification_id")],
    ) -> dict[str, Any]:
        async with pool().acquire() as conn:
            again = await endpoints.redeliver(
                conn, endpoint_id, delivery_id, agency.id, now=clock.now()
            )
        return _json(again)

    return router


def _json(entry: dict[str, Any]) -> dict[str, Any]:
    def one(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, UUID):
            return str(value)
        if isinstance(value, list):
            return [one(v) for v in value]
        return value

    return {key: one(value) for key, value in entry.items()}


class PartnerEvent(BaseModel):
    """What a partner's endpoint receives: one event in CloudEvents structured JSON,
    exactly as published on the topics (pseudonymous: never a child's identity)."""

    specversion: Literal["1.0"]
    id: str = Field(description="The event's id (ce_id): the same on the agency's topic")
    type: EventType
    source: str = Field(description="The producing service, /enlace/<service>")
    subject: UUID = Field(description="The case id")
    time: datetime
    datacontenttype: Literal["application/json"]
    dataschema: str = Field(description="urn:enlace:schema:<type>.v1 (contracts/schemas/)")
    traceparent: str = Field(description="W3C trace context")
    data: dict[str, Any] = Field(description="The event's data, as its JSON Schema says")


def document_webhooks(app: FastAPI) -> None:
    """The OpenAPI `webhooks` entry: the request Enlace sends a partner's endpoint
    (Standard Webhooks headers, the CloudEvent body) and what each answer does."""

    @app.webhooks.post(
        "partner-event",
        summary="An event that concerns the agency, to each of its endpoints",
        description=(
            "Verify `webhook-signature` (Standard Webhooks: `v1,` + base64 HMAC-SHA256 of "
            "`<webhook-id>.<webhook-timestamp>.<body>` keyed with the secret after "
            "`whsec_`; during a rotation one per secret, space-separated) and refuse a "
            "timestamp more than 5 minutes off. Deduplicate on `webhook-id`. Answer 2xx "
            "within 15 s; 410 disables the endpoint; 429, 502, 503 and 504 pause it "
            "(`Retry-After`); anything else is retried on the Standard Webhooks schedule."
        ),
        tags=["partner webhooks"],
        status_code=204,
        responses={
            410: {"description": "Gone: Enlace disables the endpoint"},
            429: {"description": "Enlace pauses the endpoint for `Retry-After` seconds"},
            503: {"description": "Enlace pauses the endpoint for `Retry-After` seconds"},
        },
    )
    def partner_event(  # documentation only: Enlace sends this, it never receives it
        body: Annotated[PartnerEvent, Body(media_type="application/cloudevents+json")],
        webhook_id: Annotated[
            str, Header(alias="webhook-id", description="msg_<hex>: your idempotency key")
        ],
        webhook_timestamp: Annotated[
            int, Header(alias="webhook-timestamp", description="Unix seconds, signed")
        ],
        webhook_signature: Annotated[
            str, Header(alias="webhook-signature", description="v1,<base64> [v1,<base64>]")
        ],
    ) -> None:
        return None
