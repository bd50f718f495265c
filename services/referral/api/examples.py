"""Request examples for referral's OpenAPI: one for each body a partner or an
operator sends, in the programmes' own terms (fictional people)."""

from __future__ import annotations

from fastapi.openapi.models import Example

from services.referral.domain.lifecycle import Action

Examples = dict[str, Example]

_BEST_INTEREST = {
    "decided_by": "cw-rosa",
    "decided_at": "2026-11-20T10:00:00-05:00",
    "reason": "The girl asked not to involve her family; immediate protection is in her "
    "best interest.\nDecision recorded by the case management team.",
}

NEW_REFERRAL: Examples = {
    "piura_special_protection": {
        "summary": "Refer a Piura case to the special protection unit",
        "value": {
            "case_id": "5b0e8f2c-6a4e-4b8e-9a61-3f7d2c1e9a10",
            "service_id": "upe-piura-proteccion",
        },
    },
    "guatemala_shelter_best_interest": {
        "summary": "Refer to a shelter on a best-interest decision, marked critical",
        "value": {
            "case_id": "c2d4a6e8-1b3f-4a5c-8e7d-9f0a1b2c3d4e",
            "service_id": "esperanza-acogida",
            "urgency": "critical",
            "best_interest": _BEST_INTEREST,
        },
    },
}

STEP_BODIES: dict[Action, Examples] = {
    Action.CONFIRM: {
        "consent_covers": {"summary": "Consent covers this service", "value": {}},
        "best_interest": {
            "summary": "Send on a documented best-interest decision",
            "value": {"best_interest": _BEST_INTEREST},
        },
    },
    Action.REJECT: {
        "no_capacity": {"summary": "No place available", "value": {"reason": "no_capacity"}},
        "outside_coverage": {
            "summary": "The child lives outside the service's area",
            "value": {"reason": "outside_coverage"},
        },
    },
    Action.CLOSE: {
        "provided": {
            "summary": "The service was provided",
            "value": {"outcome": "service_provided"},
        },
        "unreachable": {
            "summary": "The child could not be reached",
            "value": {"outcome": "child_unreachable"},
        },
    },
    Action.CANCEL: {
        "no_longer_needed": {
            "summary": "No longer needed",
            "value": {"reason": "no_longer_needed"},
        },
        "consent_withdrawn": {
            "summary": "Consent was withdrawn",
            "value": {"reason": "consent_withdrawn"},
        },
    },
}

_CONTACT = {
    "language": "es",
    "time_zone": "America/Lima",
}

ORGANIZATION: Examples = {
    "ngo_psychosocial": {
        "summary": "An NGO offering psychosocial support in four Peruvian regions",
        "value": {
            "id": "ong-amanecer",
            "name": "Asociación Amanecer (fictional)",
            "kind": "ngo",
            "country": "PE",
            "focal_point": {
                "id": "fp-ong-amanecer",
                "name": "Coordinación de casos Amanecer",
                "phone": "+51911000301",
                "email": "casos@amanecer.example.org",
                "channels": ["sms", "email"],
                **_CONTACT,
            },
            "supervisor": {
                "id": "sup-ong-amanecer",
                "name": "Dirección Amanecer",
                "email": "direccion@amanecer.example.org",
                "channels": ["email"],
                **_CONTACT,
            },
            "services": [
                {
                    "id": "amanecer-psicosocial",
                    "name": "Acompañamiento psicosocial a niñez migrante",
                    "type": "psychosocial_support",
                    "accepting_referrals": True,
                    "coverage": {
                        "countries": ["PE"],
                        "regions": ["PE-LIM", "PE-LMA", "PE-PIU", "PE-TUM"],
                        "districts": [],
                        "accepts_from_countries": [],
                    },
                    "eligibility": {
                        "min_age": 0,
                        "max_age": 17,
                        "sexes": [],
                        "nationalities": [],
                        "languages": ["es"],
                    },
                    "contacts": [
                        {
                            "id": "ct-amanecer-psico",
                            "name": "Equipo psicosocial Amanecer",
                            "phone": "+51911000303",
                            "email": "psicosocial@amanecer.example.org",
                            "channels": ["sms", "email"],
                            **_CONTACT,
                        }
                    ],
                }
            ],
        },
    }
}
