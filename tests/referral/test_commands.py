"""Referral's use cases against a real PostgreSQL database, without HTTP or Kafka:
what each command writes (referrals, their outbox events, the disclosure audit, the
directory) and the domain errors it refuses with. Intake's identity API is a fake
port; time is a movable clock."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from contracts.codes import (
    AgeBand,
    CancellationReason,
    ConcernCode,
    ConsentBasis,
    ConsentGiver,
    ConsentScope,
    ReferralState,
    RiskLevel,
    ServiceType,
    Sex,
)
from contracts.events import CaseCreatedV1, ConsentV1
from services.kit.clock import MovableClock
from services.kit.db import create_pool, migrate
from services.kit.errors import Conflict, InvalidField, NotFound, NotPermitted, StaleVersion
from services.kit.production import DEMO_AGENCIES_FILE
from services.kit.safeguarding import BestInterestDecision
from services.kit.settings import DEPLOY_DIR
from services.referral import commands, store
from services.referral.app import MIGRATIONS, agency_ids
from services.referral.directory_cache import DirectoryCache
from services.referral.domain.directory import ContactPoint, Organization, ServiceQuery
from services.referral.domain.disclosure import Identity, IdentityRequest, IdentityStatus
from services.referral.domain.lifecycle import Action, Deadlines, StepDetails
from services.referral.domain.routing import load_rules
from services.referral.metrics import ReferralMetrics

SENDER = "ong-amanecer"
RULES = load_rules((DEPLOY_DIR / "routing.yaml").read_text())


class FakeIntake:
    """Intake's identity API: answers `answer` and remembers what it was asked."""

    def __init__(self) -> None:
        self.answer: Identity | IdentityStatus = Identity(
            child={"given_names": "Daniela"}, location={"region": "PE-PIU"}, guardian=None
        )
        self.requests: list[IdentityRequest] = []

    async def identity(self, request: IdentityRequest) -> Identity | IdentityStatus:
        self.requests.append(request)
        return self.answer


@pytest.fixture(scope="module")
async def pool(databases: Callable[[str], Any]) -> AsyncIterator[asyncpg.Pool]:
    created = await create_pool(await databases("referral"), min_size=1, max_size=4)
    await migrate(created, MIGRATIONS, "referral")
    yield created
    await created.close()


@pytest.fixture(scope="module")
async def directory(pool: asyncpg.Pool) -> DirectoryCache:
    cache = DirectoryCache(agency_ids(DEMO_AGENCIES_FILE))
    seed = cache.read_seed(DEPLOY_DIR / "directory.yaml")
    async with store.connection(pool) as conn:
        await cache.seed(conn, seed)
        await cache.refresh(conn, force=True)
    return cache


@pytest.fixture
def intake() -> FakeIntake:
    return FakeIntake()


@pytest.fixture
def ctx(directory: DirectoryCache, intake: FakeIntake) -> commands.Context:
    return commands.Context(
        directory=directory,
        rules=RULES,
        deadlines=Deadlines(),
        clock=MovableClock(datetime.now(UTC).replace(microsecond=0)),
        source="/enlace/referral",
        metrics=ReferralMetrics(CollectorRegistry()),
        identities=intake,
    )


def piura_case(**overrides: Any) -> CaseCreatedV1:
    """An unaccompanied Venezuelan girl in Piura with violence concerns, registered by
    ong-amanecer, whose consent covers every referral service."""
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "case_id": uuid.uuid4(),
        "reference": f"PE-PIU-{now.year}-{uuid.uuid4().int % 1_000_000:06d}",
        "registering_agency_id": SENDER,
        "registered_at": now,
        "country": "PE",
        "region": "PE-PIU",
        "age_band": AgeBand.FROM_15_TO_17,
        "sex": Sex.FEMALE,
        "nationality": "VE",
        "languages": ["es"],
        "unaccompanied": True,
        "separated": False,
        "has_disability": False,
        "concerns": [
            ConcernCode.PHYSICAL_VIOLENCE,
            ConcernCode.GENDER_BASED_VIOLENCE,
            ConcernCode.IRREGULAR_MIGRATION_STATUS,
        ],
        "needs": [
            ServiceType.SPECIAL_PROTECTION,
            ServiceType.PSYCHOSOCIAL_SUPPORT,
            ServiceType.LEGAL_AID_MIGRATION,
        ],
        "risk_level": RiskLevel.HIGH,
        "consent": ConsentV1(
            basis=ConsentBasis.CONSENT,
            scope=ConsentScope.ALL_REFERRAL_SERVICES,
            given_by=ConsentGiver.CHILD,
            recorded_at=now - timedelta(hours=1),
        ),
        "caseworker_id": "cw-rosa",
    }
    fields.update(overrides)
    return CaseCreatedV1(**fields)


async def route(pool: asyncpg.Pool, ctx: commands.Context, case: CaseCreatedV1) -> Any:
    async with store.transaction(pool) as conn:
        data = case.model_dump(mode="json")
        return await commands.route_case(conn, ctx, commands.RouteCase(case, data))


async def referrals_by_service(
    pool: asyncpg.Pool, case: CaseCreatedV1
) -> dict[str, store.StoredReferral]:
    listing = await commands.list_referrals(
        pool, commands.ListReferrals(agency_id=SENDER, case_id=case.case_id)
    )
    return {seen.referral.facts.service_id: seen.referral for seen in listing.items}


async def outbox_types(pool: asyncpg.Pool, case: CaseCreatedV1) -> list[str]:
    rows = await pool.fetch(
        "SELECT event_type FROM outbox WHERE subject = $1 ORDER BY seq", str(case.case_id)
    )
    return [r["event_type"] for r in rows]


def step(
    referral: store.StoredReferral, agency_id: str, action: Action, **kwargs: Any
) -> commands.TakeStep:
    return commands.TakeStep(referral.referral_id, agency_id, action, **kwargs)


# --- routing and consent withdrawal (the event side) ---------------------------------------


async def test_a_case_is_routed_once_with_its_events(
    pool: asyncpg.Pool, ctx: commands.Context
) -> None:
    case = piura_case()
    plan = await route(pool, ctx, case)
    assert plan is not None
    referrals = await referrals_by_service(pool, case)
    assert {k: v.state for k, v in referrals.items()} == {
        "upe-piura-proteccion": ReferralState.SENT,
        "cem-piura-atencion": ReferralState.SENT,
        "casa-refugio-acogida": ReferralState.PROPOSED,
        "ninas-lideres-empoderamiento": ReferralState.PROPOSED,
        "dsf-regularizacion": ReferralState.PROPOSED,
    }
    sent = referrals["upe-piura-proteccion"]
    assert sent.respond_by == ctx.deadlines.respond_by(sent.facts.urgency, ctx.clock.now())
    assert sorted(await outbox_types(pool, case)) == sorted(
        ["referral.sent"] * 2 + ["referral.proposed"] * 3
    )

    again = await route(pool, ctx, case)  # the same case under another event id
    assert again is None
    assert len(await referrals_by_service(pool, case)) == 5
    assert len(await outbox_types(pool, case)) == 5


async def test_withdrawn_consent_cancels_open_referrals_and_stops_disclosure(
    pool: asyncpg.Pool, ctx: commands.Context, intake: FakeIntake
) -> None:
    case = piura_case()
    await route(pool, ctx, case)
    upe = (await referrals_by_service(pool, case))["upe-piura-proteccion"]
    for action in (Action.ACKNOWLEDGE, Action.ACCEPT):
        await commands.take_step(pool, ctx, step(upe, "upe-piura", action))

    async with store.transaction(pool) as conn:
        withdrawal = commands.WithdrawConsent(case.case_id, ctx.clock.now())
        cancelled = await commands.withdraw_consent(conn, ctx, withdrawal)
    assert cancelled == 5
    referrals = await referrals_by_service(pool, case)
    assert {r.state for r in referrals.values()} == {ReferralState.CANCELLED}
    assert {r.cancellation_reason for r in referrals.values()} == {
        CancellationReason.CONSENT_WITHDRAWN
    }
    assert (await outbox_types(pool, case)).count("referral.cancelled") == 5

    read = await commands.read_referral(
        pool, ctx, commands.ReadReferral(upe.referral_id, "upe-piura")
    )
    assert (read.identity, read.identity_status) == (None, IdentityStatus.CONSENT_WITHDRAWN)
    assert intake.requests == []  # intake was not even asked

    with pytest.raises(Conflict) as refused:
        await commands.refer_by_hand(
            pool,
            ctx,
            commands.ReferByHand(SENDER, case.case_id, "cem-piura-atencion"),
        )
    assert refused.value.extra == {"reason": "consent_withdrawn"}


# --- reading, with disclosure --------------------------------------------------------------


async def test_the_receiver_sees_the_identity_once_accepted_and_each_disclosure_is_audited(
    pool: asyncpg.Pool, ctx: commands.Context, intake: FakeIntake
) -> None:
    case = piura_case()
    await route(pool, ctx, case)
    cem = (await referrals_by_service(pool, case))["cem-piura-atencion"]
    read_it = commands.ReadReferral(cem.referral_id, "cem-piura")

    before = await commands.read_referral(pool, ctx, read_it)
    assert before.identity_status is IdentityStatus.AFTER_ACCEPTANCE_ONLY
    for action in (Action.ACKNOWLEDGE, Action.ACCEPT):
        await commands.take_step(pool, ctx, step(cem, "cem-piura", action))

    after = await commands.read_referral(pool, ctx, read_it)
    assert after.identity_status is IdentityStatus.DISCLOSED
    assert after.identity == intake.answer
    (asked,) = intake.requests
    assert (asked.case_id, asked.on_behalf_of) == (case.case_id, "cem-piura")
    audit = await pool.fetch("SELECT * FROM disclosures WHERE referral_id = $1", cem.referral_id)
    assert [(r["agency_id"], r["fields"]) for r in audit] == [("cem-piura", ["child", "location"])]

    intake.answer = IdentityStatus.UNAVAILABLE
    down = await commands.read_referral(pool, ctx, read_it)
    assert (down.identity, down.identity_status) == (None, IdentityStatus.UNAVAILABLE)
    assert (
        len(await pool.fetch("SELECT 1 FROM disclosures WHERE referral_id = $1", cem.referral_id))
        == 1
    )

    sender = await commands.read_referral(pool, ctx, commands.ReadReferral(cem.referral_id, SENDER))
    assert (sender.identity, sender.identity_status) == (None, None)
    for stranger in ("uavt-do", "casa-refugio-piura"):
        with pytest.raises(NotFound):
            await commands.read_referral(
                pool, ctx, commands.ReadReferral(cem.referral_id, stranger)
            )


# --- the lifecycle step ------------------------------------------------------------------------


async def test_a_step_by_the_wrong_party_is_not_permitted_and_a_stranger_finds_nothing(
    pool: asyncpg.Pool, ctx: commands.Context
) -> None:
    case = piura_case()
    await route(pool, ctx, case)
    referrals = await referrals_by_service(pool, case)
    upe, shelter = referrals["upe-piura-proteccion"], referrals["casa-refugio-acogida"]

    with pytest.raises(NotPermitted) as refused:
        await commands.take_step(pool, ctx, step(upe, SENDER, Action.ACKNOWLEDGE))
    assert refused.value.detail == "Only the receiving agency can acknowledge a referral."
    with pytest.raises(NotPermitted):
        await commands.take_step(
            pool,
            ctx,
            step(
                upe,
                "upe-piura",
                Action.CANCEL,
                details=StepDetails(cancellation_reason=CancellationReason.OTHER),
            ),
        )
    with pytest.raises(NotFound):  # a proposal is not the proposed receiver's business yet
        await commands.take_step(pool, ctx, step(shelter, "casa-refugio-piura", Action.ACKNOWLEDGE))
    with pytest.raises(NotFound):
        await commands.take_step(pool, ctx, step(upe, "uavt-do", Action.ACKNOWLEDGE))
    assert (await referrals_by_service(pool, case))["upe-piura-proteccion"].version == 1


async def test_an_impossible_transition_names_the_states_that_allow_it(
    pool: asyncpg.Pool, ctx: commands.Context
) -> None:
    case = piura_case()
    await route(pool, ctx, case)
    upe = (await referrals_by_service(pool, case))["upe-piura-proteccion"]
    with pytest.raises(Conflict) as refused:
        await commands.take_step(pool, ctx, step(upe, "upe-piura", Action.CLOSE))
    assert refused.value.title == "Transition not allowed"
    assert refused.value.extra == {
        "current_state": "sent",
        "allowed_from": ["accepted", "in_progress"],
    }


async def test_a_stale_version_is_refused_and_nothing_is_written(
    pool: asyncpg.Pool, ctx: commands.Context
) -> None:
    case = piura_case()
    await route(pool, ctx, case)
    upe = (await referrals_by_service(pool, case))["upe-piura-proteccion"]
    acknowledged = await commands.take_step(
        pool,
        ctx,
        step(upe, "upe-piura", Action.ACKNOWLEDGE, expected=commands.Versions(frozenset({1}))),
    )
    assert (acknowledged.state, acknowledged.version) == (ReferralState.ACKNOWLEDGED, 2)

    stale = step(upe, "upe-piura", Action.ACCEPT, expected=commands.Versions(frozenset({1})))
    with pytest.raises(StaleVersion) as refused:
        await commands.take_step(pool, ctx, stale)
    assert refused.value.extra == {"current_version": 2}
    now = (await referrals_by_service(pool, case))["upe-piura-proteccion"]
    assert (now.state, now.version) == (ReferralState.ACKNOWLEDGED, 2)
    assert (await outbox_types(pool, case)).count("referral.accepted") == 0

    anything = commands.Versions(any=True)
    accepted = await commands.take_step(
        pool, ctx, step(upe, "upe-piura", Action.ACCEPT, expected=anything)
    )
    assert accepted.version == 3
    assert (await outbox_types(pool, case)).count("referral.accepted") == 1


async def test_confirming_needs_consent_or_a_documented_decision(
    pool: asyncpg.Pool, ctx: commands.Context
) -> None:
    now = ctx.clock.now()
    narrow = ConsentV1(
        basis=ConsentBasis.CONSENT,
        scope=ConsentScope.LISTED_SERVICE_TYPES,
        service_types=[ServiceType.PSYCHOSOCIAL_SUPPORT],
        given_by=ConsentGiver.PARENT,
        recorded_at=now - timedelta(hours=1),
    )
    case = piura_case(
        concerns=[ConcernCode.SEXUAL_VIOLENCE], needs=[], unaccompanied=False, consent=narrow
    )
    await route(pool, ctx, case)
    cem = (await referrals_by_service(pool, case))["cem-piura-atencion"]
    assert (cem.state, cem.mandatory) == (ReferralState.PROPOSED, True)

    with pytest.raises(Conflict) as refused:
        await commands.take_step(pool, ctx, step(cem, SENDER, Action.CONFIRM))
    assert refused.value.extra == {"reason": "consent_does_not_cover_service"}

    def decision(at: datetime) -> StepDetails:
        reason = "Ongoing sexual violence at home; immediate protection needed."
        return StepDetails(
            best_interest=BestInterestDecision(decided_by="psy-lucia", decided_at=at, reason=reason)
        )

    with pytest.raises(InvalidField) as future:
        await commands.take_step(
            pool, ctx, step(cem, SENDER, Action.CONFIRM, details=decision(now + timedelta(days=1)))
        )
    assert future.value.field == "best_interest.decided_at"

    sent = await commands.take_step(
        pool, ctx, step(cem, SENDER, Action.CONFIRM, details=decision(now))
    )
    assert sent.state is ReferralState.SENT
    assert sent.respond_by == ctx.deadlines.respond_by(sent.facts.urgency, now)
    assert sent.best_interest is not None
    assert sent.best_interest["decided_by"] == "psy-lucia"


# --- referring by hand -------------------------------------------------------------------------


async def test_referring_by_hand(pool: asyncpg.Pool, ctx: commands.Context) -> None:
    case = piura_case()
    await route(pool, ctx, case)

    def by_hand(agency_id: str, service_id: str) -> commands.ReferByHand:
        return commands.ReferByHand(agency_id, case.case_id, service_id)

    with pytest.raises(NotFound) as not_theirs:
        await commands.refer_by_hand(pool, ctx, by_hand("upe-lima", "casa-refugio-acogida"))
    assert not_theirs.value.what == "case"
    with pytest.raises(InvalidField) as unknown:
        await commands.refer_by_hand(pool, ctx, by_hand(SENDER, "nope-nope"))
    assert unknown.value.field == "service_id"
    with pytest.raises(InvalidField) as elsewhere:
        await commands.refer_by_hand(pool, ctx, by_hand(SENDER, "upe-lima-proteccion"))
    assert elsewhere.value.message == "does not take cases from PE-PIU"
    with pytest.raises(Conflict) as duplicate:
        await commands.refer_by_hand(pool, ctx, by_hand(SENDER, "upe-piura-proteccion"))
    assert duplicate.value.extra == {"reason": "duplicate_referral"}

    shelter = (await referrals_by_service(pool, case))["casa-refugio-acogida"]
    drop = StepDetails(cancellation_reason=CancellationReason.NO_LONGER_NEEDED)
    await commands.take_step(pool, ctx, step(shelter, SENDER, Action.CANCEL, details=drop))
    made = await commands.refer_by_hand(pool, ctx, by_hand(SENDER, "casa-refugio-acogida"))
    assert (made.state, made.routing_rule, made.mandatory) == (ReferralState.SENT, None, False)
    assert (await outbox_types(pool, case))[-1] == "referral.sent"


# --- the directory -----------------------------------------------------------------------------


def _organization(ctx: commands.Context, org_id: str) -> Organization:
    org = ctx.directory.directory.organization(org_id)
    assert org is not None
    return org


async def test_directory_edits_are_checked(pool: asyncpg.Pool, ctx: commands.Context) -> None:
    org = _organization(ctx, "uavt-ni")
    stranger = org.model_copy(update={"id": "not-an-agency"})
    with pytest.raises(InvalidField) as unknown:
        await commands.put_organization(
            pool, ctx, commands.PutOrganization("not-an-agency", stranger)
        )
    assert (unknown.value.field, unknown.value.message) == (
        "id",
        "is not an agency of agencies.yaml",
    )
    with pytest.raises(InvalidField) as mismatch:
        await commands.put_organization(pool, ctx, commands.PutOrganization("uavt-do", org))
    assert mismatch.value.field == "id"
    clash = org.model_copy(update={"services": [*org.services, org.services[0]]})
    with pytest.raises(InvalidField) as duplicate:
        await commands.put_organization(pool, ctx, commands.PutOrganization("uavt-ni", clash))
    assert "duplicate service id" in duplicate.value.message
    with pytest.raises(NotFound):
        await commands.remove_organization(pool, ctx, "not-an-agency")
    with pytest.raises(InvalidField) as region:
        commands.find_services(ctx, ServiceQuery(country="GT", region="PE-PIU"))
    assert region.value.field == "query.region"


async def test_the_contact_directory_reflects_a_saved_organisation(
    pool: asyncpg.Pool, ctx: commands.Context
) -> None:
    before = await commands.read_contact_directory(pool, ctx)
    assert before.organizations is not None
    unchanged = await commands.read_contact_directory(
        pool, ctx, commands.Versions(frozenset({before.version}))
    )
    assert (unchanged.version, unchanged.organizations) == (before.version, None)

    org = _organization(ctx, "upe-piura")
    new_focal_point = ContactPoint(
        id="fp-upe-piura-new",
        name="Mesa de partes UPE Piura",
        phone="+51911222333",
        channels=["sms"],
    )
    edited = org.model_copy(update={"focal_point": new_focal_point})
    created = await commands.put_organization(
        pool, ctx, commands.PutOrganization("upe-piura", edited)
    )
    assert created is False

    after = await commands.read_contact_directory(
        pool, ctx, commands.Versions(frozenset({before.version}))
    )
    assert after.version > before.version
    assert after.organizations is not None
    saved = next(o for o in after.organizations if o.id == "upe-piura")
    assert saved.focal_point == new_focal_point
    assert commands.read_directory(ctx).version == after.version  # this replica reloaded
