"""Routing rules of deploy/routing.yaml, rule by rule, against the seed directory
(pure: no Kafka, no database)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts.codes import (
    AgeBand,
    ConcernCode,
    ConsentBasis,
    ConsentGiver,
    ConsentScope,
    RiskLevel,
    ServiceType,
    Sex,
)
from contracts.events import ConsentV1
from services.referral.domain.case import CaseProfile
from services.referral.domain.directory import Directory, load_directory
from services.referral.domain.routing import (
    PlannedReferral,
    RoutingPlan,
    UnmetReason,
    load_rules,
    plan_routing,
)

DEPLOY = Path(__file__).parents[2] / "deploy"
DIRECTORY = load_directory((DEPLOY / "directory.yaml").read_text())
RULES = load_rules((DEPLOY / "routing.yaml").read_text())
ALL_SERVICES = ConsentV1(
    basis=ConsentBasis.CONSENT,
    scope=ConsentScope.ALL_REFERRAL_SERVICES,
    given_by=ConsentGiver.CHILD,
    recorded_at=datetime.now(UTC),
)

C = ConcernCode
S = ServiceType


def case(**overrides: object) -> CaseProfile:
    """A Peruvian boy in Piura with neglect only: no rule fires unless a test says so."""
    base = CaseProfile(
        case_id=uuid.uuid4(),
        reference="PE-PIU-2026-000001",
        registering_agency_id="demuna-piura",
        country="PE",
        region="PE-PIU",
        age_band=AgeBand.FROM_15_TO_17,
        sex=Sex.MALE,
        nationality="PE",
        languages=("es",),
        unaccompanied=False,
        separated=False,
        has_disability=False,
        concerns=(C.NEGLECT,),
        needs=(),
        risk_level=RiskLevel.MEDIUM,
        consent=ALL_SERVICES,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def route(profile: CaseProfile, directory: Directory = DIRECTORY) -> RoutingPlan:
    return plan_routing(profile, RULES, directory.offers())


def referral_for(plan: RoutingPlan, service_type: ServiceType) -> PlannedReferral:
    matches = [r for r in plan.referrals if r.service_type is service_type]
    assert len(matches) == 1, f"expected one {service_type} referral, got {plan.referrals}"
    return matches[0]


def types(plan: RoutingPlan) -> set[ServiceType]:
    return {r.service_type for r in plan.referrals}


def test_no_rule_fires_for_a_case_without_triggers() -> None:
    plan = route(case())
    assert plan.referrals == []
    assert plan.unmet == []


# --- mandatory pathways ------------------------------------------------------------------


def test_unaccompanied_migrant_goes_to_the_upe_of_the_region() -> None:
    plan = route(case(nationality="VE", unaccompanied=True))
    upe = referral_for(plan, S.SPECIAL_PROTECTION)
    assert upe.offer.service.id == "upe-piura-proteccion"
    assert upe.rule_id == "unaccompanied-migrant-special-protection"
    assert upe.mandatory
    assert upe.send_now

    lima = route(case(nationality="VE", separated=True, region="PE-LMA"))
    assert referral_for(lima, S.SPECIAL_PROTECTION).offer.service.id == "upe-lima-proteccion"


def test_unaccompanied_national_child_is_not_a_migrant_pathway() -> None:
    assert S.SPECIAL_PROTECTION not in types(route(case(unaccompanied=True)))


def test_unknown_nationality_counts_as_migrant() -> None:
    plan = route(case(nationality=None, unaccompanied=True))
    assert referral_for(plan, S.SPECIAL_PROTECTION).send_now


def test_special_protection_pathway_is_peruvian() -> None:
    plan = route(
        case(
            country="GT",
            region="GT-01",
            nationality="HN",
            unaccompanied=True,
            registering_agency_id="comunidad-segura-gt",
        )
    )
    assert S.SPECIAL_PROTECTION not in types(plan)
    assert S.SPECIAL_PROTECTION not in {u.service_type for u in plan.unmet}


def test_trafficking_goes_to_the_national_victim_care_unit_at_critical_urgency() -> None:
    plan = route(
        case(
            country="GT",
            region="GT-09",
            nationality="GT",
            concerns=(C.TRAFFICKING_INDICATORS,),
            risk_level=RiskLevel.HIGH,
            registering_agency_id="comunidad-segura-gt",
        )
    )
    care = referral_for(plan, S.TRAFFICKING_VICTIM_CARE)
    assert care.offer.service.id == "uavt-gt-atencion"
    assert care.rule_id == "trafficking-national-victim-care"
    assert care.send_now
    assert care.urgency is RiskLevel.CRITICAL


def test_sexual_violence_goes_to_the_emergency_centre() -> None:
    plan = route(case(region="PE-LIM", concerns=(C.SEXUAL_VIOLENCE,)))
    cem = referral_for(plan, S.VIOLENCE_EMERGENCY_CARE)
    assert cem.offer.service.id == "cem-lima-atencion"
    assert cem.rule_id == "sexual-violence-emergency-centre"
    assert cem.send_now


# --- proposed pathways ---------------------------------------------------------------------


def test_physical_violence_proposes_the_emergency_centre() -> None:
    plan = route(case(region="PE-TUM", concerns=(C.PHYSICAL_VIOLENCE,)))
    cem = referral_for(plan, S.VIOLENCE_EMERGENCY_CARE)
    assert cem.offer.service.id == "cem-tumbes-atencion"
    assert cem.rule_id == "other-violence-emergency-centre"
    assert not cem.mandatory
    assert not cem.send_now


def test_mandatory_rule_wins_over_a_proposing_one_for_the_same_service() -> None:
    plan = route(case(concerns=(C.PHYSICAL_VIOLENCE, C.GENDER_BASED_VIOLENCE)))
    cem = referral_for(plan, S.VIOLENCE_EMERGENCY_CARE)
    assert cem.mandatory
    assert cem.rule_id == "sexual-violence-emergency-centre"


def test_unaccompanied_child_is_proposed_a_shelter_if_eligible() -> None:
    girl = route(case(sex=Sex.FEMALE, unaccompanied=True))
    shelter = referral_for(girl, S.SHELTER)
    assert shelter.offer.service.id == "casa-refugio-acogida"
    assert not shelter.send_now
    boy = route(case(unaccompanied=True))  # the Piura shelter takes girls only
    assert S.SHELTER not in types(boy)
    (unmet,) = [u for u in boy.unmet if u.service_type is S.SHELTER]
    assert unmet.reason is UnmetReason.NONE_ELIGIBLE


def test_adolescent_girls_facing_violence_are_proposed_the_empowerment_programme() -> None:
    girl = route(
        case(sex=Sex.FEMALE, age_band=AgeBand.FROM_12_TO_14, concerns=(C.GENDER_BASED_VIOLENCE,))
    )
    assert (
        referral_for(girl, S.EMPOWERMENT_PROGRAMME).offer.service.id
        == "ninas-lideres-empoderamiento"
    )
    assert S.EMPOWERMENT_PROGRAMME not in types(route(case(concerns=(C.GENDER_BASED_VIOLENCE,))))
    young = route(
        case(sex=Sex.FEMALE, age_band=AgeBand.FROM_6_TO_11, concerns=(C.GENDER_BASED_VIOLENCE,))
    )
    assert S.EMPOWERMENT_PROGRAMME not in types(young)


def test_irregular_status_is_proposed_legal_aid() -> None:
    plan = route(case(nationality="VE", concerns=(C.IRREGULAR_MIGRATION_STATUS,)))
    legal = referral_for(plan, S.LEGAL_AID_MIGRATION)
    assert legal.offer.service.id == "dsf-regularizacion"
    assert legal.rule_id == "irregular-status-legal-aid"


def test_separated_migrant_in_central_america_is_proposed_family_tracing() -> None:
    plan = route(
        case(
            country="SV",
            region="SV-SS",
            nationality="HN",
            separated=True,
            registering_agency_id="uavt-sv",
        )
    )
    tracing = referral_for(plan, S.FAMILY_TRACING)
    assert tracing.offer.service.id == "reencuentro-busqueda"
    assert tracing.offer.service_country("SV") == "SV"  # delivered in SV: not cross-border
    assert S.FAMILY_TRACING not in types(route(case(nationality="VE", separated=True)))


def test_foreign_victim_is_proposed_consular_assistance_of_their_own_country() -> None:
    honduran = route(
        case(
            country="GT",
            region="GT-01",
            nationality="HN",
            concerns=(C.MIGRANT_SMUGGLING,),
            registering_agency_id="comunidad-segura-gt",
        )
    )
    consular = referral_for(honduran, S.CONSULAR_ASSISTANCE)
    assert consular.offer.service.id == "consulado-hn-gt-asistencia"
    assert not consular.send_now  # never automatic: the child may be seeking asylum
    salvadoran = route(
        case(
            country="GT",
            region="GT-01",
            nationality="SV",
            concerns=(C.MIGRANT_SMUGGLING,),
            registering_agency_id="comunidad-segura-gt",
        )
    )
    (unmet,) = [u for u in salvadoran.unmet if u.service_type is S.CONSULAR_ASSISTANCE]
    assert unmet.reason is UnmetReason.NONE_ELIGIBLE


def test_stated_needs_are_proposed_including_cross_border_services() -> None:
    plan = route(
        case(
            country="GT",
            region="GT-01",
            nationality="HN",
            needs=(S.SAFE_RETURN, S.SHELTER),
            registering_agency_id="comunidad-segura-gt",
        )
    )
    ret = referral_for(plan, S.SAFE_RETURN)
    assert ret.offer.service.id == "uavt-hn-retorno"
    assert ret.offer.service_country("GT") == "HN"
    assert ret.rule_id == "stated-needs"
    assert referral_for(plan, S.SHELTER).offer.service.id == "esperanza-acogida"


# --- selection, consent, unmet needs -----------------------------------------------------------


def test_domestic_service_is_chosen_before_a_cross_border_one() -> None:
    plan = route(
        case(
            country="HN",
            region="HN-FM",
            nationality="HN",
            concerns=(C.TRAFFICKING_INDICATORS,),
            needs=(S.SAFE_RETURN,),
            registering_agency_id="albergue-nueva-vida-hn",
        )
    )
    assert referral_for(plan, S.TRAFFICKING_VICTIM_CARE).offer.service.id == "uavt-hn-atencion"
    assert referral_for(plan, S.SAFE_RETURN).offer.service_country("HN") == "HN"


def test_consent_that_does_not_cover_a_mandatory_service_leaves_it_proposed() -> None:
    listed = ConsentV1(
        basis=ConsentBasis.CONSENT,
        scope=ConsentScope.LISTED_SERVICE_TYPES,
        service_types=[S.PSYCHOSOCIAL_SUPPORT],
        given_by=ConsentGiver.PARENT,
        recorded_at=datetime.now(UTC),
    )
    plan = route(case(concerns=(C.SEXUAL_VIOLENCE,), consent=listed))
    cem = referral_for(plan, S.VIOLENCE_EMERGENCY_CARE)
    assert cem.mandatory
    assert not cem.send_now
    nothing = ConsentV1(basis=ConsentBasis.NONE, recorded_at=datetime.now(UTC))
    assert not referral_for(
        route(case(concerns=(C.SEXUAL_VIOLENCE,), consent=nothing)), S.VIOLENCE_EMERGENCY_CARE
    ).send_now
    decision = ConsentV1(
        basis=ConsentBasis.BEST_INTEREST_DECISION,
        decided_by="officer-1",
        recorded_at=datetime.now(UTC),
    )
    assert referral_for(
        route(case(concerns=(C.SEXUAL_VIOLENCE,), consent=decision)), S.VIOLENCE_EMERGENCY_CARE
    ).send_now


def test_registering_agency_that_offers_the_service_is_not_referred_to_itself() -> None:
    plan = route(case(concerns=(C.SEXUAL_VIOLENCE,), registering_agency_id="cem-piura"))
    assert S.VIOLENCE_EMERGENCY_CARE not in types(plan)
    assert plan.unmet == []
    assert plan.served_internally == [S.VIOLENCE_EMERGENCY_CARE]


def test_no_service_in_coverage_is_an_unmet_need() -> None:
    plan = route(case(region="PE-ARE", concerns=(C.TRAFFICKING_INDICATORS,)))
    (unmet,) = plan.unmet
    assert unmet.service_type is S.TRAFFICKING_VICTIM_CARE
    assert unmet.reason is UnmetReason.NO_SERVICE_IN_COVERAGE
    assert unmet.urgency is RiskLevel.CRITICAL


def test_service_not_accepting_referrals_is_an_unmet_need() -> None:
    cem = DIRECTORY.organization("cem-piura")
    assert cem is not None
    closed = cem.model_copy(
        update={
            "services": [s.model_copy(update={"accepting_referrals": False}) for s in cem.services]
        }
    )
    plan = route(case(concerns=(C.SEXUAL_VIOLENCE,)), DIRECTORY.with_organization(closed))
    (unmet,) = plan.unmet
    assert unmet.reason is UnmetReason.NONE_ACCEPTING


@pytest.mark.parametrize("band", list(AgeBand))
def test_age_band_overlapping_the_range_is_eligible(band: AgeBand) -> None:
    plan = route(case(sex=Sex.FEMALE, age_band=band, unaccompanied=True))
    eligible = band is not AgeBand.UNDER_6  # the Piura shelter takes girls from 6
    assert (S.SHELTER in types(plan)) is eligible
