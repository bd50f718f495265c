"""The seed directory and the start-up validation of directory and rules (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from contracts.codes import ServiceType
from services.referral.domain.directory import load_directory
from services.referral.domain.documents import DirectoryError
from services.referral.domain.routing import load_rules

DEPLOY = Path(__file__).parents[2] / "deploy"
AGENCY_IDS = [
    a["id"] for a in yaml.safe_load((DEPLOY / "local" / "agencies.yaml").read_text())["agencies"]
]
SEED = (DEPLOY / "directory.yaml").read_text()


def test_seed_is_valid_and_every_organisation_is_an_agency() -> None:
    directory = load_directory(SEED, known_agencies=AGENCY_IDS)
    assert {o.id for o in directory.organizations} <= set(AGENCY_IDS)


def test_seed_covers_both_programmes() -> None:
    directory = load_directory(SEED)
    offers = directory.offers()
    for region, wanted in (
        (
            "PE-LIM",
            {
                ServiceType.SPECIAL_PROTECTION,
                ServiceType.VIOLENCE_EMERGENCY_CARE,
                ServiceType.PSYCHOSOCIAL_SUPPORT,
                ServiceType.LEGAL_AID_MIGRATION,
                ServiceType.EMPOWERMENT_PROGRAMME,
            },
        ),
        (
            "PE-PIU",
            {
                ServiceType.SPECIAL_PROTECTION,
                ServiceType.VIOLENCE_EMERGENCY_CARE,
                ServiceType.PSYCHOSOCIAL_SUPPORT,
                ServiceType.LEGAL_AID_MIGRATION,
                ServiceType.EMPOWERMENT_PROGRAMME,
                ServiceType.SHELTER,
            },
        ),
        (
            "PE-TUM",
            {
                ServiceType.SPECIAL_PROTECTION,
                ServiceType.VIOLENCE_EMERGENCY_CARE,
                ServiceType.SHELTER,
            },
        ),
    ):
        present = {o.service.type for o in offers if o.service.coverage.admits("PE", region)}
        assert wanted <= present, f"{region} lacks {wanted - present}"
    for country in ("CR", "SV", "GT", "HN", "NI", "DO"):
        assert any(
            o.service.type is ServiceType.TRAFFICKING_VICTIM_CARE
            and country in o.service.coverage.countries
            for o in offers
        ), country
    cross_border = [o for o in offers if o.service.coverage.accepts_from_countries]
    assert any(o.service.id == "uavt-hn-retorno" for o in cross_border)


def _org(**service_overrides: object) -> str:
    service: dict[str, object] = {
        "id": "svc-x",
        "name": "X",
        "type": "shelter",
        "coverage": {"countries": ["PE"], "regions": ["PE-PIU"]},
        "contacts": [
            {
                "id": "ct-x",
                "name": "Desk",
                "phone": "+51911000000",
                "time_zone": "America/Lima",
                "channels": ["sms"],
            }
        ],
    }
    service.update(service_overrides)
    contact = {"id": "fp-x", "name": "FP", "email": "fp@example.org", "channels": ["email"]}
    return yaml.safe_dump(
        {
            "organizations": [
                {
                    "id": "upe-piura",
                    "name": "UPE",
                    "kind": "state",
                    "country": "PE",
                    "focal_point": contact,
                    "supervisor": {**contact, "id": "sup-x"},
                    "services": [service],
                }
            ]
        }
    )


def test_errors_name_the_place() -> None:
    load_directory(_org(), known_agencies=AGENCY_IDS)  # the base is valid
    with pytest.raises(
        DirectoryError,
        match=r"organizations\[0\] \(id 'upe-piura'\)\.services"
        r"\[0\]\.coverage: Value error, region PE-PIU is "
        r"not in the covered countries",
    ):
        load_directory(_org(coverage={"countries": ["GT"], "regions": ["PE-PIU"]}))
    with pytest.raises(DirectoryError, match=r"services\[0\]\.type: Input should be"):
        load_directory(_org(type="massage"))
    with pytest.raises(DirectoryError, match=r"contacts\[0\]: Value error, channel email needs"):
        load_directory(_org(contacts=[{"id": "ct-y", "name": "D", "channels": ["email"]}]))
    with pytest.raises(
        DirectoryError,
        match=r"organizations\[0\]\.id: 'upe-piura' is not an "
        r"agency",
    ):
        load_directory(_org(), known_agencies=["someone-else"])


def test_routing_rule_errors_name_the_rule() -> None:
    bad = {
        "version": 1,
        "rules": [
            {"id": "ok", "description": "d", "pathway": "proposed", "refer_to_needs": True},
            {
                "id": "typo",
                "description": "d",
                "pathway": "mandatory",
                "when": {"concerns_any": ["violence"]},
                "refer_to": ["shelter"],
            },
        ],
    }
    with pytest.raises(DirectoryError, match=r"rules\[1\] \(id 'typo'\)\.when\.concerns_any\[0\]"):
        load_rules(yaml.safe_dump(bad))
    nowhere = {"version": 1, "rules": [{"id": "x", "description": "d", "pathway": "proposed"}]}
    with pytest.raises(DirectoryError, match="give refer_to or refer_to_needs"):
        load_rules(yaml.safe_dump(nowhere))
