"""What a careless or hostile partner sends is refused at the edge with a problem
naming where it is, and nothing is written: control characters in any text, instants
out of range, duplicate keys, deep nesting, a control character in a query. The
PostgreSQL log never receives the child's name either.

The edge answers every response with `Cache-Control: no-store` and `nosniff`."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.helpers import auth, poll_until
from tests.infra import Infra
from tests.intake.conftest import with_change

PARTNER = auth("ong-amanecer")

TEXT_FIELDS = [
    "child.given_names",
    "child.family_names",
    "location.district",
    "caseworker.name",
    "guardian.name",
    "guardian.relationship",
]


def _problem(response: httpx.Response, status: int, field: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert field in [e["field"] for e in problem["errors"]], problem
    return problem


def _with_guardian(path: str, value: Any) -> dict[str, Any]:
    guardian = {"name": "Carmen Rojas", "relationship": "aunt"}
    return with_change(path, value, with_change("guardian", guardian))


@pytest.mark.usefixtures("nothing_written")
@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize("character", ["\u0000", "\u001b", "\u0085", "\ud800"])
async def test_a_control_character_in_any_text_is_refused_naming_the_field(
    intake: httpx.AsyncClient, field: str, character: str
) -> None:
    if character == "\ud800":  # a lone surrogate cannot be UTF-8: send its JSON escape
        raw = httpx.Request("POST", "/", json=_with_guardian(field, "Daniela~Valentina"))
        response = await intake.post(
            "/v1/cases",
            content=raw.content.replace(b"Daniela~Valentina", b"Daniela\\ud800Valentina"),
            headers={**PARTNER, "content-type": "application/json"},
        )
    else:
        body = _with_guardian(field, f"Daniela{character}Valentina")
        response = await intake.post("/v1/cases", json=body, headers=PARTNER)
    problem = _problem(response, 422, field)
    message = next(e["message"] for e in problem["errors"] if e["field"] == field)
    assert f"U+{ord(character):04X}" in message
    assert "Daniela" not in response.text  # the refusal never echoes the text


@pytest.mark.usefixtures("nothing_written")
async def test_a_nul_in_a_document_number_is_refused(intake: httpx.AsyncClient) -> None:
    documents = [{"type": "passport", "number": "V\u000031234567", "issuing_country": "VE"}]
    response = await intake.post(
        "/v1/cases", json=with_change("child.documents", documents), headers=PARTNER
    )
    _problem(response, 422, "child.documents.0.number")


@pytest.mark.usefixtures("nothing_written")
async def test_a_line_break_only_where_a_person_may_type_one(intake: httpx.AsyncClient) -> None:
    name = await intake.post(
        "/v1/cases", json=with_change("child.given_names", "Daniela\nValentina"), headers=PARTNER
    )
    problem = _problem(name, 422, "child.given_names")
    assert "one line" in problem["errors"][0]["message"]


async def test_a_line_break_in_a_best_interest_reason_is_accepted(
    intake: httpx.AsyncClient,
) -> None:
    body = with_change(
        "consent",
        {
            "basis": "best_interest_decision",
            "recorded_at": "2026-11-20T09:30:00-05:00",
            "best_interest": {
                "decided_by": "cw-rosa",
                "decided_at": "2026-11-20T09:00:00-05:00",
                "reason": "No guardian reachable.\r\nImmediate protection needed.\tSee file.",
            },
        },
    )
    response = await intake.post("/v1/cases", json=body, headers=PARTNER)
    assert response.status_code == 201, response.text


@pytest.mark.usefixtures("nothing_written")
@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("consent.recorded_at", "0001-01-01T00:00:00+14:00"),
        ("consent.recorded_at", "9999-12-31T23:59:59-14:00"),
        ("child.birth_date", "0001-01-01"),
    ],
)
async def test_an_instant_out_of_range_is_refused(
    intake: httpx.AsyncClient, path: str, value: str
) -> None:
    response = await intake.post("/v1/cases", json=with_change(path, value), headers=PARTNER)
    problem = _problem(response, 422, path)
    assert "between the years 1900 and 2100" in str(problem["errors"])


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
async def test_a_consent_withdrawal_out_of_range_is_refused_and_changes_nothing(
    intake: httpx.AsyncClient, intake_db: asyncpg.Pool, moment: str
) -> None:
    registered = await intake.post("/v1/cases", json=with_change("needs", []), headers=PARTNER)
    case_id = registered.json()["case_id"]
    response = await intake.post(
        f"/v1/cases/{case_id}/consent-withdrawal", json={"withdrawn_at": moment}, headers=PARTNER
    )
    _problem(response, 422, "withdrawn_at")
    row = await intake_db.fetchrow(
        "SELECT consent_status, consent_withdrawn_at FROM cases WHERE case_id = $1",
        uuid.UUID(case_id),
    )
    assert row is not None
    assert (row["consent_status"], row["consent_withdrawn_at"]) == ("active", None)


@pytest.mark.usefixtures("nothing_written")
@pytest.mark.parametrize("key", ["external_id", "sex"])
async def test_a_duplicate_key_is_refused_naming_it(intake: httpx.AsyncClient, key: str) -> None:
    body = httpx.Request("POST", "/", json=with_change("external_id", "AMN-dup-1")).content
    if key == "external_id":
        content = body.replace(b'"external_id":', b'"external_id":"AMN-dup-0","external_id":', 1)
    else:
        content = body.replace(b'"sex":"female"', b'"sex":"female","sex":"male"', 1)
    assert content != body
    response = await intake.post(
        "/v1/cases", content=content, headers={**PARTNER, "content-type": "application/json"}
    )
    problem = _problem(response, 400, key)
    assert problem["errors"][0]["type"] == "duplicate_key"


@pytest.mark.usefixtures("nothing_written")
@pytest.mark.parametrize("depth", [33, 20_000])
async def test_a_deeply_nested_body_is_a_problem(intake: httpx.AsyncClient, depth: int) -> None:
    content = b'{"external_id":' + b"[" * depth + b"]" * depth + b"}"
    response = await intake.post(
        "/v1/cases", content=content, headers={**PARTNER, "content-type": "application/json"}
    )
    problem = _problem(response, 400, "body")
    assert problem["errors"][0]["type"] == "json_too_deep"


async def test_a_control_character_in_a_query_is_refused(intake: httpx.AsyncClient) -> None:
    response = await intake.get(
        f"/internal/v1/cases/{uuid.uuid4()}/identity",
        params={"on_behalf_of": "upe-piura", "purpose": "follow\u0000up"},
        headers=auth("svc-referral"),
    )
    _problem(response, 422, "query.purpose")


async def test_answers_are_never_stored_and_never_sniffed(intake: httpx.AsyncClient) -> None:
    registered = await intake.post("/v1/cases", json=with_change("needs", []), headers=PARTNER)
    read = await intake.get(f"/v1/cases/{registered.json()['case_id']}", headers=PARTNER)
    refused = await intake.get("/v1/cases/x", headers={"Authorization": "Bearer nope"})
    for response in (registered, read, refused):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"
    assert read.json()["registration"]["child"]["given_names"] == "Daniela Valentina"


async def test_the_postgres_log_never_holds_the_name(
    infra: Infra, intake: httpx.AsyncClient, intake_dsn: str
) -> None:
    """A NUL in a name never reaches the database; and were a refused value, a
    duplicate key or a failing row to reach it, its log would not carry them."""
    assert infra.pg_log is not None, "the local cluster's log is where this is proven"
    log = infra.pg_log
    start = log.stat().st_size
    name = f"Quispe{uuid.uuid4().hex[:8]}"
    response = await intake.post(
        "/v1/cases", json=with_change("child.given_names", f"{name}\u0000x"), headers=PARTNER
    )
    assert response.status_code == 422
    # The server itself refusing values that carry the name, as the service's role:
    conn = await asyncpg.connect(intake_dsn)
    try:
        await conn.execute(f"CREATE TEMP TABLE probe (name text UNIQUE CHECK (name <> '{name}'))")
        for statement, args in (
            ("SELECT $1::text", (f"{name}\u0000",)),
            ("INSERT INTO probe VALUES ($1)", (name,)),
            ("INSERT INTO probe VALUES ($1), ($1)", (name + "2",)),
        ):
            with pytest.raises((asyncpg.PostgresError, asyncpg.DataError, ValueError)):
                await conn.execute(statement, *args)
        marker = f"enlace_log_marker_{uuid.uuid4().hex}"
        with pytest.raises(asyncpg.PostgresError):
            await conn.execute(f'SELECT * FROM "{marker}"')  # logged: "relation ... does not exist"
    finally:
        await conn.close()

    def written() -> str:
        with log.open("rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace")

    async def read() -> str:
        return written()

    # The log has caught up with everything above once the marker's error is in it.
    text = await poll_until(read, lambda t: marker in t, what="the marker in the postgres log")
    assert name not in text
    assert "Quispe" not in text
