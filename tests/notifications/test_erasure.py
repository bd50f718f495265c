"""Erasure: case.erased reduces what notifications kept of the case's events to its id
and reference, drops the events parked for it, cancels its deliveries not yet
attempted, keeps the delivery log, records the erasure, and plans nothing more for
the case: not on a redelivery, a case.created replay or a late event."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from contracts.codes import ErasureReason
from contracts.events import CaseErasedV1
from tests.factories import case_created
from tests.helpers import auth, poll_until
from tests.notifications import events
from tests.notifications.conftest import Kafka, Notifications


def _erased(case_id: str, reference: str) -> CaseErasedV1:
    return CaseErasedV1(
        case_id=case_id,
        reference=reference,
        registering_agency_id="ong-amanecer",
        erased_at=datetime.now(UTC),
        reason=ErasureReason.LEGAL_ORDER,
    )


async def _rows(notifications: Notifications, sql: str, case_id: str) -> list[Any]:
    conn = await asyncpg.connect(notifications.dsn)
    try:
        return list(await conn.fetch(sql, uuid.UUID(case_id)))
    finally:
        await conn.close()


async def test_erasure_scrubs_events_cancels_pending_deliveries_and_keeps_the_log(
    notifications: Notifications, kafka: Kafka
) -> None:
    clock = notifications.clock
    clock.set_local(23, 30)  # quiet hours: the deliveries wait for the morning
    try:
        case_id, reference = str(uuid.uuid4()), events.new_reference()
        await kafka.publish(events.referral_sent(case_id, reference))  # high, not critical
        # A decision before case.created: the caseworker's part is parked for the case.
        await kafka.publish(events.referral_rejected(case_id, reference))
        await poll_until(
            lambda: _rows(notifications, "SELECT 1 FROM awaiting_case WHERE case_id = $1", case_id),
            what="the caseworker's part parked until case.created",
        )
        # Both events are planned (same case, same partition, in order); wait until
        # the worker has deferred every row: none is being attempted.
        deferred = await poll_until(
            lambda: notifications.deliveries(case_id),
            lambda ds: (
                bool(ds) and all(d["deferred_until"] and d["status"] == "pending" for d in ds)
            ),
            what="deliveries deferred to the morning",
        )

        erasure = await kafka.publish(_erased(case_id, reference))
        await notifications.consumed(erasure.id)
    finally:
        clock.set_local(12)

    (row,) = await _rows(notifications, "SELECT * FROM erasures WHERE case_id = $1", case_id)
    assert (row["reference"], row["reason"]) == (reference, "legal_order")
    assert orjson.loads(row["removed"]) == {
        "deliveries_cancelled": len(deferred),
        "parked_events": 1,
        "source_events_scrubbed": 2,
    }
    kept = await notifications.deliveries(case_id)
    assert [d["notification_id"] for d in kept] == [d["notification_id"] for d in deferred]
    assert {(d["status"], d["error_code"]) for d in kept} == {("cancelled", "case_erased")}
    sources = await _rows(
        notifications,
        "SELECT data, content_key FROM source_events WHERE case_id = $1 "
        "AND event_type <> 'case.erased'",
        case_id,
    )
    assert [orjson.loads(s["data"]) for s in sources] == [
        {"case_id": case_id, "reference": reference, "erased": True}
    ] * 2
    # case.erased itself is kept, for the registering agency's partner feeds (its
    # systems must erase too): the erasure's codes, nothing about the child.
    (notice,) = await _rows(
        notifications,
        "SELECT data FROM source_events WHERE case_id = $1 AND event_type = 'case.erased'",
        case_id,
    )
    assert set(orjson.loads(notice["data"])) == set(CaseErasedV1.model_fields)
    assert {s["content_key"] for s in sources} == {None}
    assert not await _rows(notifications, "SELECT 1 FROM awaiting_case WHERE case_id = $1", case_id)

    # The delivery log still says who was to be told, how, and why it was not.
    log = await notifications.client.get(
        "/v1/notifications", params={"case_id": case_id}, headers=auth("ong-amanecer")
    )
    assert log.status_code == 200, log.text
    assert {(d["status"], d["error_code"]) for d in log.json()["notifications"]} == {
        ("cancelled", "case_erased")
    }

    # A second case.erased, a case.created replay and a late event plan nothing.
    again = await kafka.publish(_erased(case_id, reference))
    late = await kafka.publish(events.referral_overdue(case_id, reference, 2))
    replay = await kafka.publish(case_created(case_id, reference))
    for event in (again, late, replay):
        await notifications.consumed(event.id)
    (after,) = await _rows(notifications, "SELECT * FROM erasures WHERE case_id = $1", case_id)
    assert after == row
    assert await notifications.deliveries(case_id) == kept
    assert not await _rows(notifications, "SELECT 1 FROM cases WHERE case_id = $1", case_id)
    assert (
        len(await _rows(notifications, "SELECT 1 FROM source_events WHERE case_id = $1", case_id))
        == 3  # the two scrubbed, and the first case.erased
    )
