"""Closed loop: a closed referral is checked with the referring caseworker, the check is
completed (and reopened when the service was not received), and the report and the
Prometheus metrics show how well the loop closes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from contracts.codes import RiskLevel, ServiceType
from contracts.topics import Topic
from tests.followup.conftest import Referral, Service
from tests.followup.test_deadlines import projected, settled
from tests.helpers import Record, TopicReader, auth, poll_until

H = timedelta(hours=1)
DAY = timedelta(days=1)


async def case_projected(service: Service, referral: Referral) -> None:
    await poll_until(
        lambda: service.db.fetchval(
            "SELECT count(*) FROM cases WHERE case_id = $1", referral.case_id
        ),
        what="case.created applied",
    )


def of_case(records: list[Record], referral: Referral, event_type: str) -> list[Record]:
    return [r for r in records if r.type == event_type and r.subject == str(referral.case_id)]


async def test_post_closure_check_is_due_completed_and_reopened(
    followup: Service,
    publish: Any,
    topics: TopicReader,
) -> None:
    referral = Referral(urgency=RiskLevel.MEDIUM, from_agency="ong-amanecer", to_agency="cem-piura")
    t = followup.clock.now()
    await publish(referral.case_created(t, RiskLevel.MEDIUM, caseworker="cw-amanecer-4"))
    await case_projected(followup, referral)
    await publish(
        referral.sent(t, respond_within=72 * H),
        referral.acknowledged(t + H),
        referral.accepted(t + 2 * H),
        referral.started(t + 3 * H),
        referral.closed(t + 4 * DAY, outcome="service_provided"),
    )
    await projected(followup, referral, 6)

    await followup.advance(4 * DAY + 14 * DAY + H)
    records = await topics.wait_for(
        Topic.FOLLOWUPS, lambda rs: bool(of_case(rs, referral, "followup.due")), what="followup.due"
    )
    (due,) = of_case(records, referral, "followup.due")
    assert due.value["kind"] == "post_closure_check"
    assert due.value["agency_id"] == "ong-amanecer"
    assert due.value["caseworker_id"] == "cw-amanecer-4"
    assert due.value["referral_id"] == str(referral.referral_id)
    assert due.value["due_at"].startswith((t + 18 * DAY).isoformat()[:19])
    followup_id = due.value["followup_id"]
    url = f"/v1/followups/{followup_id}/complete"
    outcome = {"child_reached": True, "service_received": False, "current_risk": "high"}

    listed = await followup.client.get("/v1/followups?status=due", headers=auth("ong-amanecer"))
    assert followup_id in [f["followup_id"] for f in listed.json()]

    # Another agency: exactly like a missing follow-up; nothing written.
    other = await followup.client.post(url, json=outcome, headers=auth("cem-piura"))
    missing = await followup.client.post(
        "/v1/followups/00000000-0000-0000-0000-000000000000/complete",
        json=outcome,
        headers=auth("cem-piura"),
    )
    assert other.status_code == missing.status_code == 404
    assert other.json()["detail"] == missing.json()["detail"]

    bad = await followup.client.post(
        url,
        json={**outcome, "current_risk": "extreme", "child_reached": "maybe"},
        headers=auth("ong-amanecer"),
    )
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"current_risk", "child_reached"}
    contradiction = await followup.client.post(
        url,
        json={**outcome, "service_received": True, "reopen": True},
        headers=auth("ong-amanecer"),
    )
    assert contradiction.status_code == 422
    assert contradiction.json()["errors"][0]["field"] == "reopen"
    assert (
        await followup.db.fetchval(
            "SELECT status FROM followups WHERE followup_id = $1::uuid", followup_id
        )
        == "due"
    )

    done = await followup.client.post(url, json=outcome, headers=auth("ong-amanecer"))
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["status"] == "completed"
    assert body["service_received"] is False
    assert body["reopened_as"] is not None
    again = await followup.client.post(url, json=outcome, headers=auth("ong-amanecer"))
    assert again.status_code == 409

    records = await topics.wait_for(
        Topic.FOLLOWUPS,
        lambda rs: bool(of_case(rs, referral, "followup.completed")),
        what="followup.completed",
    )
    (completed,) = of_case(records, referral, "followup.completed")
    assert completed.value["reopened"] is True
    assert completed.value["current_risk"] == "high"
    assert completed.value["child_reached"] is True

    # The reopened check falls due a week later, with the risk the caseworker reported.
    await followup.advance(7 * DAY + H)
    records = await topics.wait_for(
        Topic.FOLLOWUPS,
        lambda rs: len(of_case(rs, referral, "followup.due")) >= 2,
        what="the reopened follow-up due",
    )
    reopened = of_case(records, referral, "followup.due")[1].value
    assert reopened["followup_id"] == body["reopened_as"]
    assert reopened["risk_level"] == "high"


async def test_high_risk_case_is_reviewed_weekly_until_its_referrals_close(
    followup: Service,
    publish: Any,
    topics: TopicReader,
) -> None:
    referral = Referral(
        urgency=RiskLevel.HIGH,
        from_agency="comunidad-segura-gt",
        to_agency="uavt-gt",
        region="GT-01",
    )
    t = followup.clock.now()
    await publish(referral.case_created(t, RiskLevel.CRITICAL, caseworker="cw-cs-2"))
    await case_projected(followup, referral)
    await publish(
        referral.sent(t, respond_within=24 * H),
        referral.acknowledged(t + H),
        referral.accepted(t + 2 * H),
    )
    await projected(followup, referral, 4)
    await followup.advance(7 * DAY + H)
    records = await topics.wait_for(
        Topic.FOLLOWUPS,
        lambda rs: bool(of_case(rs, referral, "followup.due")),
        what="periodic review",
    )
    (review,) = of_case(records, referral, "followup.due")
    assert review.value["kind"] == "periodic_review"
    assert review.value["agency_id"] == "comunidad-segura-gt"
    assert review.value["risk_level"] == "critical"

    await publish(referral.closed(followup.clock.now(), outcome="service_provided"))
    await projected(followup, referral, 5)
    await followup.advance(7 * DAY + H)
    await settled(followup)
    records = await topics.read(Topic.FOLLOWUPS)
    assert [r.value["kind"] for r in of_case(records, referral, "followup.due")] == [
        "periodic_review"
    ]  # no second review: every referral of the case is closed


async def test_referral_report_and_metrics(
    followup: Service,
    publish: Any,
    topics: TopicReader,
) -> None:
    # A region and service type no other test uses, so the figures are exact.
    def hn(to: str) -> Referral:
        return Referral(
            urgency=RiskLevel.CRITICAL,
            from_agency="red-reencuentro",
            to_agency=to,
            region="HN-CR",
            service_type=ServiceType.FAMILY_TRACING,
        )

    fast, slow, silent = hn("uavt-hn"), hn("uavt-hn"), hn("albergue-nueva-vida-hn")
    t = followup.clock.now()
    await publish(
        fast.sent(t),
        fast.acknowledged(t + H),
        fast.accepted(t + 2 * H),
        fast.closed(t + 10 * H, outcome="service_provided"),
        slow.sent(t),
        slow.acknowledged(t + 6 * H),
        slow.accepted(t + 7 * H),
        slow.closed(t + 30 * H, outcome="child_unreachable"),
        silent.sent(t),
    )
    for referral, version in ((fast, 5), (slow, 5), (silent, 2)):
        await projected(followup, referral, version)
    await followup.advance(31 * H)
    await settled(followup)

    query = "/v1/reports/referrals?region=HN-CR&service_type=family_tracing"
    sender = (await followup.client.get(query, headers=auth("red-reencuentro"))).json()
    totals = sender["totals"]
    assert sender["scope"] == "agency"
    assert (totals["sent"], totals["received"]) == (3, 0)
    assert totals["acknowledged"] == 2
    assert totals["acknowledged_in_time"] == 1
    assert totals["hours_to_acknowledge"] == {"median": 3.5, "p90": 5.5}
    assert totals["hours_to_close"] == {"median": 20.0, "p90": 28.0}
    assert totals["overdue_now"] == 1  # `silent`, never acknowledged
    assert totals["closed"] == 2
    assert totals["closed_with_service_provided"] == 1
    assert sender["by_service_type"]["family_tracing"]["sent"] == 3
    assert list(sender["by_region"]) == ["HN-CR"]

    receiver = (await followup.client.get(query, headers=auth("uavt-hn"))).json()["totals"]
    assert (receiver["sent"], receiver["received"], receiver["overdue_now"]) == (0, 2, 0)
    stranger = (await followup.client.get(query, headers=auth("ong-amanecer"))).json()["totals"]
    assert (stranger["sent"], stranger["received"]) == (0, 0)
    operations = (await followup.client.get(query, headers=auth("enlace-ops"))).json()
    assert operations["scope"] == "all"
    assert operations["totals"]["sent"] == 3

    bad = await followup.client.get(
        "/v1/reports/referrals?region=XX-ZZZZ&period_from=2026-05-01&period_to=2026-04-01",
        headers=auth("red-reencuentro"),
    )
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"query.region"}
    backwards = await followup.client.get(
        "/v1/reports/referrals?period_from=2026-05-01&period_to=2026-04-01",
        headers=auth("red-reencuentro"),
    )
    assert backwards.status_code == 422
    assert backwards.json()["errors"][0]["field"] == "query.period_from"
    unauthenticated = await followup.client.get("/v1/reports/referrals")
    assert unauthenticated.status_code == 401

    await followup.app.state.metrics.refresh(followup.app.state.runtime.pool, followup.clock.now())
    text = (await followup.client.get("/metrics")).text
    labels = 'region="HN-CR",service_type="family_tracing"'
    assert f"enlace_followup_referrals_sent{{{labels}}} 3.0" in text
    assert f"enlace_followup_referrals_acknowledged_in_time{{{labels}}} 1.0" in text
    assert f"enlace_followup_referrals_overdue_now{{{labels}}} 1.0" in text
    assert f"enlace_followup_referrals_closed_with_service_provided{{{labels}}} 1.0" in text
    # Histogram and quantile labels come out in alphabetical order.
    assert (
        f'enlace_followup_time_to_acknowledge_seconds_bucket{{le="14400.0",{labels}}} 1.0' in text
    )
    assert f"enlace_followup_time_to_close_seconds_count{{{labels}}} 2.0" in text
    assert (
        f'enlace_followup_time_to_acknowledge_quantile_seconds{{quantile="0.5",{labels}}} 12600.0'
    ) in text
