"""The partner's referrals: listing them, reading one (with the child's identifying
details for the receiving agency once it accepted, each disclosure audited), and
referring a case to a service by hand.

An agency sees a referral it sent, or one addressed to it once it was sent;
anything else is answered exactly like a missing referral (NotFound).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

from contracts.codes import ReferralState, RiskLevel
from contracts.envelope import new_traceparent
from services.kit.db import Pool
from services.kit.errors import Conflict, InvalidField, NotFound
from services.kit.logging import get_logger
from services.kit.safeguarding import BestInterestDecision
from services.referral import store
from services.referral.commands.context import Context
from services.referral.commands.guards import check_consent, check_decision, check_not_erased
from services.referral.commands.lifecycle import initial_event, publish
from services.referral.domain.case import CaseProfile
from services.referral.domain.disclosure import (
    Identity,
    IdentityRequest,
    IdentityStatus,
    disclosure_purpose,
    withheld,
)
from services.referral.domain.lifecycle import Party
from services.referral.domain.routing import referral_facts

log = get_logger(__name__)


@dataclass(frozen=True)
class SeenReferral:
    """A referral and the part the reading agency plays in it."""

    referral: store.StoredReferral
    role: Party


# --- listing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ListReferrals:
    agency_id: str
    as_party: Party | None = None  # only those it received (RECEIVER) or sent (SENDER)
    states: tuple[ReferralState, ...] = ()
    case_id: UUID | None = None
    after: tuple[datetime, UUID] | None = None  # (created_at, referral_id) of the last seen
    limit: int = 50


@dataclass(frozen=True)
class ReferralList:
    items: list[SeenReferral]
    has_more: bool


async def list_referrals(pool: Pool, command: ListReferrals) -> ReferralList:
    """Referrals addressed to (once sent) or sent by the agency, oldest first."""
    async with store.connection(pool) as conn:
        page = await store.list_referrals(
            conn,
            agency_id=command.agency_id,
            party=command.as_party,
            states=list(command.states),
            case_id=command.case_id,
            after=command.after,
            limit=command.limit,
        )
    items = []
    for referral in page.items:
        role = referral.party_of(command.agency_id)
        assert role is not None
        items.append(SeenReferral(referral, role))
    return ReferralList(items, page.has_more)


# --- reading one -----------------------------------------------------------------------


@dataclass(frozen=True)
class ReadReferral:
    referral_id: UUID
    agency_id: str


@dataclass(frozen=True)
class ReferralRead:
    referral: store.StoredReferral
    role: Party
    identity: Identity | None = None
    identity_status: IdentityStatus | None = None  # receiving agency only


async def read_referral(pool: Pool, ctx: Context, command: ReadReferral) -> ReferralRead:
    async with store.connection(pool) as conn:
        referral = await store.get_referral(conn, command.referral_id)
        role = referral.party_of(command.agency_id) if referral else None
        if referral is None or role is None:
            raise NotFound("referral")
        case = await store.get_case(conn, referral.case_id)
    if role is not Party.RECEIVER:
        return ReferralRead(referral, role)
    assert case is not None
    reason = withheld(
        referral.state,
        consent_withdrawn=case.consent_withdrawn_at is not None,
        erased=case.erased_at is not None,
    )
    if reason is not None:
        return ReferralRead(referral, role, None, reason)
    identity = await _disclose(pool, ctx, referral, command.agency_id)
    if isinstance(identity, IdentityStatus):
        return ReferralRead(referral, role, None, identity)
    return ReferralRead(referral, role, identity, IdentityStatus.DISCLOSED)


async def _disclose(
    pool: Pool, ctx: Context, referral: store.StoredReferral, agency_id: str
) -> Identity | IdentityStatus:
    """Ask intake for the details and audit the disclosure here too."""
    purpose = disclosure_purpose(referral.facts.service_type)
    answer = await ctx.identities.identity(
        IdentityRequest(referral.case_id, referral.referral_id, agency_id, purpose)
    )
    if isinstance(answer, IdentityStatus):
        return answer
    async with store.connection(pool) as conn:
        await store.record_disclosure(
            conn,
            referral_id=referral.referral_id,
            case_id=referral.case_id,
            agency_id=agency_id,
            fields=answer.fields,
            purpose=purpose,
            at=ctx.clock.now(),
        )
    ctx.metrics.disclosures.inc()
    log.info(
        "identity disclosed",
        referral_id=str(referral.referral_id),
        case_id=str(referral.case_id),
        to_agency=agency_id,
    )
    return answer


# --- by hand ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReferByHand:
    """The case-owning agency refers its case to a service, sent at once."""

    agency_id: str
    case_id: UUID
    service_id: str
    urgency: RiskLevel | None = None  # defaults to the case's risk
    best_interest: BestInterestDecision | None = None  # when consent does not cover it
    trace_id: str | None = None


async def refer_by_hand(pool: Pool, ctx: Context, command: ReferByHand) -> store.StoredReferral:
    now = ctx.clock.now()
    check_decision(command.best_interest, now)
    offer = next((o for o in ctx.directory.offers if o.service.id == command.service_id), None)
    if offer is None:
        raise InvalidField("service_id", "no such service in the directory")
    async with store.transaction(pool) as conn:
        case = await store.lock_case(conn, command.case_id)
        if case is None or case.registering_agency_id != command.agency_id:
            raise NotFound("case")
        check_not_erased(case.erased_at)
        profile = CaseProfile.from_event(case.event)
        refused = offer.refuses_referral_of(profile)
        if refused:
            raise InvalidField("service_id", refused)
        check_consent(
            profile.consent,
            offer.service.type,
            withdrawn=case.consent_withdrawn_at is not None,
            decided=command.best_interest is not None,
        )
        if await store.has_open_referral(conn, case.case_id, offer.service.id):
            raise Conflict(
                "Already referred",
                "This case has an open referral to this service.",
                reason="duplicate_referral",
            )
        facts = referral_facts(profile, offer, command.urgency or profile.risk_level, uuid4())
        decision = command.best_interest
        new = store.NewReferral(
            facts=facts,
            state=ReferralState.SENT,
            routing_rule=None,
            mandatory=False,
            respond_by=ctx.deadlines.respond_by(facts.urgency, now),
            best_interest=decision.model_dump(mode="json") if decision else None,
            created_at=now,
        )
        await store.insert_referrals(conn, [new])
        await publish(
            conn,
            [initial_event(new)],
            source=ctx.source,
            traceparent=new_traceparent(command.trace_id),
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
    return referral
