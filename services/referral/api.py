"""Referral's HTTP API.

Partner agencies: the service directory, their incoming and outgoing referrals, and
the lifecycle steps (receiver: acknowledge, accept, reject, start, close; sender:
confirm a proposal, cancel, or refer by hand). Operations: the directory admin API.

An agency sees a referral it sent, or one addressed to it once it was sent; anything
else is answered exactly like a missing referral.
"""

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any
from uuid import UUID, uuid4

import httpx
from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from contracts.codes import (
    CancellationReason,
    ClosureOutcome,
    CountryCode,
    ReferralState,
    RegionCode,
    RejectionReason,
    RiskLevel,
    ServiceType,
)
from contracts.envelope import new_traceparent, trace_id_of
from contracts.events import StaffId
from services.kit.clock import Clock
from services.kit.db import Conn as Connection
from services.kit.db import Pool
from services.kit.http import Agency, Problem, invalid_field, not_found, parse_id
from services.kit.logging import get_logger
from services.referral import lifecycle, store
from services.referral.directory import DirectoryCache
from services.referral.domain import (
    DISCLOSING_STATES,
    TRANSITIONS,
    Action,
    CaseProfile,
    Deadlines,
    Organization,
    Party,
    ReferralFacts,
    TransitionNotAllowed,
    consent_covers,
    next_state,
)
from services.referral.handlers import ReferralMetrics

log = get_logger(__name__)

CLOCK_SKEW = timedelta(minutes=10)


# --- bodies and views ----------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BestInterestDecision(_Body):
    """A documented best-interest decision: who took it, when, and why."""

    decided_by: StaffId
    decided_at: datetime
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class ConfirmBody(_Body):
    best_interest: BestInterestDecision | None = Field(
        default=None, description="Needed when the case's consent does not cover this service"
    )


class RejectBody(_Body):
    reason: RejectionReason


class CloseBody(_Body):
    outcome: ClosureOutcome


class CancelBody(_Body):
    reason: CancellationReason


class NewReferralBody(_Body):
    case_id: UUID
    service_id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,80}$")]
    urgency: RiskLevel | None = Field(default=None, description="Defaults to the case's risk")
    best_interest: BestInterestDecision | None = None


class Identity(BaseModel):
    """The child's identifying details, from intake, for the service to be delivered."""

    child: dict[str, Any]
    location: dict[str, Any]
    guardian: dict[str, Any] | None


class ReferralView(BaseModel):
    referral_id: UUID
    case_id: UUID
    reference: str
    state: ReferralState
    version: int
    from_agency_id: str
    to_agency_id: str
    service_id: str
    service_type: ServiceType
    urgency: RiskLevel
    case_country: str
    case_region: str
    service_country: str
    cross_border: bool
    routing_rule: str | None
    mandatory: bool
    respond_by: datetime | None
    rejection_reason: RejectionReason | None
    closure_outcome: ClosureOutcome | None
    cancellation_reason: CancellationReason | None
    best_interest: dict[str, Any] | None = Field(description="Shown to the sending agency only")
    created_at: datetime
    sent_at: datetime | None
    updated_at: datetime
    your_role: Party
    allowed_actions: list[Action] = Field(description="What the caller may do now")
    identity: Identity | None = None
    identity_status: str | None = Field(
        default=None,
        description="Receiving agency only: disclosed | after_acceptance_only | "
        "consent_withdrawn | unavailable",
    )


class ReferralPage(BaseModel):
    items: list[ReferralView]
    next_cursor: str | None


class ServiceView(BaseModel):
    organization: dict[str, Any]
    service: dict[str, Any]


class DirectoryView(BaseModel):
    version: int
    organizations: list[Organization]


class ContactPointView(BaseModel):
    id: str
    name: str
    phone: str | None
    email: str | None
    language: str
    time_zone: str
    channels: list[str]


class ServiceContactsView(BaseModel):
    id: str
    contacts: list[ContactPointView]


class AgencyContactsView(BaseModel):
    id: str
    name: str
    focal_point: ContactPointView | None
    supervisor: ContactPointView | None
    services: list[ServiceContactsView]


class ContactDirectoryView(BaseModel):
    """Who is told about what, for the notifications service: the directory's contact
    points only, never sent on a topic."""

    version: int
    organizations: list[AgencyContactsView]


def contact_directory(version: int, organizations: list[Organization]) -> ContactDirectoryView:
    def point(c: Any) -> ContactPointView:
        return ContactPointView.model_validate(c.model_dump(mode="json"))

    return ContactDirectoryView(
        version=version,
        organizations=[
            AgencyContactsView(
                id=o.id,
                name=o.name,
                focal_point=point(o.focal_point),
                supervisor=point(o.supervisor),
                services=[
                    ServiceContactsView(id=s.id, contacts=[point(c) for c in s.contacts])
                    for s in o.services
                ],
            )
            for o in organizations
        ],
    )


# --- helpers -----------------------------------------------------------------------------------


def _role(referral: store.StoredReferral, agency: Agency) -> Party | None:
    if referral.facts.from_agency_id == agency.id:
        return Party.SENDER
    if referral.facts.to_agency_id == agency.id and referral.sent_at is not None:
        return Party.RECEIVER
    return None


def _allowed(referral: store.StoredReferral, role: Party) -> list[Action]:
    return [
        a for a, t in TRANSITIONS.items() if t.party is role and referral.state in t.from_states
    ]


def _view(referral: store.StoredReferral, role: Party) -> ReferralView:
    f = referral.facts
    return ReferralView(
        referral_id=f.referral_id,
        case_id=f.case_id,
        reference=f.reference,
        state=referral.state,
        version=referral.version,
        from_agency_id=f.from_agency_id,
        to_agency_id=f.to_agency_id,
        service_id=f.service_id,
        service_type=f.service_type,
        urgency=f.urgency,
        case_country=f.case_country,
        case_region=f.case_region,
        service_country=f.service_country,
        cross_border=f.cross_border,
        routing_rule=referral.routing_rule,
        mandatory=referral.mandatory,
        respond_by=referral.respond_by,
        rejection_reason=referral.rejection_reason,
        closure_outcome=referral.closure_outcome,
        cancellation_reason=referral.cancellation_reason,
        best_interest=referral.best_interest if role is Party.SENDER else None,
        created_at=referral.created_at,
        sent_at=referral.sent_at,
        updated_at=referral.updated_at,
        your_role=role,
        allowed_actions=_allowed(referral, role),
    )


def _etag(version: int) -> str:
    return f'"{version}"'


def _matches(if_match: str, version: int) -> bool:
    tags = [t.strip().removeprefix("W/").strip('"') for t in if_match.split(",")]
    return "*" in tags or str(version) in tags


def _encode_cursor(referral: store.StoredReferral) -> str:
    raw = f"{referral.created_at.isoformat()}|{referral.referral_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, referral_id = raw.split("|")
        return datetime.fromisoformat(moment), UUID(referral_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid_field("query.cursor", "not a cursor this API returned") from None


def _check_decision(decision: BestInterestDecision | None, now: datetime, field: str) -> None:
    if decision is None:
        return
    if decision.decided_at.tzinfo is None:
        raise invalid_field(f"{field}.decided_at", "needs a time zone offset")
    if decision.decided_at > now + CLOCK_SKEW:
        raise invalid_field(f"{field}.decided_at", "is in the future")


def _consent_problem(case: store.StoredCase, service_type: ServiceType) -> Problem:
    consent = case.event.consent
    return Problem(
        409,
        "Consent does not cover this referral",
        f"The case's recorded consent (basis {consent.basis.value}"
        + (f", scope {consent.scope.value}" if consent.scope else "")
        + f") does not cover sharing it for {service_type.value}. Record a best-interest "
        "decision (best_interest: decided_by, decided_at, reason) to send it.",
        reason="consent_does_not_cover_service",
    )


def _withdrawn_problem() -> Problem:
    return Problem(
        409,
        "Consent withdrawn",
        "Consent to share this case was withdrawn; it cannot be referred.",
        reason="consent_withdrawn",
    )


@dataclass
class ApiContext:
    pool_of: Callable[[], Pool]
    directory: DirectoryCache
    deadlines: Deadlines
    clock: Clock
    source: str
    metrics: ReferralMetrics
    intake: Callable[[], httpx.AsyncClient]
    internal_api_key: str


# --- router ----------------------------------------------------------------------------------


def build_router(
    ctx: ApiContext,
    current_agency: Callable[..., Awaitable[Agency]],
    operations: Callable[..., Awaitable[Agency]],
    internal: Callable[..., Awaitable[Agency]],
) -> APIRouter:
    router = APIRouter()
    CurrentAgency = Annotated[Agency, Depends(current_agency)]
    Operations = Annotated[Agency, Depends(operations)]
    Internal = Annotated[Agency, Depends(internal)]
    IfMatch = Annotated[
        str | None, Header(alias="If-Match", description="ETag of the version you saw")
    ]
    Traceparent = Annotated[str | None, Header(alias="traceparent", include_in_schema=False)]

    # --- directory ------------------------------------------------------------------------

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
        if region is not None and country is not None and not region.startswith(f"{country}-"):
            raise invalid_field("query.region", f"region {region} is not in country {country}")
        country = country or (region.split("-")[0] if region else None)
        out = []
        for offer in ctx.directory.offers:
            s = offer.service
            if type is not None and s.type is not type:
                continue
            if accepting is not None and s.accepting_referrals != accepting:
                continue
            if country is not None and not (
                s.coverage.admits(country, region)
                if region
                else country in s.coverage.countries or country in s.coverage.accepts_from_countries
            ):
                continue
            org = offer.organization
            out.append(
                ServiceView(
                    organization={
                        "id": org.id,
                        "name": org.name,
                        "kind": org.kind.value,
                        "country": org.country,
                    },
                    service=s.model_dump(mode="json"),
                )
            )
        return out

    @router.get(
        "/v1/admin/directory",
        response_model=DirectoryView,
        tags=["admin"],
        summary="The whole directory (operations only)",
    )
    async def read_directory(_: Operations) -> DirectoryView:
        return DirectoryView(
            version=ctx.directory.version, organizations=ctx.directory.directory.organizations
        )

    @router.get(
        "/internal/v1/contact-directory",
        response_model=ContactDirectoryView,
        tags=["internal"],
        summary="Contact points of every organisation and service (Enlace services only)",
        responses={304: {"description": "Unchanged since the ETag in If-None-Match"}},
    )
    async def read_contact_directory(
        _: Internal,
        if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
    ) -> Response:
        """What the notifications service needs to tell people, read fresh from the
        database so that an edit made through any replica is seen at once."""
        async with store.connection(ctx.pool_of()) as conn:
            version = await store.directory_version(conn)
            if if_none_match is not None and _matches(if_none_match, version):
                return Response(status_code=304, headers={"ETag": _etag(version)})
            await ctx.directory.refresh(conn)
        view = contact_directory(ctx.directory.version, ctx.directory.directory.organizations)
        return JSONResponse(view.model_dump(mode="json"), headers={"ETag": _etag(view.version)})

    @router.put(
        "/v1/admin/directory/organizations/{organization_id}",
        response_model=Organization,
        tags=["admin"],
        summary="Add or replace an organisation and its services",
    )
    async def put_organization(
        organization_id: str, organization: Organization, response: Response, _: Operations
    ) -> Organization:
        if organization.id != organization_id:
            raise invalid_field("id", f"must equal the id in the path ({organization_id})")
        if organization.id not in ctx.directory.known_agencies:
            raise invalid_field("id", "is not an agency of agencies.yaml")
        async with store.transaction(ctx.pool_of()) as conn:
            await _lock_directory(conn)
            await ctx.directory.refresh(conn)
            try:
                ctx.directory.directory.with_organization(organization)
            except ValueError as exc:
                raise invalid_field("services", _first_error(exc)) from None
            created = await store.upsert_organization(conn, organization.model_dump(mode="json"))
        async with store.connection(ctx.pool_of()) as conn:
            await ctx.directory.refresh(conn)
        response.status_code = 201 if created else 200
        log.info("directory organisation saved", organization_id=organization.id, created=created)
        return organization

    @router.delete(
        "/v1/admin/directory/organizations/{organization_id}",
        status_code=204,
        tags=["admin"],
        summary="Remove an organisation from the directory",
    )
    async def delete_organization(organization_id: str, _: Operations) -> Response:
        async with store.transaction(ctx.pool_of()) as conn:
            await _lock_directory(conn)
            deleted = await store.delete_organization(conn, organization_id)
        if not deleted:
            raise not_found("organization")
        async with store.connection(ctx.pool_of()) as conn:
            await ctx.directory.refresh(conn)
        log.info("directory organisation removed", organization_id=organization_id)
        return Response(status_code=204)

    # --- referrals: reading -----------------------------------------------------------------

    @router.get(
        "/v1/referrals",
        response_model=ReferralPage,
        tags=["referrals"],
        summary="Referrals addressed to, or sent by, your agency (oldest first)",
    )
    async def list_referrals(
        agency: CurrentAgency,
        direction: Annotated[str | None, Query(pattern="^(incoming|outgoing)$")] = None,
        state: Annotated[list[ReferralState] | None, Query()] = None,
        case_id: Annotated[UUID | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> ReferralPage:
        after = _decode_cursor(cursor) if cursor else None
        async with store.connection(ctx.pool_of()) as conn:
            page = await store.list_referrals(
                conn,
                agency_id=agency.id,
                direction=direction,
                states=[s.value for s in state or []],
                case_id=case_id,
                after=after,
                limit=limit,
            )
        items = []
        for referral in page.items:
            role = _role(referral, agency)
            assert role is not None
            items.append(_view(referral, role))
        next_cursor = _encode_cursor(page.items[-1]) if page.has_more and page.items else None
        return ReferralPage(items=items, next_cursor=next_cursor)

    @router.get(
        "/v1/referrals/{referral_id}",
        response_model=ReferralView,
        tags=["referrals"],
        summary="One referral; with the child's identifying details for the "
        "receiving agency once it accepted (audited)",
    )
    async def read_referral(referral_id: str, agency: CurrentAgency) -> JSONResponse:
        async with store.connection(ctx.pool_of()) as conn:
            referral = await store.get_referral(conn, parse_id(referral_id, "referral"))
            role = _role(referral, agency) if referral else None
            if referral is None or role is None:
                raise not_found("referral")
            case = await store.get_case(conn, referral.case_id)
        view = _view(referral, role)
        if role is Party.RECEIVER:
            assert case is not None
            view.identity, view.identity_status = await _disclose(referral, case, agency)
        return JSONResponse(view.model_dump(mode="json"), headers={"ETag": _etag(view.version)})

    async def _disclose(
        referral: store.StoredReferral, case: store.StoredCase, agency: Agency
    ) -> tuple[Identity | None, str]:
        if case.consent_withdrawn_at is not None:
            return None, "consent_withdrawn"
        if referral.state not in DISCLOSING_STATES:
            return None, "after_acceptance_only"
        purpose = f"delivery of {referral.facts.service_type.value} under an accepted referral"
        try:
            answer = await ctx.intake().get(
                f"/internal/v1/cases/{referral.case_id}/identity",
                params={
                    "on_behalf_of": agency.id,
                    "purpose": purpose,
                    "referral_id": str(referral.referral_id),
                },
                headers={"Authorization": f"Bearer {ctx.internal_api_key}"},
            )
        except httpx.HTTPError as exc:
            log.warning(
                "intake unreachable for a disclosure",
                error=exc.__class__.__name__,
                referral_id=str(referral.referral_id),
            )
            return None, "unavailable"
        if answer.status_code == 409:
            return None, "consent_withdrawn"
        if answer.status_code != 200:
            log.warning(
                "intake refused a disclosure",
                status=answer.status_code,
                referral_id=str(referral.referral_id),
            )
            return None, "unavailable"
        body = answer.json()
        identity = Identity(
            child=body["child"], location=body["location"], guardian=body.get("guardian")
        )
        fields = ["child", "location"] + (["guardian"] if identity.guardian else [])
        async with store.connection(ctx.pool_of()) as conn:
            await store.record_disclosure(
                conn,
                referral_id=referral.referral_id,
                case_id=referral.case_id,
                agency_id=agency.id,
                fields=fields,
                purpose=purpose,
                at=ctx.clock.now(),
            )
        ctx.metrics.disclosures.inc()
        log.info(
            "identity disclosed",
            referral_id=str(referral.referral_id),
            case_id=str(referral.case_id),
            to_agency=agency.id,
        )
        return identity, "disclosed"

    # --- referrals: by hand -------------------------------------------------------------------

    @router.post(
        "/v1/referrals",
        status_code=201,
        response_model=ReferralView,
        tags=["referrals"],
        summary="Refer one of your cases to a service by hand",
    )
    async def create_referral(
        body: NewReferralBody, agency: CurrentAgency, traceparent: Traceparent = None
    ) -> JSONResponse:
        now = ctx.clock.now()
        _check_decision(body.best_interest, now, "best_interest")
        offer = next((o for o in ctx.directory.offers if o.service.id == body.service_id), None)
        if offer is None:
            raise invalid_field("service_id", "no such service in the directory")
        async with store.transaction(ctx.pool_of()) as conn:
            case = await store.lock_case(conn, body.case_id)
            if case is None or case.registering_agency_id != agency.id:
                raise not_found("case")
            profile = CaseProfile.from_event(case.event)
            if offer.organization.id == agency.id:
                raise invalid_field("service_id", "is a service of your own agency")
            if not offer.service.accepting_referrals:
                raise invalid_field("service_id", "is not accepting referrals")
            if not offer.service.coverage.admits(profile.country, profile.region):
                raise invalid_field("service_id", f"does not take cases from {profile.region}")
            refused = offer.service.eligibility.refuses(profile)
            if refused:
                raise invalid_field("service_id", f"the child is not eligible ({refused})")
            if case.consent_withdrawn_at is not None:
                raise _withdrawn_problem()
            if body.best_interest is None and not consent_covers(
                profile.consent, offer.service.type
            ):
                raise _consent_problem(case, offer.service.type)
            if await store.has_open_referral(conn, case.case_id, offer.service.id):
                raise Problem(
                    409,
                    "Already referred",
                    "This case has an open referral to this service.",
                    reason="duplicate_referral",
                )
            facts = ReferralFacts(
                referral_id=uuid4(),
                case_id=case.case_id,
                reference=case.reference,
                from_agency_id=agency.id,
                to_agency_id=offer.organization.id,
                service_id=offer.service.id,
                service_type=offer.service.type,
                urgency=body.urgency or profile.risk_level,
                case_country=profile.country,
                case_region=profile.region,
                service_country=offer.service_country(profile.country),
            )
            new = lifecycle.new_by_hand(
                facts,
                now=now,
                deadlines=ctx.deadlines,
                best_interest=body.best_interest.model_dump(mode="json")
                if body.best_interest
                else None,
            )
            await store.insert_referrals(conn, [new])
            await lifecycle.publish(
                conn,
                [lifecycle.initial_event(new)],
                source=ctx.source,
                traceparent=new_traceparent(trace_id_of(traceparent)),
            )
            referral = await store.get_referral(conn, facts.referral_id)
        assert referral is not None
        ctx.metrics.referrals_created.labels("sent", facts.service_type.value).inc()
        log.info(
            "referral sent by hand",
            referral_id=str(facts.referral_id),
            case_id=str(facts.case_id),
            to_agency=facts.to_agency_id,
        )
        view = _view(referral, Party.SENDER)
        return JSONResponse(
            view.model_dump(mode="json"),
            status_code=201,
            headers={"ETag": _etag(view.version), "Location": f"/v1/referrals/{facts.referral_id}"},
        )

    # --- referrals: lifecycle -----------------------------------------------------------------

    async def _step(
        referral_id: str,
        agency: Agency,
        action: Action,
        if_match: str | None,
        traceparent: str | None,
        **details: Any,
    ) -> JSONResponse:
        now = ctx.clock.now()
        transition = TRANSITIONS[action]
        rid = parse_id(referral_id, "referral")
        async with store.transaction(ctx.pool_of()) as conn:
            referral = await store.get_referral(conn, rid)
            if referral is None or _role(referral, agency) is None:
                raise not_found("referral")
            case = await store.lock_case(conn, referral.case_id)
            referral = await store.get_referral(conn, rid)  # again, under the case lock
            assert referral is not None
            assert case is not None
            role = _role(referral, agency)
            if role is not transition.party:
                raise Problem(
                    403,
                    "Not your step",
                    f"Only the {transition.party.value} agency can {action.value} a referral.",
                )
            if if_match is not None and not _matches(if_match, referral.version):
                raise Problem(
                    412,
                    "Stale version",
                    f"The referral is at version {referral.version} "
                    f"(ETag {_etag(referral.version)}); read it again.",
                    current_version=referral.version,
                )
            try:
                next_state(referral.state, action)
            except TransitionNotAllowed as exc:
                raise Problem(
                    409,
                    "Transition not allowed",
                    str(exc),
                    current_state=exc.current.value,
                    allowed_from=[s.value for s in exc.allowed_from],
                ) from None
            if action is Action.CONFIRM:
                await _check_consent(conn, case, referral, details, now)
            updated = await lifecycle.transition(
                conn,
                referral,
                action,
                now=now,
                deadlines=ctx.deadlines,
                source=ctx.source,
                traceparent=new_traceparent(trace_id_of(traceparent)),
                **details,
            )
        log.info(
            "referral transition",
            referral_id=str(rid),
            action=action.value,
            state=updated.state.value,
            version=updated.version,
            agency_id=agency.id,
        )
        view = _view(updated, transition.party)
        return JSONResponse(view.model_dump(mode="json"), headers={"ETag": _etag(view.version)})

    async def _check_consent(
        conn: Connection,
        case: store.StoredCase,
        referral: store.StoredReferral,
        details: dict[str, Any],
        now: datetime,
    ) -> None:
        if case.consent_withdrawn_at is not None:
            raise _withdrawn_problem()
        decision = details.get("best_interest")
        if (
            decision is None
            and referral.best_interest is None
            and not consent_covers(case.event.consent, referral.facts.service_type)
        ):
            raise _consent_problem(case, referral.facts.service_type)

    @router.post(
        "/v1/referrals/{referral_id}/confirm",
        response_model=ReferralView,
        tags=["lifecycle"],
        summary="Sender: send a proposed referral",
    )
    async def confirm(
        referral_id: str,
        agency: CurrentAgency,
        body: ConfirmBody | None = None,
        if_match: IfMatch = None,
        traceparent: Traceparent = None,
    ) -> JSONResponse:
        decision = body.best_interest if body else None
        _check_decision(decision, ctx.clock.now(), "best_interest")
        return await _step(
            referral_id,
            agency,
            Action.CONFIRM,
            if_match,
            traceparent,
            best_interest=decision.model_dump(mode="json") if decision else None,
        )

    @router.post(
        "/v1/referrals/{referral_id}/acknowledge",
        response_model=ReferralView,
        tags=["lifecycle"],
        summary="Receiver: acknowledge receipt",
    )
    async def acknowledge(
        referral_id: str,
        agency: CurrentAgency,
        if_match: IfMatch = None,
        traceparent: Traceparent = None,
    ) -> JSONResponse:
        return await _step(referral_id, agency, Action.ACKNOWLEDGE, if_match, traceparent)

    @router.post(
        "/v1/referrals/{referral_id}/accept",
        response_model=ReferralView,
        tags=["lifecycle"],
        summary="Receiver: accept the referral",
    )
    async def accept(
        referral_id: str,
        agency: CurrentAgency,
        if_match: IfMatch = None,
        traceparent: Traceparent = None,
    ) -> JSONResponse:
        return await _step(referral_id, agency, Action.ACCEPT, if_match, traceparent)

    @router.post(
        "/v1/referrals/{referral_id}/reject",
        response_model=ReferralView,
        tags=["lifecycle"],
        summary="Receiver: reject, with a reason",
    )
    async def reject(
        referral_id: str,
        body: RejectBody,
        agency: CurrentAgency,
        if_match: IfMatch = None,
        traceparent: Traceparent = None,
    ) -> JSONResponse:
        return await _step(
            referral_id, agency, Action.REJECT, if_match, traceparent, rejection_reason=body.reason
        )

    @router.post(
        "/v1/referrals/{referral_id}/start",
        response_model=ReferralView,
        tags=["lifecycle"],
        summary="Receiver: the service has started",
    )
    async def start(
        referral_id: str,
        agency: CurrentAgency,
        if_match: IfMatch = None,
        traceparent: Traceparent = None,
    ) -> JSONResponse:
        return await _step(referral_id, agency, Action.START, if_match, traceparent)

    @router.post(
        "/v1/referrals/{referral_id}/close",
        response_model=ReferralView,
        tags=["lifecycle"],
        summary="Receiver: close the loop, with the outcome",
    )
    async def close(
        referral_id: str,
        body: CloseBody,
        agency: CurrentAgency,
        if_match: IfMatch = None,
        traceparent: Traceparent = None,
    ) -> JSONResponse:
        return await _step(
            referral_id, agency, Action.CLOSE, if_match, traceparent, outcome=body.outcome
        )

    @router.post(
        "/v1/referrals/{referral_id}/cancel",
        response_model=ReferralView,
        tags=["lifecycle"],
        summary="Sender: cancel (or drop a proposal)",
    )
    async def cancel(
        referral_id: str,
        body: CancelBody,
        agency: CurrentAgency,
        if_match: IfMatch = None,
        traceparent: Traceparent = None,
    ) -> JSONResponse:
        return await _step(
            referral_id,
            agency,
            Action.CANCEL,
            if_match,
            traceparent,
            cancellation_reason=body.reason,
        )

    return router


async def _lock_directory(conn: Connection) -> None:
    """Serialise directory edits across replicas."""
    await conn.execute("SELECT version FROM directory_version FOR UPDATE")


def _first_error(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        return str(exc.errors(include_url=False)[0]["msg"])
    return str(exc)
