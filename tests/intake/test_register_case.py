"""A registered case reaches the real topic as a CloudEvent that matches the
committed JSON Schema and carries no direct identifier."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import jsonschema

from contracts.topics import Topic
from tests.factories import guatemala_trafficking_boy, piura_adolescent_girl
from tests.helpers import TopicReader, auth

SCHEMAS = Path(__file__).parents[2] / "contracts" / "schemas"


async def test_case_created_event_on_topic(intake: httpx.AsyncClient, topics: TopicReader) -> None:
    body = piura_adolescent_girl()
    response = await intake.post("/v1/cases", json=body, headers=auth("ong-amanecer"))
    assert response.status_code == 201, response.text
    receipt = response.json()
    assert receipt["reference"].startswith("PE-PIU-")
    assert receipt["risk_level"] == "high"

    (record,) = await topics.for_case(Topic.CASES, receipt["case_id"], 1)
    assert record.key == receipt["case_id"]
    assert record.headers["ce_type"] == "case.created"
    assert record.headers["ce_specversion"] == "1.0"
    assert record.headers["ce_source"] == "/enlace/intake"
    assert record.headers["ce_dataschema"] == "urn:enlace:schema:case.created.v1"
    assert record.headers["content-type"] == "application/json"
    assert record.headers["traceparent"].startswith("00-")
    schema = json.loads((SCHEMAS / "case.created.v1.json").read_text())
    jsonschema.validate(record.value, schema, format_checker=jsonschema.FormatChecker())
    assert record.value["age_band"] == "15-17"
    assert record.value["region"] == "PE-PIU"

    raw = json.dumps(record.value) + json.dumps(record.headers)
    for identifier in (
        "Daniela",
        "Rojas",
        "V-31234567",
        "+51987654321",
        body["child"]["birth_date"],
        "Veintiséis",
        "amanecer.example.org",
    ):
        assert identifier not in raw, f"{identifier!r} leaked onto the shared topic"


async def test_trafficking_case_is_critical(intake: httpx.AsyncClient, topics: TopicReader) -> None:
    response = await intake.post(
        "/v1/cases", json=guatemala_trafficking_boy(), headers=auth("comunidad-segura-gt")
    )
    assert response.status_code == 201, response.text
    receipt = response.json()
    assert receipt["risk_level"] == "critical"
    (record,) = await topics.for_case(Topic.CASES, receipt["case_id"], 1)
    assert record.value["consent"]["basis"] == "best_interest_decision"
    assert record.value["consent"]["decided_by"] == "pgn-officer-12"
    assert "no guardian reachable" not in json.dumps(record.value)
