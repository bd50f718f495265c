"""Erasure: case.erased cancels the case's open referrals (reason `erased`), empties
what referral holds that could identify the child, keeps the audit, refuses anything
more about the case, and cannot be undone by a redelivery or a case.created replay."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import orjson

from contracts.codes import ErasureReason
from contracts.envelope import CloudEvent
from contracts.events import CaseErasedV1
from contracts.registry import producer_source, to_cloud_event
from contracts.topics import Topic, namespaced
from services.kit.kafka import make_producer, start_producer
from tests.factories import piura_adolescent_girl
from tests.helpers import Record, TopicReader, auth, consumed, poll_until
from tests.infra import Infra
from tests.referral.conftest import (
    case_consenting_to_psychosocial_support_only,
    disclosed,
    register,
)

REASON = "Ongoing sexual violence at home; immediate protection needed."


async def _publish_as_intake(infra: Infra, namespace: str, *events: CloudEvent) -> None:
    client = infra.service_kafka("intake")
    producer = await start_producer(make_producer(client, "erasure-test"), client)
    try:
        for event in events:
            await producer.send_and_wait(
                namespaced(namespace, Topic.CASES),
                key=event.key,
                value=event.value(),
                headers=event.headers(),
            )
    finally:
        await producer.stop()


def _erased(case_id: str | uuid.UUID, reference: str) -> CloudEvent:
    return to_cloud_event(
        CaseErasedV1(
            case_id=case_id,
            reference=reference,
            registering_agency_id="ong-amanecer",
            erased_at=datetime.now(UTC),
            reason=ErasureReason.DATA_SUBJECT_REQUEST,
        ),
        source=producer_source(CaseErasedV1.event_type),
    )


async def _relayed(db: asyncpg.Connection, case_id: str) -> None:
    """The case's outbox rows are on the topic (the relay deletes a row once the
    broker has it): only then does a read of the topic show all there is."""
    await poll_until(
        lambda: db.fetchval("SELECT count(*) FROM outbox WHERE subject = $1", case_id),
        lambda n: n == 0,
        what="the case's events to be relayed",
    )


def _cancelled(records: list[Record]) -> list[Record]:
    return [r for r in records if r.type == "referral.cancelled"]


async def test_erasure_cancels_scrubs_keeps_the_audit_and_refuses_more(
    infra: Infra,
    namespace: str,
    intake: httpx.AsyncClient,
    referral: httpx.AsyncClient,
    topics: TopicReader,
    db: asyncpg.Connection,
) -> None:
    # A case whose consent covers psychosocial support only: the mandatory CEM
    # referral is confirmed with a best-interest decision, whose reason is free text.
    now = datetime.now(UTC)
    case_id, outgoing = await case_consenting_to_psychosocial_support_only(intake, referral, now)
    url = f"/v1/referrals/{outgoing['cem-piura-atencion']['referral_id']}"
    decision = {"decided_by": "psy-lucia", "decided_at": now.isoformat(), "reason": REASON}
    confirmed = await referral.post(
        f"{url}/confirm", headers=auth("ong-amanecer"), json={"best_interest": decision}
    )
    assert confirmed.status_code == 200, confirmed.text
    for step in ("acknowledge", "accept"):
        assert (await referral.post(f"{url}/{step}", headers=auth("cem-piura"))).status_code == 200
    assert (await disclosed(referral, url, "cem-piura"))["identity"] is not None
    reference = outgoing["cem-piura-atencion"]["reference"]

    erasure = _erased(case_id, reference)
    await _publish_as_intake(infra, namespace, erasure)

    records = await topics.for_case(Topic.REFERRALS, case_id, 2 + 1 + 2 + 2)
    cancelled = _cancelled(records)
    assert {r.value["service_id"] for r in cancelled} == set(outgoing)
    assert {r.value["reason"] for r in cancelled} == {"erased"}

    row = await db.fetchrow("SELECT * FROM erasures WHERE case_id = $1", uuid.UUID(case_id))
    assert row is not None
    assert (row["reference"], row["reason"]) == (reference, "data_subject_request")
    assert orjson.loads(row["removed"]) == {
        "referrals_cancelled": 2,
        "profile": 1,
        "best_interest_reasons": 1,
    }
    case = await db.fetchrow("SELECT * FROM cases WHERE case_id = $1", uuid.UUID(case_id))
    assert case is not None
    assert orjson.loads(case["profile"]) == {}
    assert (case["reference"], case["registering_agency_id"]) == (reference, "ong-amanecer")
    kept: list[Any] = await db.fetch(
        "SELECT state, cancellation_reason, best_interest FROM referrals WHERE case_id = $1",
        uuid.UUID(case_id),
    )
    assert {(r["state"], r["cancellation_reason"]) for r in kept} == {("cancelled", "erased")}
    decisions = [orjson.loads(r["best_interest"]) for r in kept if r["best_interest"] is not None]
    assert [sorted(d) for d in decisions] == [["decided_at", "decided_by"]]  # who, when
    assert decisions[0]["decided_by"] == "psy-lucia"
    assert REASON not in str(
        await db.fetch("SELECT * FROM referrals WHERE case_id = $1", uuid.UUID(case_id))
    )
    audit = await db.fetch("SELECT * FROM disclosures WHERE case_id = $1", uuid.UUID(case_id))
    assert audit
    assert {r["agency_id"] for r in audit} == {"cem-piura"}

    # The receiver is told why there is no identity, without intake being asked.
    view = (await referral.get(url, headers=auth("cem-piura"))).json()
    assert (view["state"], view["cancellation_reason"]) == ("cancelled", "erased")
    assert view["identity"] is None
    assert view["identity_status"] == "erased"
    assert len(
        await db.fetch("SELECT 1 FROM disclosures WHERE case_id = $1", uuid.UUID(case_id))
    ) == len(audit)

    again = await referral.post(
        "/v1/referrals",
        headers=auth("ong-amanecer"),
        json={"case_id": case_id, "service_id": "cem-piura-atencion"},
    )
    assert again.status_code == 409
    assert again.json()["reason"] == "case_erased"
    assert "erased" in again.json()["detail"]

    # A second case.erased for the case (redelivered under another id) changes nothing.
    await _relayed(db, case_id)
    before = await db.fetchrow("SELECT * FROM erasures WHERE case_id = $1", uuid.UUID(case_id))
    copy = _erased(case_id, reference)
    await _publish_as_intake(infra, namespace, copy)
    await consumed(db, copy.id)
    await _relayed(db, case_id)
    after = await db.fetchrow("SELECT * FROM erasures WHERE case_id = $1", uuid.UUID(case_id))
    assert after == before
    again_records = [r for r in await topics.read(Topic.REFERRALS) if r.subject == case_id]
    assert len(_cancelled(again_records)) == 2


async def test_an_erased_case_never_seen_is_not_brought_back_by_case_created(
    infra: Infra,
    namespace: str,
    intake: httpx.AsyncClient,
    referral: httpx.AsyncClient,
    topics: TopicReader,
    db: asyncpg.Connection,
) -> None:
    # A real case.created, copied under another case id: that case is erased before
    # its case.created arrives here (a replay after the erasure).
    source_case = await register(intake, piura_adolescent_girl(), "ong-amanecer")
    (created,) = await topics.for_case(Topic.CASES, source_case, 1)
    case_id = uuid.uuid4()
    erasure = _erased(case_id, created.value["reference"])
    replay = CloudEvent(
        type=created.type,
        source=created.headers["ce_source"],
        subject=str(case_id),
        data={**created.value, "case_id": str(case_id)},
        dataschema=created.headers["ce_dataschema"],
    )
    await _publish_as_intake(infra, namespace, erasure, replay)

    await consumed(db, replay.id)
    row = await db.fetchrow("SELECT * FROM erasures WHERE case_id = $1", case_id)
    assert row is not None
    assert orjson.loads(row["removed"]) == {
        "referrals_cancelled": 0,
        "profile": 0,
        "best_interest_reasons": 0,
    }
    assert await db.fetchval("SELECT count(*) FROM cases WHERE case_id = $1", case_id) == 0
    assert await db.fetchval("SELECT count(*) FROM referrals WHERE case_id = $1", case_id) == 0
