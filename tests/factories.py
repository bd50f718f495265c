"""Realistic request bodies for both programmes (fictional children)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any


def _years_ago(years: int, days: int = 40) -> str:
    today = date.today()
    return (today.replace(year=today.year - years) - timedelta(days=days)).isoformat()


def piura_adolescent_girl(**overrides: Any) -> dict[str, Any]:
    """Unaccompanied Venezuelan adolescent girl in Piura with violence concerns."""
    body: dict[str, Any] = {
        "external_id": f"AMN-{uuid.uuid4().hex[:10]}",
        "child": {
            "given_names": "Daniela Valentina",
            "family_names": "Rojas Méndez",
            "birth_date": _years_ago(15),
            "sex": "female",
            "nationality": "VE",
            "languages": ["es"],
            "documents": [{"type": "national_id", "number": "V-31234567", "issuing_country": "VE"}],
            "has_disability": False,
        },
        "location": {"country": "PE", "region": "PE-PIU", "district": "Veintiséis de Octubre"},
        "guardian": None,
        "unaccompanied": True,
        "separated": False,
        "concerns": ["physical_violence", "gender_based_violence", "irregular_migration_status"],
        "needs": ["special_protection", "psychosocial_support", "legal_aid_migration"],
        "consent": {
            "basis": "consent",
            "scope": "all_referral_services",
            "given_by": "child",
            "recorded_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
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
    body.update(overrides)
    return body


def guatemala_trafficking_boy(**overrides: Any) -> dict[str, Any]:
    """Honduran boy identified in Guatemala with trafficking indicators."""
    body: dict[str, Any] = {
        "external_id": f"CS-{uuid.uuid4().hex[:10]}",
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
            "recorded_at": (datetime.now(UTC) - timedelta(hours=2)).isoformat(),
            "best_interest": {
                "decided_by": "pgn-officer-12",
                "decided_at": (datetime.now(UTC) - timedelta(hours=2)).isoformat(),
                "reason": "Unaccompanied child with trafficking indicators; no guardian reachable.",
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
    body.update(overrides)
    return body
