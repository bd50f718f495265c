"""Possible duplicates: the registering agency and the shared topic learn only that a
case may be the same child as another agency's; which case, and whose, only the
operations (coordination) role reads, through intake's API."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from contracts.topics import Topic
from tests.factories import piura_adolescent_girl
from tests.helpers import TopicReader, auth

LIST = "/v1/coordination/possible-duplicates"
OPS = auth("enlace-ops")
PROBLEM = "application/problem+json"


def _child() -> dict[str, Any]:
    return {
        **piura_adolescent_girl()["child"],
        "family_names": f"Rojas Méndez {uuid.uuid4().hex[:8]}",
    }


async def _register(
    intake: httpx.AsyncClient, agency: str, child: dict[str, Any]
) -> dict[str, Any]:
    created = await intake.post(
        "/v1/cases", json=piura_adolescent_girl(child=child), headers=auth(agency)
    )
    assert created.status_code == 201, created.text
    receipt: dict[str, Any] = created.json()
    return receipt


async def _pair(intake: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
    """Agency A registers a child, then agency B the same child (written differently)."""
    child = _child()
    first = await _register(intake, "ong-amanecer", child)
    twin = {
        **child,
        "given_names": "daniela  VALENTINA",
        "family_names": child["family_names"].upper().replace("É", "E"),
    }
    return first, await _register(intake, "cem-piura", twin)


def _side(receipt: dict[str, Any], agency: str) -> dict[str, Any]:
    return {
        "case_id": receipt["case_id"],
        "reference": receipt["reference"],
        "registering_agency_id": agency,
        "registered_at": receipt["registered_at"],
    }


async def test_the_registering_agency_learns_only_that_a_duplicate_exists(
    intake: httpx.AsyncClient, topics: TopicReader
) -> None:
    first, receipt = await _pair(intake)
    assert first["possible_duplicate"] is False
    assert receipt["case_id"] != first["case_id"]
    assert receipt["possible_duplicate"] is True
    view = await intake.get(f"/v1/cases/{receipt['case_id']}", headers=auth("cem-piura"))
    assert view.status_code == 200
    assert view.json()["possible_duplicate"] is True
    a_side = (first["case_id"], "ong-amanecer", first["reference"])
    for body in (orjson.dumps(receipt).decode(), view.text):
        assert "possible_duplicate_of" not in body
        for detail in a_side:
            assert detail not in body

    # The shared topic: the flag alone, the deprecated list empty. A's case was
    # published first, B's after it on the same read: A's event is final too.
    (record,) = await topics.for_case(Topic.CASES, receipt["case_id"], 1)
    assert (record.value["possible_duplicate"], record.value["possible_duplicate_of"]) == (
        True,
        [],
    )
    assert first["case_id"] not in orjson.dumps(record.value).decode()
    (original,) = await topics.for_case(Topic.CASES, first["case_id"], 1)
    assert (original.value["possible_duplicate"], original.value["possible_duplicate_of"]) == (
        False,
        [],
    )


async def test_operations_see_who_matched_whom(intake: httpx.AsyncClient) -> None:
    first, second = await _pair(intake)
    # A registering the child again matches B's case only: its own is its own business.
    again = await _register(intake, "ong-amanecer", _twin_of(await _child_of(intake, first)))
    assert again["possible_duplicate"] is True
    assert first["case_id"] not in orjson.dumps(again).decode()

    listed = await intake.get(LIST, params={"limit": 2}, headers=OPS)
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"] == [
        {"case": _side(again, "ong-amanecer"), "matches": [_side(second, "cem-piura")]},
        {"case": _side(second, "cem-piura"), "matches": [_side(first, "ong-amanecer")]},
    ]
    # no child's details: only ids, references, agencies, times
    assert "Rojas" not in listed.text.title()
    assert "Daniela" not in listed.text.title()


async def _child_of(intake: httpx.AsyncClient, receipt: dict[str, Any]) -> dict[str, Any]:
    view = await intake.get(f"/v1/cases/{receipt['case_id']}", headers=auth("ong-amanecer"))
    child: dict[str, Any] = view.json()["registration"]["child"]
    return child


def _twin_of(child: dict[str, Any]) -> dict[str, Any]:
    return {**child, "given_names": child["given_names"].lower()}


@pytest.mark.parametrize("caller", ["cem-piura", "ong-amanecer", "svc-referral"])
async def test_other_keys_are_told_the_list_does_not_exist(
    intake: httpx.AsyncClient, caller: str
) -> None:
    await _pair(intake)
    refused = await intake.get(LIST, headers=auth(caller))
    assert refused.status_code == 404, refused.text
    assert refused.headers["content-type"] == PROBLEM
    # the answer of every route this key may not know of (here: the notifications
    # service's own)
    hidden = await intake.get("/internal/v1/caseworkers/ong-amanecer/cw-rosa", headers=auth(caller))
    assert hidden.status_code == 404, hidden.text
    assert refused.json() == hidden.json()
    assert (refused.json()["title"], refused.json()["detail"]) == ("Not found", "No such resource.")
    assert "items" not in refused.text


async def test_the_list_pages_newest_first(intake: httpx.AsyncClient) -> None:
    pairs = [await _pair(intake) for _ in range(3)]
    flagged = [second["case_id"] for _, second in reversed(pairs)]  # newest first

    first_page = (await intake.get(LIST, params={"limit": 2}, headers=OPS)).json()
    assert [item["case"]["case_id"] for item in first_page["items"]] == flagged[:2]
    assert first_page["next_cursor"]
    second_page = await intake.get(
        LIST, params={"limit": 2, "cursor": first_page["next_cursor"]}, headers=OPS
    )
    assert second_page.status_code == 200, second_page.text
    assert second_page.json()["items"][0]["case"]["case_id"] == flagged[2]
    assert second_page.json()["items"][0]["matches"][0]["case_id"] == pairs[0][0]["case_id"]

    # Walking every page sees each flagged case once, newest first, to the last page.
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        page = (await intake.get(LIST, params=params, headers=OPS)).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    ids = [item["case"]["case_id"] for item in seen]
    assert len(ids) == len(set(ids))
    assert ids[:3] == flagged
    moments = [item["case"]["registered_at"] for item in seen]
    assert moments == sorted(moments, reverse=True)


def _b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor!",
        _b64("2026-01-01T00:00:00|" + str(uuid.uuid4())),  # no offset
        _b64("2026-01-01T00:00:00+00:00|not-a-uuid"),
        _b64("2026-01-01T00:00:00+00:00"),
        _b64("2026-01-01T00:00:00+00:00|" + str(uuid.uuid4()) + "|more"),
        _b64("yesterday|" + str(uuid.uuid4())),
    ],
)
async def test_a_tampered_cursor_is_refused_naming_it(
    intake: httpx.AsyncClient, intake_db: asyncpg.Pool, cursor: str
) -> None:
    await _pair(intake)
    before = await intake_db.fetchval("SELECT count(*) FROM cases")
    refused = await intake.get(LIST, params={"cursor": cursor}, headers=OPS)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == PROBLEM
    assert [e["field"] for e in refused.json()["errors"]] == ["query.cursor"]
    assert "items" not in refused.json()
    assert await intake_db.fetchval("SELECT count(*) FROM cases") == before


async def test_a_tampered_valid_cursor_is_refused(intake: httpx.AsyncClient) -> None:
    await _pair(intake)
    await _pair(intake)
    page = (await intake.get(LIST, params={"limit": 1}, headers=OPS)).json()
    cursor = page["next_cursor"]
    for tampered in (cursor[:-3], cursor + "A", cursor.upper()):
        refused = await intake.get(LIST, params={"cursor": tampered}, headers=OPS)
        assert refused.status_code == 422, tampered
        assert refused.json()["errors"][0]["field"] == "query.cursor"


@pytest.mark.parametrize("limit", [0, 101])
async def test_limit_is_bounded(intake: httpx.AsyncClient, limit: int) -> None:
    refused = await intake.get(LIST, params={"limit": limit}, headers=OPS)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "query.limit"
