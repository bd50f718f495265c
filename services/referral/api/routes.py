"""The partner API's routes. Each maps a request to one use case of
services/referral/commands and its result to a response; the kit answers the use
cases' refusals (services/kit/errors.py) as problem responses, so no route catches
them. What stays here is HTTP: authentication and roles (dependencies), malformed
ids, ETags and If-Match / If-None-Match, cursors, status codes, Location.

The lifecycle routes are generated from the transition table: one
`POST /v1/referrals/{referral_id}/{action}` per `Action`, described in `STEP_ROUTES`.
"""

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Header, Query, Response
from fastapi.responses import JSONResponse

from contracts.codes import CountryCode, ReferralState, RegionCode, ServiceType
from contracts.envelope import trace_id_of
from services.kit.cursor import decode_cursor, encode_cursor
from services.kit.db import Pool
from services.kit.http import Agency, Role, parse_id, roles_dependency
from services.kit.openapi import problems
from services.referral import commands
from services.referral.api import examples
from services.referral.api.models import (
    CancelBody,
    CloseBody,
    ConfirmBody,
    ContactDirectoryView,
    DirectoryView,
    Identity,
    NewReferralBody,
    ReferralPage,
    ReferralView,
    RejectBody,
    ServiceView,
    StepBody,
    contact_directory,
    referral_view,
)
from services.referral.domain.directory import Organization, ServiceQuery
from services.referral.domain.lifecycle import TRANSITIONS, Action, Party, StepDetails

AgencyDependency = Callable[..., Awaitable[Agency]]


@dataclass(frozen=True)
class StepRoute:
    """How one lifecycle step is offered: what it does (the summary starts with the
    party that takes it) and its body, if it has one."""

    summary: str
    body: type[StepBody] | None = None
    body_required: bool = True


STEP_ROUTES: dict[Action, StepRoute] = {
    Action.CONFIRM: StepRoute("send a proposed referral", ConfirmBody, body_required=False),
    Action.ACKNOWLEDGE: StepRoute("acknowledge receipt"),
    Action.ACCEPT: StepRoute("accept the referral"),
    Action.REJECT: StepRoute("reject, with a reason", RejectBody),
    Action.START: StepRoute("the service has started"),
    Action.CLOSE: StepRoute("close the loop, with the outcome", CloseBody),
    Action.CANCEL: StepRoute("cancel (or drop a proposal)", CancelBody),
}
assert set(STEP_ROUTES) == set(TRANSITIONS), "every action of the lifecycle has a route"
PARTY_NAMES = {Party.SENDER: "Sender", Party.RECEIVER: "Receiver"}
DIRECTIONS = {"incoming": Party.RECEIVER, "outgoing": Party.SENDER}

IfMatch = Annotated[str | None, Header(alias="If-Match", description="ETag of the version you saw")]
Traceparent = Annotated[str | None, Header(alias="traceparent", include_in_schema=False)]


def build_router(
    ctx: commands.Context,
    pool_of: Callable[[], Pool],
    current_agency: AgencyDependency,
    operations: AgencyDependency,
    internal: AgencyDependency,
) -> APIRouter:
    router = APIRouter()
    CurrentAgency = Annotated[Agency, Depends(current_agency)]
    # Referrals are partner agencies' business: a service or operator key gets 403.
    Partner = Annotated[Agency, Depends(roles_dependency(current_agency, Role.AGENCY))]
    Operations = Annotated[Agency, Depends(operations)]
    Internal = Annotated[Agency, Depends(internal)]

    # --- directory --------------------------------------------------------------------

    @router.get(
        "/v1/services",
        response_model=list[ServiceView],
        tags=["directory"],
        summary="Services of the directory, by type and where they take cases from",
    )
    async def list_services(
        _: CurrentAgency,
        type: Annotated[ServiceType | None, Query()] = None,
        country: Annotated[CountryCode | None, Query()] = None,
        region: Annotated[RegionCode | None, Query()] = None,
        accepting: Annotated[bool | None, Query()] = None,
    ) -> list[ServiceView]:
        offers = commands.find_services(ctx, ServiceQuery(type, country, region, accepting))
        return [
            ServiceView(
                organization={
                    "id": o.organization.id,
                    "name": o.organization.name,
                    "kind": o.organization.kind.value,
                    "country": o.organization.country,
                },
                service=o.service.model_dump(mode="json"),
            )
            for o in offers
        ]

    @router.get(
        "/v1/admin/directory",
        response_model=DirectoryView,
        tags=["admin"],
        summary="The whole directory (operations only)",
        responses=problems(404, s404="Not an operations key (the route is not shown)"),
    )
    async def read_directory(_: Operations) -> DirectoryView:
        snapshot = commands.read_directory(ctx)
        return DirectoryView(version=snapshot.version, organizations=snapshot.organizations or [])

    @router.get(
        "/internal/v1/contact-directory",
        response_model=ContactDirectoryView,
        tags=["internal"],
        summary="Contact points of every organisation and service (Enlace services only)",
        responses={
            304: {"description": "Unchanged since the ETag in If-None-Match"},
            **problems(
                404,
                503,
                s404="Not the principal this route answers (the route is not shown)",
                s503="The directory is not seeded yet; retry shortly",
            ),
        },
    )
    async def read_contact_directory(
        _: Internal,
        if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
    ) -> Response:
        """What the notifications service needs to tell people, read fresh from the
        database so that an edit made through any replica is seen at once."""
        snapshot = await commands.read_contact_directory(pool_of(), ctx, _versions(if_none_match))
        etag = {"ETag": _etag(snapshot.version)}
        if snapshot.organizations is None:
            return Response(status_code=304, headers=etag)
        view = contact_directory(snapshot.version, snapshot.organizations)
        return JSONResponse(view.model_dump(mode="json"), headers=etag)

    @router.put(
        "/v1/admin/directory/organizations/{organization_id}",
        response_model=Organization,
        tags=["admin"],
        summary="Add or replace an organisation and its services",
        responses={
            201: {"description": "Added", "model": Organization},
            **problems(404, s404="Not an operations key (the route is not shown)"),
        },
    )
    async def put_organization(
        organization_id: str,
        organization: Annotated[Organization, Body(openapi_examples=examples.ORGANIZATION)],
        response: Response,
        _: Operations,
    ) -> Organization:
        command = commands.PutOrganization(organization_id, organization)
        created = await commands.put_organization(pool_of(), ctx, command)
        response.status_code = 201 if created else 200
        return organization

    @router.delete(
        "/v1/admin/directory/organizations/{organization_id}",
        status_code=204,
        tags=["admin"],
        summary="Remove an organisation from the directory",
        responses=problems(404, s404="No such organisation, or not an operations key"),
    )
    async def delete_organization(organization_id: str, _: Operations) -> Response:
        await commands.remove_organization(pool_of(), ctx, organization_id)
        return Response(status_code=204)

    # --- referrals --------------------------------------------------------------------

    @router.get(
        "/v1/referrals",
        response_model=ReferralPage,
        tags=["referrals"],
        summary="Referrals addressed to, or sent by, your agency (oldest first)",
        responses=problems(403, s403="Not an agency key (a service or operator key)"),
    )
    async def list_referrals(
        agency: Partner,
        direction: Annotated[str | None, Query(pattern="^(incoming|outgoing)$")] = None,
        state: Annotated[list[ReferralState] | None, Query()] = None,
        case_id: Annotated[UUID | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> ReferralPage:
        command = commands.ListReferrals(
            agency_id=agency.id,
            as_party=DIRECTIONS[direction] if direction else None,
            states=tuple(state or ()),
            case_id=case_id,
            after=decode_cursor(cursor) if cursor else None,
            limit=limit,
        )
        page = await commands.list_referrals(pool_of(), command)
        last = page.items[-1].referral if page.items else None
        return ReferralPage(
            items=[referral_view(seen.referral, seen.role) for seen in page.items],
            next_cursor=(
                encode_cursor(last.created_at, last.referral_id) if page.has_more and last else None
            ),
        )

    @router.get(
        "/v1/referrals/{referral_id}",
        response_model=ReferralView,
        tags=["referrals"],
        summary="One referral; with the child's identifying details for the "
        "receiving agency once it accepted (audited)",
        responses=problems(403, s403="Not an agency key (a service or operator key)"),
    )
    async def read_referral(referral_id: str, agency: Partner) -> JSONResponse:
        command = commands.ReadReferral(parse_id(referral_id, "referral"), agency.id)
        read = await commands.read_referral(pool_of(), ctx, command)
        view = referral_view(read.referral, read.role)
        if read.identity is not None:
            i = read.identity
            view.identity = Identity(child=i.child, location=i.location, guardian=i.guardian)
        view.identity_status = read.identity_status
        return _with_etag(view)

    @router.post(
        "/v1/referrals",
        status_code=201,
        response_model=ReferralView,
        tags=["referrals"],
        summary="Refer one of your cases to a service by hand",
        responses=problems(
            403,
            404,
            409,
            s403="Not an agency key (a service or operator key)",
            s404="No such case of this agency (or not known here yet)",
            s409="The case's consent does not allow it, or an open referral to this service exists",
        ),
    )
    async def create_referral(
        body: Annotated[NewReferralBody, Body(openapi_examples=examples.NEW_REFERRAL)],
        agency: Partner,
        traceparent: Traceparent = None,
    ) -> JSONResponse:
        command = commands.ReferByHand(
            agency_id=agency.id,
            case_id=body.case_id,
            service_id=body.service_id,
            urgency=body.urgency,
            best_interest=body.best_interest,
            trace_id=trace_id_of(traceparent),
        )
        referral = await commands.refer_by_hand(pool_of(), ctx, command)
        view = referral_view(referral, Party.SENDER)
        return _with_etag(view, 201, Location=f"/v1/referrals/{referral.referral_id}")

    # --- lifecycle: one route per action of the transition table -----------------------

    def step_endpoint(action: Action, route: StepRoute) -> Callable[..., Awaitable[JSONResponse]]:
        party = TRANSITIONS[action].party

        async def endpoint(
            referral_id: str,
            agency: Agency,
            if_match: str | None = None,
            traceparent: str | None = None,
            body: StepBody | None = None,
        ) -> JSONResponse:
            command = commands.TakeStep(
                referral_id=parse_id(referral_id, "referral"),
                agency_id=agency.id,
                action=action,
                details=body.details() if body else StepDetails(),
                expected=_versions(if_match),
                trace_id=trace_id_of(traceparent),
            )
            updated = await commands.take_step(pool_of(), ctx, command)
            return _with_etag(referral_view(updated, party))

        # FastAPI reads the request's shape from the signature: give each action its own.
        parameters = [
            inspect.Parameter("referral_id", inspect.Parameter.KEYWORD_ONLY, annotation=str),
            inspect.Parameter("agency", inspect.Parameter.KEYWORD_ONLY, annotation=Partner),
        ]
        if route.body is not None:
            parameters.append(
                inspect.Parameter(
                    "body",
                    inspect.Parameter.KEYWORD_ONLY,
                    annotation=Annotated[
                        route.body if route.body_required else route.body | None,
                        Body(openapi_examples=examples.STEP_BODIES[action]),
                    ],
                    default=inspect.Parameter.empty if route.body_required else None,
                )
            )
        parameters += [
            inspect.Parameter(
                "if_match", inspect.Parameter.KEYWORD_ONLY, annotation=IfMatch, default=None
            ),
            inspect.Parameter(
                "traceparent", inspect.Parameter.KEYWORD_ONLY, annotation=Traceparent, default=None
            ),
        ]
        endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        return endpoint

    for action, transition in TRANSITIONS.items():
        route = STEP_ROUTES[action]
        router.add_api_route(
            f"/v1/referrals/{{referral_id}}/{action.value}",
            step_endpoint(action, route),
            methods=["POST"],
            name=action.value,
            response_model=ReferralView,
            tags=["lifecycle"],
            summary=f"{PARTY_NAMES[transition.party]}: {route.summary}",
            responses=problems(
                403,
                409,
                412,
                s403="Not an agency key, or this step is the other party's",
                s409="The referral's state does not allow this step (the answer lists "
                "the allowed ones), or consent no longer allows it",
                s412="If-Match names an older version of the referral",
            ),
        )

    return router


# --- HTTP details: ETags ------------------------------------------------------


def _etag(version: int) -> str:
    return f'"{version}"'


def _with_etag(view: ReferralView, status_code: int = 200, **headers: str) -> JSONResponse:
    return JSONResponse(
        view.model_dump(mode="json"),
        status_code=status_code,
        headers={"ETag": _etag(view.version), **headers},
    )


def _versions(header: str | None) -> commands.Versions | None:
    """The versions an If-Match / If-None-Match names (`"3"`, `W/"3"`, a list, `*`)."""
    if header is None:
        return None
    tags = [t.strip().removeprefix("W/").strip('"') for t in header.split(",")]
    numbers = frozenset(int(t) for t in tags if t.isascii() and t.isdigit() and str(int(t)) == t)
    return commands.Versions(numbers, any="*" in tags)
