"""A record the follow-up service dead-lettered for real, made applicable again and
redriven through the JSON API, is applied exactly once: its effect once, its event
id recorded as applied; a second redrive is refused, and a forced one changes
nothing (the consumer drops the copy by its ce_id). Every action is audited."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from contracts.topics import Topic
from tests.factories import case_created
from tests.helpers import auth, consumed, poll_until
from tests.ops.conftest import Followup, Kafka, Ops

OPS = auth("enlace-ops")
CASES = "protection.cases.v1"

# Refuse case.created for the cases listed in ops_test_block (a bug, say), and log
# every change of the case projection (the effect, counted).
TRIGGERS = """
CREATE TABLE IF NOT EXISTS ops_test_block (case_id UUID PRIMARY KEY);
CREATE TABLE IF NOT EXISTS ops_test_applied (case_id UUID NOT NULL);
CREATE OR REPLACE FUNCTION ops_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM ops_test_block WHERE case_id = NEW.case_id) THEN
        RAISE EXCEPTION 'ops test: case projection refused';
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE FUNCTION ops_test_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ops_test_applied (case_id) VALUES (NEW.case_id);
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS ops_test_refuse ON cases;
CREATE TRIGGER ops_test_refuse BEFORE INSERT OR UPDATE ON cases
    FOR EACH ROW EXECUTE FUNCTION ops_test_refuse();
DROP TRIGGER IF EXISTS ops_test_count ON cases;
CREATE TRIGGER ops_test_count AFTER INSERT OR UPDATE ON cases
    FOR EACH ROW EXECUTE FUNCTION ops_test_count();
"""


async def _outcome(conn: asyncpg.Connection, event_id: str) -> str | None:
    outcome: str | None = await conn.fetchval(
        "SELECT outcome FROM processed_events WHERE consumer = $1 AND event_id = $2",
        CASES,
        event_id,
    )
    return outcome


async def _applied(conn: asyncpg.Connection, case_id: uuid.UUID) -> int:
    return int(
        await conn.fetchval("SELECT count(*) FROM ops_test_applied WHERE case_id = $1", case_id)
    )


async def _letters(ops: Ops, **params: str) -> list[dict[str, Any]]:
    answer = await ops.client.get("/v1/ops/dead-letters", params=params, headers=OPS)
    assert answer.status_code == 200, answer.text
    letters: list[dict[str, Any]] = answer.json()["dead_letters"]
    return letters


async def test_a_redriven_record_is_applied_exactly_once(
    kafka: Kafka, followup: Followup, ops: Ops
) -> None:
    db = await asyncpg.connect(followup.dsn)
    try:
        await db.execute(TRIGGERS)
        case_id = uuid.uuid4()
        await db.execute("INSERT INTO ops_test_block VALUES ($1)", case_id)
        event = await kafka.publish(case_created(case_id, "PE-PIU-2026-424242"))

        # Follow-up refuses it (2 attempts), dead-letters it, and says so.
        await poll_until(lambda: _outcome(db, event.id), lambda o: o == "dead_lettered")

        async def listed() -> list[dict[str, Any]]:
            letters = await _letters(ops, service="followup", event_type="case.created")
            return [d for d in letters if d["event_id"] == event.id]

        (letter,) = await poll_until(listed, what="the dead letter listed by ops")
        assert letter["topic"] == Topic.CASES.dlq
        assert letter["status"] == "open"
        assert letter["consumer_service"] == "followup"
        assert letter["original_topic"] == CASES
        assert letter["attempts"] == 2
        assert letter["case_reference"] == "PE-PIU-2026-424242"
        assert letter["error_type"] == "RaiseError"  # the kit names the class, never the text
        ref = {k: letter[k] for k in ("topic", "partition", "offset")}
        shown = await ops.client.get(
            f"/v1/ops/dead-letters/{ref['topic']}/{ref['partition']}/{ref['offset']}",
            headers=OPS,
        )
        assert shown.status_code == 200, shown.text
        assert dict(shown.json()["headers"])["ce_id"] == event.id
        assert shown.json()["value"]["reference"] == "PE-PIU-2026-424242"
        assert await _applied(db, case_id) == 0

        # The cause is fixed; the operator redrives it.
        await db.execute("DELETE FROM ops_test_block WHERE case_id = $1", case_id)
        redriven = await ops.client.post(
            "/v1/ops/dead-letters/redrive",
            json={"records": [ref], "reason": "projection fixed"},
            headers=OPS,
        )
        assert redriven.status_code == 200, redriven.text
        assert redriven.json()["who"] == "enlace-ops"
        await poll_until(lambda: _outcome(db, event.id), lambda o: o == "applied")
        assert await _applied(db, case_id) == 1
        assert await db.fetchval("SELECT count(*) FROM cases WHERE case_id = $1", case_id) == 1

        # Again: refused, saying why and how to insist.
        again = await ops.client.post(
            "/v1/ops/dead-letters/redrive", json={"records": [ref]}, headers=OPS
        )
        assert again.status_code == 409, again.text
        assert "force" in again.json()["detail"]

        # Forced: the copy reaches follow-up, which drops it (same ce_id).
        forced = await ops.client.post(
            "/v1/ops/dead-letters/redrive",
            json={"records": [ref], "reason": "make sure", "force": True},
            headers=OPS,
        )
        assert forced.status_code == 200, forced.text
        marker = await kafka.publish(
            case_created(uuid.uuid4(), "PE-PIU-2026-000001"),
            partition=letter["original_partition"],  # after the copy, on its partition
        )
        await consumed(db, marker.id, consumer=CASES)
        assert await _applied(db, case_id) == 1
        assert await _outcome(db, event.id) == "applied"
        dead = await db.fetchval(
            "SELECT count(*) FROM processed_events WHERE outcome = 'dead_lettered'"
            " AND event_id LIKE 'record:%'"
        )
        assert dead == 0  # the copies were not refused either

        (after,) = [d for d in await _letters(ops) if d["event_id"] == event.id]
        assert (after["status"], after["redrives"], after["status_by"]) == (
            "redriven",
            2,
            "enlace-ops",
        )
        audit = (await ops.client.get("/v1/ops/audit", headers=OPS)).json()["audit"]
        mine = [a for a in audit if any(r["event_id"] == event.id for r in a["records"])]
        assert [(a["action"], a["forced"], a["who"], a["reason"]) for a in mine] == [
            ("redrive", True, "enlace-ops", "make sure"),
            ("redrive", False, "enlace-ops", "projection fixed"),
        ]
        # Append-only, even for the service's own role.
        conn = await asyncpg.connect(ops.dsn)
        try:
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute("DELETE FROM audit")
        finally:
            await conn.close()
    finally:
        await db.close()
