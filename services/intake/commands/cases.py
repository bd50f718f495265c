"""Intake's use cases for cases: register one (idempotent, flagging possible
duplicates, its identity sealed), read one, list the possible duplicates for
coordination, withdraw consent (ending the case's disclosure grants), and the two
internal reads (an identity disclosure under a live grant, audited with the grant's
referral; a caseworker's contact)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from contracts.codes import RiskLevel
from contracts.envelope import new_traceparent, trace_id_of
from contracts.events import CaseConsentWithdrawnV1
from contracts.registry import to_cloud_event
from services.intake import domain, duplicates, sealing, store
from services.intake.domain import ConsentStatus
from services.intake.vault import Vault
from services.kit.clock import Clock
from services.kit.db import Conn, Pool
from services.kit.errors import Conflict, DomainError, Gone, InvalidField, NotFound, NotPermitted
from services.kit.logging import get_logger
from services.kit.outbox import enqueue

log = get_logger(__name__)


class IdempotencyKeyReused(DomainError):
    """The Idempotency-Key was used before with a different request body."""

    def __init__(self) -> None:
        super().__init__(
            "Idempotency-Key reused", "This Idempotency-Key was used with a different request."
        )


# --- commands and results --------------------------------------------------------------


@dataclass(frozen=True)
class RegisterCase:
    registration: domain.CaseRegistration
    agency_id: str
    idempotency_key: str | None = None
    traceparent: str | None = None  # the caller's, if any: the case's trace continues it


@dataclass(frozen=True)
class Receipt:
    case_id: UUID
    reference: str
    risk_level: RiskLevel
    possible_duplicate: bool  # whose case matched is for coordination only
    registered_at: datetime

    @classmethod
    def of(cls, case: store.StoredCase) -> Receipt:
        return cls(
            case.case_id,
            case.reference,
            case.risk_level,
            bool(case.possible_duplicate_of),
            case.registered_at,
        )


@dataclass(frozen=True)
class Registered:
    receipt: Receipt
    replayed: bool  # True: the case existed already (same external id or idempotency key)


@dataclass(frozen=True)
class WithdrawConsent:
    case_id: UUID
    agency_id: str
    withdrawn_at: datetime | None = None  # None: now


@dataclass(frozen=True)
class ListPossibleDuplicates:
    limit: int
    after: duplicates.Position | None = None  # None: from the newest


@dataclass(frozen=True)
class DiscloseIdentity:
    case_id: UUID
    requested_by: str  # the internal principal
    on_behalf_of: str  # the agency the disclosure is for: it must hold a live grant
    purpose: str
    referral_id: UUID | None = None  # when given, the grant must be this referral's


@dataclass(frozen=True)
class Identity:
    case_id: UUID
    reference: str
    child: dict[str, Any]
    location: dict[str, Any]
    guardian: dict[str, Any] | None


# --- use cases -------------------------------------------------------------------------


async def register_case(
    pool: Pool, cmd: RegisterCase, *, clock: Clock, source: str, vault: Vault
) -> Registered:
    """Register a case, or answer with the case this agency already registered under the
    same external id or idempotency key. Takes the pool: the reference number is
    reserved in a statement of its own, before the case's transaction. The child's
    identity is sealed under a data key of the case's own (services/intake/sealing.py)
    before anything is written."""
    now = clock.now()
    registration = cmd.registration
    age = domain.check_dates(registration, now)
    body = registration.model_dump(mode="json")
    # Only an idempotent request needs its body's hash (to tell a replay from a reuse).
    request_hash = (
        vault.request_hash(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))
        if cmd.idempotency_key is not None
        else None
    )
    traceparent = new_traceparent(trace_id_of(cmd.traceparent))

    async with pool.acquire() as conn:
        # Replays are answered before anything is written.
        if cmd.idempotency_key is not None:
            seen = await store.find_idempotency_key(conn, cmd.agency_id, cmd.idempotency_key)
            if seen is not None:
                if seen[0] != request_hash:
                    raise IdempotencyKeyReused()
                return Registered(await _stored_receipt(conn, seen[1]), replayed=True)
        region = registration.location.region
        existing_id, number = await store.existing_or_reserve_number(
            conn, cmd.agency_id, registration.external_id, f"{region}-{now.year}"
        )
        if existing_id is not None:
            return Registered(await _stored_receipt(conn, existing_id), replayed=True)
        assert number is not None
        reference = domain.reference_code(region, now.year, number)
        async with conn.transaction():
            receipt = await _create(
                conn, cmd, body, request_hash, traceparent, now, age, reference, source, vault
            )
    log.info(
        "case registered",
        case_id=str(receipt.case_id),
        reference=reference,
        agency_id=cmd.agency_id,
        risk_level=receipt.risk_level.value,
        possible_duplicate=receipt.possible_duplicate,
        trace_id=trace_id_of(traceparent),
    )
    return Registered(receipt, replayed=False)


async def _stored_receipt(conn: Conn, case_id: UUID) -> Receipt:
    case = await store.get_case(conn, case_id)
    assert case is not None
    return Receipt.of(case)


async def _create(
    conn: Conn,
    cmd: RegisterCase,
    body: dict[str, Any],
    request_hash: str | None,
    traceparent: str,
    now: datetime,
    age: int,
    reference: str,
    source: str,
    vault: Vault,
) -> Receipt:
    """Write the case and its case.created event, in the caller's transaction."""
    registration = cmd.registration
    risk = domain.assess_risk(
        registration.concerns,
        age=age,
        unaccompanied=registration.unaccompanied,
        separated=registration.separated,
        has_disability=registration.child.has_disability,
    )
    case_id = uuid.uuid4()
    plain, identifying = sealing.split(body)
    sealed = vault.seal_new(case_id, identifying)
    matched = await store.insert_case(
        conn,
        case_id=case_id,
        reference=reference,
        agency_id=cmd.agency_id,
        external_id=registration.external_id,
        country=registration.location.country,
        region=registration.location.region,
        risk_level=risk,
        registration=plain,
        sealed=sealed.sealed,
        data_key_version=sealed.data_key_version,
        wrapped_key=sealed.wrapped_key,
        dedup_key=vault.duplicate_key(duplicates.duplicate_basis(registration)),
        registered_at=now,
    )
    if matched is None:  # a concurrent twin request committed first
        raise Conflict(
            "Concurrent duplicate request",
            "The same external_id is being registered right now; retry.",
        )
    if cmd.idempotency_key is not None and request_hash is not None:
        await store.save_idempotency_key(
            conn, cmd.agency_id, cmd.idempotency_key, request_hash, case_id
        )
    event = domain.case_created(
        case_id=case_id,
        reference=reference,
        agency_id=cmd.agency_id,
        registered_at=now,
        reg=registration,
        age=age,
        risk=risk,
        possible_duplicate_of=[],
    )
    event = duplicates.shared_event(event, matched)
    await enqueue(conn, event.topic, to_cloud_event(event, source=source, traceparent=traceparent))
    return Receipt(case_id, reference, risk, bool(matched), now)


@dataclass(frozen=True)
class CaseRecord:
    case: store.StoredCase
    registration: dict[str, Any]  # as the agency sent it, identity opened


def erased(case: store.StoredCase) -> Gone:
    return Gone(
        "Case erased",
        "This case's identifying details were erased for good.",
        erased_at=case.erased_at.isoformat() if case.erased_at else None,
    )


async def open_identity(conn: Conn, case: store.StoredCase, vault: Vault) -> dict[str, Any]:
    """The case's identifying fields, opened with its data key; `Gone` once erased."""
    wrapped = await store.case_key(conn, case.case_id)
    if case.erased_at is not None or wrapped is None or case.sealed is None:
        raise erased(case)
    assert case.data_key_version is not None
    return vault.open(case.case_id, case.sealed, case.data_key_version, wrapped)


async def read_case(conn: Conn, case_id: UUID, agency_id: str, vault: Vault) -> CaseRecord:
    """A case, for the agency that registered it (anyone else is told it does not
    exist); `Gone` once it was erased."""
    case = await store.get_case(conn, case_id)
    if case is None or case.agency_id != agency_id:
        raise NotFound("case")
    identity = await open_identity(conn, case, vault)
    return CaseRecord(case, sealing.join(case.registration, identity))


async def possible_duplicates(conn: Conn, cmd: ListPossibleDuplicates) -> duplicates.Page:
    """The cases flagged as possible duplicates, newest first, each with the other
    agencies' cases it matched: for the operations (coordination) role only, to
    reconcile them; ids, references, agencies and times, no child's details."""
    rows = await store.possible_duplicates(conn, cmd.after, cmd.limit + 1)
    items = rows[: cmd.limit]
    more = len(rows) > cmd.limit
    return duplicates.Page(items, duplicates.Position.after(items[-1].case) if more else None)


async def withdraw_consent(
    conn: Conn, cmd: WithdrawConsent, *, clock: Clock, source: str
) -> Receipt:
    """Record the withdrawal once (a repeat changes nothing) and tell the other services."""
    at = cmd.withdrawn_at or clock.now()
    if at.tzinfo is None:
        raise InvalidField("withdrawn_at", "needs a time zone offset")
    async with conn.transaction():
        case = await store.get_case(conn, cmd.case_id, lock=True)
        if case is None or case.agency_id != cmd.agency_id:
            raise NotFound("case")
        if case.erased_at is not None:
            raise erased(case)
        if case.consent_status is not ConsentStatus.WITHDRAWN:
            await store.withdraw_consent(conn, case.case_id, at)
            await store.end_grants(
                conn, case.case_id, clock.now(), domain.GrantEnd.CONSENT_WITHDRAWN
            )
            event = CaseConsentWithdrawnV1(
                case_id=case.case_id,
                reference=case.reference,
                registering_agency_id=case.agency_id,
                withdrawn_at=at,
            )
            await enqueue(conn, event.topic, to_cloud_event(event, source=source))
            log.info("consent withdrawn", case_id=str(case.case_id), agency_id=cmd.agency_id)
    return Receipt.of(case)


async def disclose_identity(conn: Conn, cmd: DiscloseIdentity, vault: Vault) -> Identity:
    """Identifying details for the agency `on_behalf_of`, only under a live grant that
    intake holds itself (services/intake/domain.py, disclosure grants): refused
    (`Conflict`) once consent is withdrawn, (`Gone`) once erased and (`NotPermitted`)
    without a grant. Every
    disclosure is written to the append-only audit table with the grant's referral, in
    the same transaction as the read."""
    async with conn.transaction():
        case = await store.get_case(conn, cmd.case_id)
        if case is None:
            raise NotFound("case")
        if case.erased_at is not None:
            raise erased(case)
        if case.consent_status is ConsentStatus.WITHDRAWN:
            raise Conflict(
                "Consent withdrawn", "Identifying details are no longer disclosed for this case."
            )
        grant = await store.live_grant(conn, case.case_id, cmd.on_behalf_of, cmd.referral_id)
        if grant is None:
            log.warning(
                "identity refused: no grant",
                case_id=str(case.case_id),
                to_agency=cmd.on_behalf_of,
                referral_id=str(cmd.referral_id) if cmd.referral_id else None,
            )
            raise NotPermitted(
                "No disclosure grant",
                "This agency holds no live grant on this case"
                + (" for this referral" if cmd.referral_id else "")
                + ": identifying details go only to the receiving agency of an accepted "
                "referral, until it is closed, cancelled or rejected.",
                reason="no_grant",
            )
        await store.record_disclosure(
            conn,
            case_id=case.case_id,
            requested_by=cmd.requested_by,
            on_behalf_of=cmd.on_behalf_of,
            referral_id=grant.referral_id,
            purpose=cmd.purpose[:200],
        )
        identity = await open_identity(conn, case, vault)
    log.info(
        "identity disclosed",
        case_id=str(case.case_id),
        to_agency=cmd.on_behalf_of,
        referral_id=str(grant.referral_id),
    )
    return Identity(
        case_id=case.case_id,
        reference=case.reference,
        child=identity["child"],
        location=identity["location"],
        guardian=identity.get("guardian"),
    )


async def caseworker_contact(conn: Conn, agency_id: str, staff_id: str) -> dict[str, Any]:
    """The latest contact details an agency registered for one of its caseworkers."""
    contact = await store.latest_caseworker(conn, agency_id, staff_id)
    if contact is None:
        raise NotFound("caseworker")
    return {"agency_id": agency_id, **contact}
