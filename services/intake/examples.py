"""Request examples for intake's OpenAPI (fictional children): what a partner's
first integration copies. Each is a request the service accepts."""

from __future__ import annotations

from typing import Any

from fastapi.openapi.models import Example

PIURA_REGISTRATION: dict[str, Any] = {
    "external_id": "AMN-2026-00412",
    "child": {
        "given_names": "Daniela Valentina",
        "family_names": "Rojas Méndez",
        "birth_date": "2011-03-14",
        "sex": "female",
        "nationality": "VE",
        "languages": ["es"],
        "documents": [{"type": "national_id", "number": "V-31234567", "issuing_country": "VE"}],
        "has_disability": False,
    },
    "location": {"country": "PE", "region": "PE-PIU", "district": "Veintiséis de Octubre"},
    "unaccompanied": True,
    "separated": False,
    "concerns": ["physical_violence", "gender_based_violence", "irregular_migration_status"],
    "needs": ["special_protection", "psychosocial_support", "legal_aid_migration"],
    "consent": {
        "basis": "consent",
        "scope": "all_referral_services",
        "given_by": "child",
        "recorded_at": "2026-11-20T09:30:00-05:00",
    },
    "caseworker": {
        "id": "cw-rosa",
        "name": "Rosa Huamán",
        "phone": "+51987654321",
        "email": "rosa.huaman@amanecer.example.org",
        "language": "es",
        "time_zone": "America/Lima",
    },
}

PIURA_CASE: Example = {
    "summary": "Piura: unaccompanied Venezuelan adolescent, violence concerns",
    "description": "An NGO in Piura registers a 15-year-old girl who arrived alone; "
    "consent given by the child for all referral services.",
    "value": PIURA_REGISTRATION,
}

GUATEMALA_TRAFFICKING_REGISTRATION: dict[str, Any] = {
    "external_id": "CS-GT-2026-0871",
    "child": {
        "given_names": "Kevin Alexander",
        "family_names": "Martínez",
        "estimated_age_years": 14,
        "sex": "male",
        "nationality": "HN",
        "languages": ["es"],
        "documents": [],
    },
    "location": {"country": "GT", "region": "GT-01"},
    "unaccompanied": True,
    "concerns": ["trafficking_indicators", "migrant_smuggling"],
    "needs": ["trafficking_victim_care", "shelter", "consular_assistance", "safe_return"],
    "consent": {
        "basis": "best_interest_decision",
        "recorded_at": "2026-11-21T16:05:00-06:00",
        "best_interest": {
            "decided_by": "pgn-officer-12",
            "decided_at": "2026-11-21T15:40:00-06:00",
            "reason": "Unaccompanied child with trafficking indicators; no guardian "
            "reachable.\nProtection measure ordered by the PGN duty officer.",
        },
    },
    "caseworker": {
        "id": "cw-ana",
        "name": "Ana López",
        "email": "ana@comunidad.example.org",
        "language": "es",
        "time_zone": "America/Guatemala",
    },
}

GUATEMALA_TRAFFICKING_CASE: Example = {
    "summary": "Guatemala: Honduran boy with trafficking indicators, best-interest basis",
    "description": "A boy of about 14 identified in Guatemala City with trafficking "
    "indicators; no guardian reachable, so referral rests on a documented best-interest "
    "decision (who, when, why).",
    "value": GUATEMALA_TRAFFICKING_REGISTRATION,
}

REGISTRATION_EXAMPLES: dict[str, Example] = {
    "piura": PIURA_CASE,
    "guatemala_trafficking": GUATEMALA_TRAFFICKING_CASE,
}

WITHDRAWAL_EXAMPLES: dict[str, Example] = {
    "now": {"summary": "Withdrawn now", "value": {}},
    "at": {
        "summary": "Withdrawn at a known moment",
        "description": "The guardian withdrew consent at the office the day before.",
        "value": {"withdrawn_at": "2026-11-22T11:15:00-05:00"},
    },
}

ERASURE_EXAMPLES: dict[str, Example] = {
    "request": {
        "summary": "The family asked for the child's data to be erased",
        "value": {"reason": "data_subject_request"},
    },
    "operations": {
        "summary": "Operations, on a data protection authority's order",
        "description": "Operations keys must give the documented basis of the decision.",
        "value": {"reason": "legal_order", "basis": "Resolución ANPD 0421-2026"},
    },
}
