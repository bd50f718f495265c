"""Bad input answers a clear 4xx naming the field, and writes nothing: no case, no
idempotency key, no outbox row."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.factories import piura_adolescent_girl
from tests.helpers import auth
from tests.intake.conftest import DELETE as _DELETE
from tests.intake.conftest import with_change

FUTURE = (date.today() + timedelta(days=3)).isoformat()
TOO_OLD = date.today().replace(year=date.today().year - 19).isoformat()


@pytest.mark.usefixtures("nothing_written")
@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("child.sex", "girl", "child.sex"),
        ("child.estimated_age_years", "fifteen", "child.estimated_age_years"),
        ("child.languages", ["xx"], "child.languages.0"),
        ("child.nationality", "XX", "child.nationality"),
        ("location.region", "PE-XYZ", "location.region"),
        ("location.region", "GT-01", "location"),
        ("concerns", ["witchcraft"], "concerns.0"),
        ("concerns", [], "concerns"),
        ("needs", ["spa_day"], "needs.0"),
        ("unaccompanied", "maybe", "unaccompanied"),
        ("external_id", _DELETE, "external_id"),
        ("consent.basis", "implied", "consent.basis"),
        ("consent.scope", _DELETE, "consent"),
        ("caseworker.phone", "987654321", "caseworker.phone"),
        ("child.birth_date", "2010-02-30", "child.birth_date"),
        ("child.birth_date", FUTURE, "child.birth_date"),
        ("child.birth_date", TOO_OLD, "child.birth_date"),
        (
            "consent.recorded_at",
            (datetime.now(UTC) + timedelta(days=2)).isoformat(),
            "consent.recorded_at",
        ),
        ("consent.recorded_at", "2026-01-01T10:00:00", "consent.recorded_at"),
        ("child.unexpected", "x", "child.unexpected"),
    ],
)
async def test_invalid_field_is_named(
    intake: httpx.AsyncClient, path: str, value: Any, field: str
) -> None:
    response = await intake.post(
        "/v1/cases", json=with_change(path, value), headers=auth("ong-amanecer")
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert field in [e["field"] for e in problem["errors"]], problem
    assert field in problem["detail"]


@pytest.mark.usefixtures("nothing_written")
async def test_malformed_json(intake: httpx.AsyncClient) -> None:
    response = await intake.post(
        "/v1/cases",
        content=b'{"external_id": "x",',
        headers={**auth("ong-amanecer"), "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "body", "message": "the body is not valid JSON", "type": "json_invalid"}
    ]


@pytest.mark.usefixtures("nothing_written")
async def test_oversize_body(intake: httpx.AsyncClient) -> None:
    body = piura_adolescent_girl()
    body["child"]["given_names"] = "x" * 70_000
    response = await intake.post("/v1/cases", json=body, headers=auth("ong-amanecer"))
    assert response.status_code == 413
    assert response.json()["errors"][0]["field"] == "body"


@pytest.mark.usefixtures("nothing_written")
async def test_oversize_streamed_body_without_length(intake: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"external_id": "'
        for _ in range(100):
            yield b"y" * 1024
        yield b'"}'

    response = await intake.post(
        "/v1/cases",
        content=chunks(),
        headers={**auth("ong-amanecer"), "content-type": "application/json"},
    )
    assert response.status_code == 413


@pytest.mark.usefixtures("nothing_written")
@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer not-a-key"}, {"Authorization": "Basic dXNlcjpwYXNz"}]
)
async def test_missing_or_wrong_key(intake: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await intake.post("/v1/cases", json=piura_adolescent_girl(), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["title"] in ("Authentication required", "Invalid API key")


@pytest.mark.usefixtures("nothing_written")
async def test_best_interest_basis_needs_who_when_why(intake: httpx.AsyncClient) -> None:
    body = piura_adolescent_girl()
    body["consent"] = {
        "basis": "best_interest_decision",
        "recorded_at": datetime.now(UTC).isoformat(),
    }
    response = await intake.post("/v1/cases", json=body, headers=auth("ong-amanecer"))
    assert response.status_code == 422
    assert "best_interest" in response.json()["errors"][0]["message"]


@pytest.mark.usefixtures("nothing_written")
async def test_caseworker_must_be_reachable(intake: httpx.AsyncClient) -> None:
    body = piura_adolescent_girl()
    body["caseworker"] = copy.deepcopy(body["caseworker"])
    del body["caseworker"]["phone"], body["caseworker"]["email"]
    response = await intake.post("/v1/cases", json=body, headers=auth("ong-amanecer"))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "caseworker"
