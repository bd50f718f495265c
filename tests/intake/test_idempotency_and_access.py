"""Idempotent registration and who may read a case. (Who may read a child's
identity: test_grants.py; possible duplicates: test_duplicates.py.)"""

from __future__ import annotations

import uuid

import asyncpg
import httpx

from contracts.topics import Topic
from tests.factories import piura_adolescent_girl
from tests.helpers import TopicReader, auth, poll_until


async def _count(dsn: str, sql: str, *args: object) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        value: int = await conn.fetchval(sql, *args)
        return value
    finally:
        await conn.close()


async def test_same_external_id_returns_the_original_case(
    intake: httpx.AsyncClient, intake_dsn: str, topics: TopicReader
) -> None:
    body = piura_adolescent_girl()
    first = await intake.post("/v1/cases", json=body, headers=auth("ong-amanecer"))
    again = await intake.post("/v1/cases", json=body, headers=auth("ong-amanecer"))
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert (
        await _count(
            intake_dsn, "SELECT count(*) FROM cases WHERE external_id = $1", body["external_id"]
        )
        == 1
    )
    # Exactly one event. A later case's event has arrived and the outbox is empty, so
    # anything the replay had enqueued (before the marker) is on the topic by now:
    # the marker alone would not do, its key may sit on another partition.
    marker = await intake.post(
        "/v1/cases", json=piura_adolescent_girl(), headers=auth("ong-amanecer")
    )
    await topics.for_case(Topic.CASES, marker.json()["case_id"], 1)
    await poll_until(
        lambda: _count(intake_dsn, "SELECT count(*) FROM outbox"),
        lambda n: n == 0,
        what="intake's outbox published",
    )
    assert len(await topics.for_case(Topic.CASES, first.json()["case_id"], 1)) == 1


async def test_same_external_id_from_another_agency_is_another_case(
    intake: httpx.AsyncClient,
) -> None:
    body = piura_adolescent_girl()
    first = await intake.post("/v1/cases", json=body, headers=auth("ong-amanecer"))
    other = await intake.post("/v1/cases", json=body, headers=auth("demuna-piura"))
    assert other.status_code == 201
    assert other.json()["case_id"] != first.json()["case_id"]


async def test_idempotency_key(intake: httpx.AsyncClient, intake_dsn: str) -> None:
    key = f"req-{uuid.uuid4()}"
    body = piura_adolescent_girl()
    headers = {**auth("ong-amanecer"), "Idempotency-Key": key}
    first = await intake.post("/v1/cases", json=body, headers=headers)
    replay = await intake.post("/v1/cases", json=body, headers=headers)
    assert (first.status_code, replay.status_code) == (201, 200)
    assert replay.json()["case_id"] == first.json()["case_id"]

    changed = piura_adolescent_girl()
    misuse = await intake.post("/v1/cases", json=changed, headers=headers)
    assert misuse.status_code == 422
    assert misuse.json()["errors"][0]["field"] == "header.Idempotency-Key"
    assert (
        await _count(
            intake_dsn, "SELECT count(*) FROM cases WHERE external_id = $1", changed["external_id"]
        )
        == 0
    )


async def test_only_the_registering_agency_reads_a_case(intake: httpx.AsyncClient) -> None:
    created = await intake.post(
        "/v1/cases", json=piura_adolescent_girl(), headers=auth("ong-amanecer")
    )
    case_id = created.json()["case_id"]
    own = await intake.get(f"/v1/cases/{case_id}", headers=auth("ong-amanecer"))
    assert own.status_code == 200
    assert own.json()["registration"]["child"]["given_names"] == "Daniela Valentina"

    other = await intake.get(f"/v1/cases/{case_id}", headers=auth("cem-piura"))
    missing = await intake.get(f"/v1/cases/{uuid.uuid4()}", headers=auth("cem-piura"))
    malformed = await intake.get("/v1/cases/not-a-uuid", headers=auth("cem-piura"))
    assert other.status_code == missing.status_code == malformed.status_code == 404
    assert other.json() == missing.json() == malformed.json()
