"""Erasure: case.erased ends what follow-up runs for the case (timers finished, open
checks cancelled with reason `erased`), drops its case projection, keeps the referral
projection (the audit), records the erasure, and nothing starts again for the case:
not on a redelivery, a case.created replay or a late referral event."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from contracts.codes import ErasureReason, RiskLevel
from contracts.events import CaseErasedV1
from tests.followup.conftest import Referral, Service
from tests.followup.test_deadlines import projected
from tests.helpers import auth, consumed, poll_until

H = timedelta(hours=1)
DAY = timedelta(days=1)


def _erased(referral: Referral) -> CaseErasedV1:
    return CaseErasedV1(
        case_id=referral.case_id,
        reference=referral.reference,
        registering_agency_id=referral.from_agency,
        erased_at=datetime.now(UTC),
        reason=ErasureReason.REGISTERED_IN_ERROR,
    )


async def _timers(service: Service, case_id: uuid.UUID) -> list[Any]:
    return list(
        await service.db.fetch(
            "SELECT kind, status, finished_by, referral_id FROM timers WHERE case_id = $1",
            case_id,
        )
    )


async def test_erasure_ends_timers_and_checks_and_nothing_starts_again(
    followup: Service, publish: Any
) -> None:
    # One critical referral still open (its deadline and the case's weekly review
    # run), one closed (its post-closure check is scheduled).
    t = followup.clock.now()
    open_one = Referral(urgency=RiskLevel.CRITICAL, to_agency="upe-piura")
    closed = Referral(
        urgency=RiskLevel.CRITICAL,
        to_agency="cem-piura",
        case_id=open_one.case_id,
        reference=open_one.reference,
    )
    await publish(
        open_one.case_created(t, RiskLevel.CRITICAL, caseworker="cw-amanecer-4"),
        open_one.sent(t, respond_within=4 * H),
        closed.sent(t),
        closed.acknowledged(t + H),
        closed.accepted(t + 2 * H),
        closed.closed(t + 3 * H, outcome="service_provided"),
    )
    await projected(followup, closed, 5)
    case_id = open_one.case_id
    await poll_until(
        lambda: _timers(followup, case_id),
        lambda ts: (
            {(r["kind"], r["status"]) for r in ts}
            >= {("deadline", "pending"), ("review", "pending"), ("followup", "pending")}
        ),
        what="the case's deadline, review and follow-up timers",
    )
    followup_id = await followup.db.fetchval(
        "SELECT followup_id FROM followups WHERE case_id = $1", case_id
    )

    (erasure_id,) = await publish(_erased(open_one))
    await consumed(followup.db, erasure_id)

    row = await followup.db.fetchrow("SELECT * FROM erasures WHERE case_id = $1", case_id)
    assert row is not None
    assert (row["reference"], row["reason"]) == (open_one.reference, "registered_in_error")
    removed = orjson.loads(row["removed"])
    assert removed["followups_cancelled"] == 1
    assert removed["case_projection"] == 1
    assert removed["timers_finished"] >= 3
    timers = await _timers(followup, case_id)
    assert {r["status"] for r in timers} == {"finished"}
    assert {r["kind"] for r in timers if r["finished_by"] == "case.erased"} >= {
        "review",
        "followup",
    }
    check = await followup.db.fetchrow(
        "SELECT status, cancelled_reason, agency_id, referral_id FROM followups "
        "WHERE followup_id = $1",
        followup_id,
    )
    assert check is not None
    assert (check["status"], check["cancelled_reason"]) == ("cancelled", "erased")
    assert check["referral_id"] == closed.referral_id  # which referral: the audit stays
    assert not await followup.db.fetchval("SELECT count(*) FROM cases WHERE case_id = $1", case_id)
    assert (
        await followup.db.fetchval("SELECT count(*) FROM referrals WHERE case_id = $1", case_id)
        == 2
    )
    view = await followup.client.get(f"/v1/followups/{followup_id}", headers=auth("ong-amanecer"))
    assert view.status_code == 200, view.text
    assert view.json()["status"] == "cancelled"
    done = await followup.client.post(
        f"/v1/followups/{followup_id}/complete",
        headers=auth("ong-amanecer"),
        json={"child_reached": True, "service_received": True, "current_risk": "low"},
    )
    assert done.status_code == 409
    assert done.json()["reason"] == "case_erased"

    # A second case.erased, a case.created replay and a late referral of the case
    # change nothing and start nothing.
    late = Referral(
        urgency=RiskLevel.CRITICAL,
        to_agency="ong-ninas-lideres",
        case_id=case_id,
        reference=open_one.reference,
    )
    again, replay, late_sent = await publish(
        _erased(open_one),
        open_one.case_created(t, RiskLevel.CRITICAL, caseworker="cw-amanecer-4"),
        late.sent(t + 4 * H),
    )
    for event_id in (again, replay, late_sent):
        await consumed(followup.db, event_id)
    after = await followup.db.fetchrow("SELECT * FROM erasures WHERE case_id = $1", case_id)
    assert after == row
    assert not await followup.db.fetchval("SELECT count(*) FROM cases WHERE case_id = $1", case_id)
    assert {tuple(r) for r in await _timers(followup, case_id)} == {tuple(r) for r in timers}
    late_row = await followup.db.fetchval(
        "SELECT state FROM referrals WHERE referral_id = $1", late.referral_id
    )
    assert late_row == "sent"  # projected (the audit), but no deadline started
