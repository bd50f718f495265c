"""Intake's HTTP API: partner agencies register cases and read their own;
internal principals (other Enlace services) get audited identity disclosures."""

import hashlib
import uuid
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel, Field

from contracts.codes import RiskLevel
from contracts.envelope import new_traceparent, trace_id_of
from contracts.events import CaseConsentWithdrawnV1
from contracts.registry import to_cloud_event
from services.intake import domain, store
from services.kit.db import Conn, Pool
from services.kit.http import Agency, Problem, invalid_field, not_found, parse_id
from services.kit.logging import get_logger
from services.kit.outbox import enqueue

log = get_logger(__name__)

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
    possible_duplicate: bool
    possible_duplicate_of: list[UUID]
    registered_at: datetime


class CaseView(CaseReceipt):
    external_id: str
    consent_status: str
    consent_withdrawn_at: datetime | None
    registration: dict[str, Any]


class ConsentWithdrawal(BaseModel):
    model_config = {"extra": "forbid"}
    withdrawn_at: datetime | None = Field(default=None, description="Defaults to now")


class IdentityDisclosure(BaseModel):
    case_id: UUID
    reference: str
    child: dict[str, Any]
    location: dict[str, Any]
    guardian: dict[str, Any] | None


def _receipt(case: store.StoredCase) -> CaseReceipt:
    return CaseReceipt(
        case_id=case.case_id,
        reference=case.reference,
        risk_level=RiskLevel(case.risk_level),
        possible_duplicate=bool(case.possible_duplicate_of),
        possible_duplicate_of=case.possible_duplicate_of,
        registered_at=case.registered_at,
    )


def build_router(
    pool_of: Any, current_agency: Any, internal_principal: Any, source: str
) -> APIRouter:
    router = APIRouter()

    def pool() -> Pool:
        result: Pool = pool_of()
        return result

    @router.post(
        "/v1/cases",
        status_code=201,
        response_model=CaseReceipt,
        summary="Register a child at risk",
        tags=["cases"],
    )
    async def register_case(
        registration: domain.CaseRegistration,
        request: Request,
        response: Response,
        agency: Annotated[Agency, Depends(current_agency)],
        idempotency_key: IdempotencyKey = None,
    ) -> CaseReceipt:
        now = domain.utcnow()
        try:
            age = domain.check_dates(registration, now)
        except domain.RegistrationError as exc:
            raise invalid_field(exc.field, exc.message) from None
        body = registration.model_dump(mode="json")
        request_hash = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
        traceparent = request.headers.get("traceparent")
        traceparent = new_traceparent(trace_id_of(traceparent))

        async with pool().acquire() as conn:
            # Replays are answered before anything is written.
            if idempotency_key is not None:
                seen = await store.find_idempotency_key(conn, agency.id, idempotency_key)
                if seen is not None:
                    if seen[0] != request_hash:
                        raise Problem(
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
                    existing = await store.get_case(conn, seen[1])
                    assert existing is not None
                    return _replay(response, existing)
            region = registration.location.region
            existing_id, number = await store.existing_or_reserve_number(
                conn, agency.id, registration.external_id, f"{region}-{now.year}"
            )
            if existing_id is not None:
                existing = await store.get_case(conn, existing_id)
                assert existing is not None
                return _replay(response, existing)
            assert number is not None
            reference = domain.reference_code(region, now.year, number)
            async with conn.transaction():
                receipt = await _create(
                    conn,
                    registration,
                    body,
                    agency,
                    idempotency_key,
                    request_hash,
                    traceparent,
                    now,
                    age,
                    reference,
                )
        log.info(
            "case registered",
            case_id=str(receipt.case_id),
            reference=reference,
            agency_id=agency.id,
            risk_level=receipt.risk_level.value,
            possible_duplicate=receipt.possible_duplicate,
            trace_id=trace_id_of(traceparent),
        )
        return receipt

    async def _create(
        conn: Conn,
        registration: domain.CaseRegistration,
        body: dict[str, Any],
        agency: Agency,
        idempotency_key: str | None,
        request_hash: str,
        traceparent: str,
        now: datetime,
        age: int,
        reference: str,
    ) -> CaseReceipt:
        """Write the case and its case.created event, in the caller's transaction."""
        risk = domain.assess_risk(
            registration.concerns,
            age=age,
            unaccompanied=registration.unaccompanied,
            separated=registration.separated,
            has_disability=registration.child.has_disability,
        )
        case_id = uuid.uuid4()
        duplicates = await store.insert_case(
            conn,
            case_id=case_id,
            reference=reference,
            agency_id=agency.id,
            external_id=registration.external_id,
            country=registration.location.country,
            region=registration.location.region,
            risk_level=risk.value,
            registration=body,
            dedup_key=domain.duplicate_key(registration),
            registered_at=now,
        )
        if duplicates is None:  # a concurrent twin request committed first
            raise Problem(
                409,
                "Concurrent duplicate request",
                "The same external_id is being registered right now; retry.",
            )
        if idempotency_key is not None:
            await store.save_idempotency_key(
                conn, agency.id, idempotency_key, request_hash, case_id
            )
        event = domain.case_created(
            case_id=case_id,
            reference=reference,
            agency_id=agency.id,
            registered_at=now,
            reg=registration,
            age=age,
            risk=risk,
            possible_duplicate_of=duplicates,
        )
        await enqueue(
            conn, event.topic, to_cloud_event(event, source=source, traceparent=traceparent)
        )
        return CaseReceipt(
            case_id=case_id,
            reference=reference,
            risk_level=risk,
            possible_duplicate=bool(duplicates),
            possible_duplicate_of=duplicates,
            registered_at=now,
        )

    def _replay(response: Response, case: store.StoredCase) -> CaseReceipt:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
        return _receipt(case)

    @router.get(
        "/v1/cases/{case_id}",
        response_model=CaseView,
        tags=["cases"],
        summary="Read a case this agency registered",
    )
    async def read_case(
        case_id: str, agency: Annotated[Agency, Depends(current_agency)]
    ) -> CaseView:
        async with pool().acquire() as conn:
            case = await store.get_case(conn, parse_id(case_id, "case"))
        if case is None or case.agency_id != agency.id:
            raise not_found("case")
        return CaseView(
            **_receipt(case).model_dump(),
            external_id=case.external_id,
            consent_status=case.consent_status,
            consent_withdrawn_at=case.consent_withdrawn_at,
            registration=case.registration,
        )

    @router.post(
        "/v1/cases/{case_id}/consent-withdrawal",
        response_model=CaseReceipt,
        tags=["cases"],
        summary="Record that consent to share the case was withdrawn",
    )
    async def withdraw_consent(
        case_id: str,
        withdrawal: ConsentWithdrawal,
        agency: Annotated[Agency, Depends(current_agency)],
    ) -> CaseReceipt:
        at = withdrawal.withdrawn_at or domain.utcnow()
        if at.tzinfo is None:
            raise invalid_field("withdrawn_at", "needs a time zone offset")
        async with pool().acquire() as conn, conn.transaction():
            case = await store.get_case(conn, parse_id(case_id, "case"), lock=True)
            if case is None or case.agency_id != agency.id:
                raise not_found("case")
            if case.consent_status != "withdrawn":
                await store.withdraw_consent(conn, case.case_id, at)
                event = CaseConsentWithdrawnV1(
                    case_id=case.case_id,
                    reference=case.reference,
                    registering_agency_id=case.agency_id,
                    withdrawn_at=at,
                )
                await enqueue(conn, event.topic, to_cloud_event(event, source=source))
                log.info("consent withdrawn", case_id=str(case.case_id), agency_id=agency.id)
        return _receipt(case)

    @router.get(
        "/internal/v1/cases/{case_id}/identity",
        response_model=IdentityDisclosure,
        tags=["internal"],
        include_in_schema=True,
        summary="Identifying details for an authorised recipient (audited)",
    )
    async def disclose_identity(
        case_id: str,
        on_behalf_of: str,
        purpose: str,
        principal: Annotated[Agency, Depends(internal_principal)],
        referral_id: UUID | None = None,
    ) -> IdentityDisclosure:
        """Called by the referral service only after it has checked that `on_behalf_of`
        is the agency an accepted referral is addressed to. Refused once consent is
        withdrawn. Every disclosure is written to the append-only audit table."""
        async with pool().acquire() as conn, conn.transaction():
            case = await store.get_case(conn, parse_id(case_id, "case"))
            if case is None:
                raise not_found("case")
            if case.consent_status == "withdrawn":
                raise Problem(
                    409,
                    "Consent withdrawn",
                    "Identifying details are no longer disclosed for this case.",
                )
            await store.record_disclosure(
                conn,
                case_id=case.case_id,
                requested_by=principal.id,
                on_behalf_of=on_behalf_of,
                referral_id=referral_id,
                purpose=purpose[:200],
            )
        reg = case.registration
        log.info(
            "identity disclosed",
            case_id=str(case.case_id),
            to_agency=on_behalf_of,
            referral_id=str(referral_id) if referral_id else None,
        )
        return IdentityDisclosure(
            case_id=case.case_id,
            reference=case.reference,
            child=reg["child"],
            location=reg["location"],
            guardian=reg.get("guardian"),
        )

    @router.get(
        "/internal/v1/caseworkers/{agency_id}/{staff_id}",
        tags=["internal"],
        summary="Contact details of a caseworker, for notifications",
    )
    async def caseworker_contact(
        agency_id: str, staff_id: str, _: Annotated[Agency, Depends(internal_principal)]
    ) -> dict[str, Any]:
        async with pool().acquire() as conn:
            contact = await store.latest_caseworker(conn, agency_id, staff_id)
        if contact is None:
            raise not_found("caseworker")
        return {"agency_id": agency_id, **contact}

    return router
