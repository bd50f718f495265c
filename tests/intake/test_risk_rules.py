"""The documented risk rules, rule by rule (pure domain, no I/O)."""

from __future__ import annotations

import pytest

from contracts.codes import ConcernCode as C
from contracts.codes import RiskLevel as R
from services.intake.domain import assess_risk, reference_code
from services.intake.duplicates import normalise_name


@pytest.mark.parametrize(
    ("concerns", "age", "unaccompanied", "separated", "disability", "expected"),
    [
        ([C.TRAFFICKING_INDICATORS], 16, False, False, False, R.CRITICAL),
        ([C.SEXUAL_VIOLENCE], 16, False, False, False, R.CRITICAL),
        ([C.SEXUAL_EXPLOITATION], 16, False, False, False, R.CRITICAL),
        ([C.SELF_HARM_RISK], 16, False, False, False, R.CRITICAL),
        ([C.PHYSICAL_VIOLENCE], 16, False, False, False, R.HIGH),
        ([C.GENDER_BASED_VIOLENCE], 16, False, False, False, R.HIGH),
        ([C.MIGRANT_SMUGGLING], 16, False, False, False, R.HIGH),
        ([C.CHILD_LABOUR], 16, False, False, False, R.HIGH),
        ([C.NEGLECT], 16, False, False, False, R.MEDIUM),
        ([C.FAMILY_SEPARATION], 16, False, False, False, R.MEDIUM),
        ([C.PSYCHOLOGICAL_VIOLENCE], 16, False, False, False, R.MEDIUM),
        ([C.IRREGULAR_MIGRATION_STATUS], 16, False, False, False, R.LOW),
        ([C.IRREGULAR_MIGRATION_STATUS, C.SEXUAL_VIOLENCE], 16, False, False, False, R.CRITICAL),
        ([C.IRREGULAR_MIGRATION_STATUS], 11, True, False, False, R.HIGH),
        ([C.IRREGULAR_MIGRATION_STATUS], 11, False, True, False, R.HIGH),
        ([C.IRREGULAR_MIGRATION_STATUS], 12, True, False, False, R.MEDIUM),
        ([C.IRREGULAR_MIGRATION_STATUS], 12, False, True, False, R.LOW),
        ([C.NEGLECT], 4, False, False, True, R.HIGH),
        ([C.NEGLECT], 6, False, False, True, R.MEDIUM),
        ([C.TRAFFICKING_INDICATORS], 5, True, False, False, R.CRITICAL),
    ],
)
def test_risk_rule(
    concerns: list[C], age: int, unaccompanied: bool, separated: bool, disability: bool, expected: R
) -> None:
    assert (
        assess_risk(
            concerns,
            age=age,
            unaccompanied=unaccompanied,
            separated=separated,
            has_disability=disability,
        )
        is expected
    )


def test_name_normalisation_ignores_case_accents_spacing_and_order() -> None:
    assert normalise_name("José  Luis", "PÉREZ") == normalise_name("perez", "jose luis")
    assert normalise_name("Ana") != normalise_name("Anna")


def test_reference_code_format() -> None:
    assert reference_code("PE-PIU", 2026, 123) == "PE-PIU-2026-000123"
    assert reference_code("GT-01", 2026, 7) == "GT-01-2026-000007"
