"""Deadlines on real Kafka and PostgreSQL, with a moved clock: a critical referral left
unacknowledged escalates at 4 h and 8 h; one acknowledged in time never does; late
and out-of-order events never bring a finished deadline back."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema

from contracts.codes import RiskLevel
from contracts.events import ReferralOverdueV1
from contracts.topics import Topic
from tests.followup.conftest import Referral, Service
from tests.helpers import Record, TopicReader, poll_until

H = timedelta(hours=1)
SCHEMAS = Path(__file__).parents[2] / "contracts" / "schemas"


async def projected(service: Service, referral: Referral, version: int) -> None:
    """Wait until the service has applied the referral's events up to `version`."""
    await poll_until(
        lambda: service.db.fetchval(
            "SELECT version FROM referrals WHERE referral_id = $1", referral.referral_id
        ),
        lambda v: v is not None and v >= version,
        what=f"referral at version {version}",
    )


def overdue(records: list[Record], referral: Referral) -> list[Record]:
    return [
        r
        for r in records
        if r.type == "referral.overdue" and r.value["referral_id"] == str(referral.referral_id)
    ]


async def wait_overdue(topics: TopicReader, referral: Referral, count: int) -> list[Record]:
    records = await topics.wait_for(
        Topic.REFERRALS,
        lambda rs: len(overdue(rs, referral)) >= count,
        what=f"{count} referral.overdue",
    )
    return overdue(records, referral)


async def settled(service: Service) -> None:
    """The timer loop has caught up with the current clock: a pass that read it has
    completed, no timer is due (none is claimed by a pass still in flight: a claimed
    row stays pending until its pass commits) and the outbox is empty (every event a
    pass enqueued is on the topic). Only then may a test assert that an event did
    not happen; `TopicReader.read` raises rather than return a partial topic."""
    now = service.clock.now()
    service.app.state.timers.wake()
    await poll_until(lambda: _quiet(service, now), what="timer pass and empty outbox")


async def _quiet(service: Service, now: Any) -> bool:
    timers = service.app.state.timers
    if timers.last_pass_at is None or timers.last_pass_at < now:
        return False
    due = await service.db.fetchval(
        "SELECT count(*) FROM timers WHERE status = 'pending' AND fire_at <= $1", now
    )
    return bool(due == 0 and await service.db.fetchval("SELECT count(*) FROM outbox") == 0)


async def test_unacknowledged_critical_referral_escalates_at_4h_then_8h(
    followup: Service,
    publish: Any,
    topics: TopicReader,
) -> None:
    referral = Referral(urgency=RiskLevel.CRITICAL)
    marker = Referral(urgency=RiskLevel.CRITICAL)  # sent an hour earlier: due an hour earlier
    sent_at = followup.clock.now()
    await publish(referral.sent(sent_at), marker.sent(sent_at - H))
    await projected(followup, referral, 2)
    await projected(followup, marker, 2)

    await followup.advance(3 * H + 59 * timedelta(minutes=1))
    await wait_overdue(topics, marker, 1)  # the pass after the move has fired
    await settled(followup)
    assert overdue(await topics.read(Topic.REFERRALS), referral) == []  # not yet

    await followup.advance(2 * timedelta(minutes=1))  # 4 h 1 min
    (level1,) = await wait_overdue(topics, referral, 1)
    assert level1.key == str(referral.case_id)
    assert level1.headers["ce_source"] == "/enlace/followup"
    assert level1.value["escalation_level"] == 1
    assert level1.value["deadline"] == "acknowledge"
    assert level1.value["due_at"].startswith((sent_at + 4 * H).isoformat()[:19])
    assert level1.value["to_agency_id"] == "upe-piura"
    assert level1.value["urgency"] == "critical"
    assert level1.value["state"] == "sent"
    assert level1.headers["ce_dataschema"] == "urn:enlace:schema:referral.overdue.v1"
    schema = json.loads((SCHEMAS / "referral.overdue.v1.json").read_text())
    jsonschema.validate(level1.value, schema, format_checker=jsonschema.FormatChecker())
    ReferralOverdueV1.model_validate(level1.value)

    await followup.advance(4 * H)  # 8 h 1 min: twice the deadline
    records = await wait_overdue(topics, referral, 2)
    assert [r.value["escalation_level"] for r in records] == [1, 2]
    assert records[1].value["due_at"] == level1.value["due_at"]

    await followup.advance(48 * H)  # the ladder has two levels: nothing more
    await settled(followup)
    assert len(overdue(await topics.read(Topic.REFERRALS), referral)) == 2


async def test_acknowledged_in_time_produces_no_overdue(
    followup: Service,
    publish: Any,
    topics: TopicReader,
) -> None:
    on_time, ignored = Referral(), Referral()  # `ignored` proves the loop did run
    start = followup.clock.now()
    await publish(on_time.sent(start), ignored.sent(start))
    await followup.advance(H)
    await publish(on_time.acknowledged(followup.clock.now()))
    await followup.advance(H)
    await publish(on_time.accepted(followup.clock.now()))
    await followup.advance(H)
    await publish(on_time.started(followup.clock.now()))
    await projected(followup, on_time, 5)
    await projected(followup, ignored, 2)

    await followup.advance(6 * H)  # 9 h after sending
    await wait_overdue(topics, ignored, 2)
    await settled(followup)
    assert overdue(await topics.read(Topic.REFERRALS), on_time) == []
    statuses = await followup.db.fetch(
        "SELECT deadline, status, finished_by, fired_count FROM timers WHERE referral_id = $1 "
        "ORDER BY started_at",
        on_time.referral_id,
    )
    assert [(r["deadline"], r["status"], r["finished_by"], r["fired_count"]) for r in statuses] == [
        ("acknowledge", "finished", "referral.acknowledged", 0),
        ("decide", "finished", "referral.accepted", 0),
        ("start_service", "finished", "referral.started", 0),
    ]


async def test_decide_deadline_runs_from_the_acknowledgement(
    followup: Service,
    publish: Any,
    topics: TopicReader,
) -> None:
    referral = Referral(urgency=RiskLevel.HIGH)
    sent_at = followup.clock.now()
    await publish(referral.sent(sent_at, respond_within=24 * H))
    await followup.advance(20 * H)
    await publish(referral.acknowledged(followup.clock.now()))
    await projected(followup, referral, 3)

    await followup.advance(24 * H + timedelta(minutes=1))  # 24 h after acknowledging
    (level1,) = await wait_overdue(topics, referral, 1)
    assert level1.value["deadline"] == "decide"
    assert level1.value["state"] == "acknowledged"
    assert level1.value["due_at"].startswith((sent_at + 44 * H).isoformat()[:19])


async def test_late_and_out_of_order_events_never_resurrect_a_deadline(
    followup: Service,
    publish: Any,
    topics: TopicReader,
) -> None:
    referral = Referral(urgency=RiskLevel.CRITICAL)
    marker = Referral(urgency=RiskLevel.CRITICAL)  # never acknowledged: proves the loop ran
    t = followup.clock.now()
    await publish(marker.sent(t))
    sent = referral.sent(t, version=2)
    accepted = referral.accepted(t + H, version=4)
    late_ack = referral.acknowledged(t + 30 * timedelta(minutes=1), version=3)
    # A replayed `sent` (a new event id, an old version) comes last.
    ids = await publish(sent, accepted, late_ack, sent)
    await poll_until(
        lambda: followup.db.fetchval(
            "SELECT count(*) FROM processed_events WHERE event_id = ANY($1::text[])", ids
        ),
        lambda n: n == 4,
        what="all four events applied",
    )
    acknowledged_at = await followup.db.fetchval(
        "SELECT acknowledged_at FROM referrals WHERE referral_id = $1", referral.referral_id
    )
    assert acknowledged_at == t + 30 * timedelta(minutes=1)  # the late fact is still recorded
    row = await followup.db.fetchrow(
        "SELECT state, version FROM referrals WHERE referral_id = $1", referral.referral_id
    )
    assert row is not None
    assert (row["state"], row["version"]) == ("accepted", 4)

    await projected(followup, marker, 2)
    await followup.advance(9 * H)
    await wait_overdue(topics, marker, 2)
    await settled(followup)
    assert overdue(await topics.read(Topic.REFERRALS), referral) == []
    timers = {
        r["deadline"]: r["status"]
        for r in await followup.db.fetch(
            "SELECT deadline, status FROM timers WHERE referral_id = $1", referral.referral_id
        )
    }
    assert timers == {"acknowledge": "finished", "start_service": "pending"}  # no decide ever
