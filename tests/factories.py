"""Realistic request bodies for both programmes (fictional children)."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from contracts.events import CaseCreatedV1
from services.intake import examples


def _years_ago(years: int, days: int = 40) -> str:
    today = date.today()
    return (today.replace(year=today.year - years) - timedelta(days=days)).isoformat()


def piura_adolescent_girl(**overrides: Any) -> dict[str, Any]:
    """Unaccompanied Venezuelan adolescent girl in Piura with violence concerns: the
    Piura example of intake's OpenAPI, with a fresh external id and dates that stay
    true (15 years old, consent recorded an hour ago)."""
    body: dict[str, Any] = copy.deepcopy(examples.PIURA_REGISTRATION)
    body["external_id"] = f"AMN-{uuid.uuid4().hex[:10]}"
    body["child"]["birth_date"] = _years_ago(15)
    body["guardian"] = None
    body["consent"]["recorded_at"] = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    body.update(overrides)
    return body


def guatemala_trafficking_boy(**overrides: Any) -> dict[str, Any]:
    """Honduran boy identified in Guatemala with trafficking indicators: the Guatemala
    example of intake's OpenAPI, with a fresh external id and a decision two hours old."""
    body: dict[str, Any] = copy.deepcopy(examples.GUATEMALA_TRAFFICKING_REGISTRATION)
    body["external_id"] = f"CS-{uuid.uuid4().hex[:10]}"
    two_hours_ago = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    body["consent"]["recorded_at"] = two_hours_ago
    body["consent"]["best_interest"]["decided_at"] = two_hours_ago
    body.update(overrides)
    return body


def case_created(case_id: uuid.UUID | str, reference: str) -> CaseCreatedV1:
    """The case.created of a Piura case as intake publishes it."""
    return CaseCreatedV1(
        case_id=case_id,
        reference=reference,
        registering_agency_id="ong-amanecer",
        registered_at=datetime.now(UTC),
        country="PE",
        region="PE-PIU",
        age_band="15-17",
        sex="female",
        nationality="VE",
        languages=["es"],
        unaccompanied=True,
        separated=False,
        has_disability=False,
        concerns=["physical_violence"],
        needs=["special_protection"],
        risk_level="high",
        consent={
            "basis": "consent",
            "scope": "all_referral_services",
            "given_by": "child",
            "recorded_at": datetime.now(UTC),
        },
        caseworker_id="cw-rosa",
    )
