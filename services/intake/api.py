"""Intake's HTTP API: partner agencies (agency keys only: a service or operator key
gets 403) register cases and read their own; the referral service alone gets
identity disclosures, under a grant intake holds, audited; the notifications
service alone gets caseworker contacts; operations keys alone read which cases
matched as possible duplicates (partners learn only that one exists). A case is
erased by the agency that registered it, or by operations with a documented basis;
an erased case answers 410 everywhere. Anyone else is told an internal or
coordination path does not exist (404).

Each route maps the request to a use case in `commands` and its result to a
response; the kit answers the use cases' domain errors as problem responses."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from pydantic import BaseModel, Field

from contracts.codes import ErasureReason, RiskLevel
from services.intake import commands, domain, duplicates, examples
from services.intake.domain import ConsentStatus
from services.intake.vault import Vault
from services.kit.clock import Clock
from services.kit.db import Pool
from services.kit.http import Agency, Problem, Role, parse_id
from services.kit.inputs import Instant, LineText
from services.kit.openapi import problems

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=r"^[A-Za-z0-9._:-]{8,128}$",
        description="Optional; the same key and body always yield the same case",
    ),
]


class CaseReceipt(BaseModel):
    case_id: UUID
    reference: str
    risk_level: RiskLevel
    possible_duplicate: bool = Field(
        description="Another agency registered a case that may be the same child; never "
        "merged. Which case, and whose, is for coordination only"
    )
    registered_at: datetime


class CaseView(CaseReceipt):
    external_id: str
    consent_status: ConsentStatus
    consent_withdrawn_at: datetime | None
    registration: dict[str, Any]


class ConsentWithdrawal(BaseModel):
    model_config = {"extra": "forbid"}
    withdrawn_at: Instant | None = Field(default=None, description="Defaults to now")


class ErasureRequest(BaseModel):
    model_config = {"extra": "forbid"}
    reason: ErasureReason = Field(
        description="Why: data_subject_request, registered_in_error or legal_order "
        "(retention_period_ended is the retention job's own)"
    )
    basis: LineText | None = Field(
        default=None,
        min_length=3,
        max_length=200,
        description="Operations only, and required there: the documented basis of the "
        "decision (a reference to the request, order or ruling; never a child's details)",
    )


class ErasureView(BaseModel):
    case_id: UUID
    reference: str
    reason: ErasureReason
    erased_at: datetime


class IdentityDisclosure(BaseModel):
    case_id: UUID
    reference: str
    child: dict[str, Any]
    location: dict[str, Any]
    guardian: dict[str, Any] | None


class CaseRef(BaseModel):
    case_id: UUID
    reference: str
    registering_agency_id: str
    registered_at: datetime


class PossibleDuplicate(BaseModel):
    case: CaseRef = Field(description="The case flagged as a possible duplicate")
    matches: list[CaseRef] = Field(description="Other agencies' cases it matched, oldest first")


class PossibleDuplicatePage(BaseModel):
    items: list[PossibleDuplicate]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last")


_ERASED = "The case was erased: its identifying details are gone for good"


def _receipt(receipt: commands.Receipt) -> CaseReceipt:
    return CaseReceipt.model_validate(receipt, from_attributes=True)


def _idempotency_key_reused() -> Problem:
    return Problem(
        422,
        "Idempotency-Key reused",
        "This Idempotency-Key was used with a different request.",
        errors=[
            {
                "field": "header.Idempotency-Key",
                "message": "reused with a different body",
                "type": "idempotency_conflict",
            }
        ],
    )


@dataclass(frozen=True)
class Callers:
    """The dependencies that say who may call which route."""

    partner_agency: Callable[..., Awaitable[Agency]]  # agency keys; others 403
    referral_service: Callable[..., Awaitable[Agency]]  # that principal only; others 404
    notifications_service: Callable[..., Awaitable[Agency]]  # idem
    operations: Callable[..., Awaitable[Agency]]  # operations keys only; others 404
    eraser: Callable[..., Awaitable[Agency]]  # agency or operations keys; others 403


def build_router(
    pool_of: Callable[[], Pool], clock: Clock, callers: Callers, source: str, vault: Vault
) -> APIRouter:
    router = APIRouter()
    current_agency = callers.partner_agency

    @router.post(
        "/v1/cases",
        status_code=201,
        response_model=CaseReceipt,
        summary="Register a child at risk",
        responses={
            200: {
                "description": "Replayed: this Idempotency-Key already registered the case",
                "model": CaseReceipt,
            },
            **problems(
                403,
                409,
                s403="Not an agency key (a service or operator key)",
                s409="This agency registered the same external_id already, or is doing so now",
            ),
        },
        tags=["cases"],
    )
    async def register_case(
        registration: Annotated[
            domain.CaseRegistration, Body(openapi_examples=examples.REGISTRATION_EXAMPLES)
        ],
        request: Request,
        response: Response,
        agency: Annotated[Agency, Depends(current_agency)],
        idempotency_key: IdempotencyKey = None,
    ) -> CaseReceipt:
        command = commands.RegisterCase(
            registration=registration,
            agency_id=agency.id,
            idempotency_key=idempotency_key,
            traceparent=request.headers.get("traceparent"),
        )
        try:
            registered = await commands.register_case(
                pool_of(), command, clock=clock, source=source, vault=vault
            )
        except commands.IdempotencyKeyReused:
            raise _idempotency_key_reused() from None
        if registered.replayed:
            response.status_code = 200
            response.headers["Idempotent-Replayed"] = "true"
        return _receipt(registered.receipt)

    @router.get(
        "/v1/cases/{case_id}",
        response_model=CaseView,
        tags=["cases"],
        summary="Read a case this agency registered",
        responses=problems(
            403, 410, s403="Not an agency key (a service or operator key)", s410=_ERASED
        ),
    )
    async def read_case(
        case_id: str, agency: Annotated[Agency, Depends(current_agency)]
    ) -> CaseView:
        async with pool_of().acquire() as conn:
            record = await commands.read_case(conn, parse_id(case_id, "case"), agency.id, vault)
        case = record.case
        return CaseView(
            **_receipt(commands.Receipt.of(case)).model_dump(),
            external_id=case.external_id,
            consent_status=case.consent_status,
            consent_withdrawn_at=case.consent_withdrawn_at,
            registration=record.registration,
        )

    @router.post(
        "/v1/cases/{case_id}/erasure",
        response_model=ErasureView,
        tags=["cases"],
        summary="Erase a case's identifying details for good (registering agency, or "
        "operations with a documented basis)",
        responses=problems(403, s403="Not an agency or operations key"),
    )
    async def erase_case(
        case_id: str,
        request: Annotated[ErasureRequest, Body(openapi_examples=examples.ERASURE_EXAMPLES)],
        response: Response,
        caller: Annotated[Agency, Depends(callers.eraser)],
    ) -> ErasureView:
        """The case's data key is destroyed: its identity can never be read again, in
        any API, backup or copy. Its open referrals are cancelled (reason `erased`)
        and every service removes what it holds that identifies a person; the audit
        (who, when, which referral) stays. A repeat answers with the first erasure
        (`Idempotent-Replayed: true`). Agencies erase their own cases only; operations
        may erase any, and must give `basis`."""
        operations = caller.role == Role.OPERATIONS
        if not operations and request.basis is not None:
            raise Problem(
                422,
                "Invalid request",
                "Invalid fields: basis",
                errors=[
                    {
                        "field": "basis",
                        "message": "for operations only: an agency's request is its own basis",
                        "type": "extra_forbidden",
                    }
                ],
            )
        command = commands.EraseCase(
            case_id=parse_id(case_id, "case"),
            reason=request.reason,
            requested_by=caller.id,
            requester=commands.Requester.OPERATIONS if operations else commands.Requester.AGENCY,
            basis=request.basis,
        )
        async with pool_of().acquire() as conn:
            receipt = await commands.erase_case(conn, command, clock=clock, source=source)
        if receipt.replayed:
            response.headers["Idempotent-Replayed"] = "true"
        return ErasureView.model_validate(receipt, from_attributes=True)

    @router.post(
        "/v1/cases/{case_id}/consent-withdrawal",
        response_model=CaseReceipt,
        tags=["cases"],
        summary="Record that consent to share the case was withdrawn",
        responses=problems(
            403, 410, s403="Not an agency key (a service or operator key)", s410=_ERASED
        ),
    )
    async def withdraw_consent(
        case_id: str,
        withdrawal: Annotated[
            ConsentWithdrawal, Body(openapi_examples=examples.WITHDRAWAL_EXAMPLES)
        ],
        agency: Annotated[Agency, Depends(current_agency)],
    ) -> CaseReceipt:
        command = commands.WithdrawConsent(
            case_id=parse_id(case_id, "case"),
            agency_id=agency.id,
            withdrawn_at=withdrawal.withdrawn_at,
        )
        async with pool_of().acquire() as conn:
            receipt = await commands.withdraw_consent(conn, command, clock=clock, source=source)
        return _receipt(receipt)

    @router.get(
        "/v1/coordination/possible-duplicates",
        response_model=PossibleDuplicatePage,
        tags=["coordination"],
        summary="Cases flagged as possible duplicates and the cases they matched, newest "
        "first (operations only)",
        responses=problems(404, s404="Not an operations key (the route is not shown)"),
    )
    async def possible_duplicates(
        _: Annotated[Agency, Depends(callers.operations)],
        limit: Annotated[int, Query(ge=1, le=100)] = 50,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> PossibleDuplicatePage:
        """Who matched whom, for reconciliation: ids, references, agencies and times,
        no child's details. Partner agencies only ever see `possible_duplicate`."""
        command = commands.ListPossibleDuplicates(
            limit=limit, after=duplicates.decode_cursor(cursor) if cursor else None
        )
        async with pool_of().acquire() as conn:
            page = await commands.possible_duplicates(conn, command)
        return PossibleDuplicatePage.model_validate(
            {
                "items": page.items,
                "next_cursor": duplicates.encode_cursor(page.next) if page.next else None,
            },
            from_attributes=True,
        )

    @router.get(
        "/internal/v1/cases/{case_id}/identity",
        response_model=IdentityDisclosure,
        tags=["internal"],
        include_in_schema=True,
        summary="Identifying details for an agency holding a grant (referral service; audited)",
        responses=problems(
            403,
            409,
            410,
            s403="The on_behalf_of agency holds no live grant on this case",
            s409="Consent to share this case was withdrawn",
            s410=_ERASED,
        ),
    )
    async def disclose_identity(
        case_id: str,
        on_behalf_of: Annotated[
            str,
            Query(
                pattern=r"^[a-z0-9][a-z0-9-]{1,62}$",
                description="The agency the details are for: it must hold a live grant",
            ),
        ],
        purpose: Annotated[LineText, Query(min_length=1, max_length=200)],
        principal: Annotated[Agency, Depends(callers.referral_service)],
        referral_id: UUID | None = None,
    ) -> IdentityDisclosure:
        """The referral service only, for an `on_behalf_of` agency holding a live grant
        on the case (the receiving agency of an accepted referral, learnt from the
        referral events): 403 without one, 409 once consent is withdrawn. With
        `referral_id`, the grant must be that referral's. Every disclosure is written
        to the append-only audit table with the grant's referral id."""
        command = commands.DiscloseIdentity(
            case_id=parse_id(case_id, "case"),
            requested_by=principal.id,
            on_behalf_of=on_behalf_of,
            purpose=purpose,
            referral_id=referral_id,
        )
        async with pool_of().acquire() as conn:
            identity = await commands.disclose_identity(conn, command, vault)
        return IdentityDisclosure.model_validate(identity, from_attributes=True)

    @router.get(
        "/internal/v1/caseworkers/{agency_id}/{staff_id}",
        tags=["internal"],
        summary="Contact details of a caseworker (notifications service only)",
    )
    async def caseworker_contact(
        agency_id: str,
        staff_id: str,
        _: Annotated[Agency, Depends(callers.notifications_service)],
    ) -> dict[str, Any]:
        async with pool_of().acquire() as conn:
            return await commands.caseworker_contact(conn, agency_id, staff_id)

    return router
