"""The fault suite's own judgement, on made-up timelines and records: a checker that
cannot see a stall, a lie of /readyz, a lost or a doubled message would pass any
product. No stack here: these run in milliseconds."""

from __future__ import annotations

from typing import Any

from faults import checker, timeline
from faults.expect import Message, Template
from faults.inject import Fault
from faults.load import Attempt, Case
from faults.observe import Sample
from faults.truth import Delivered, Topics, kind_of
from tests.helpers import Record

SERVICES = ("intake", "referral", "followup", "notifications")


def sample(t: float, delivered: int, owed: int, **fields: Any) -> Sample:
    values: dict[str, Any] = {
        "ready": dict.fromkeys(SERVICES, 200),
        "outbox": dict.fromkeys(SERVICES, 0),
        "open_deliveries": 0,
        "due_deliveries": 0,
        "lag": {"enlace-intake.x": 0},
        "committed": {"enlace-intake.x": 0},
        "ends": {"protection.cases.v1": 0},
    }
    values.update(fields)
    expected = {"sms": owed, "email": owed}
    return Sample(t, delivered, delivered, 0, expected, unready={}, **values)


def fault(kind: str, start: float, end: float) -> Fault:
    return Fault(kind, "x", start, 0.0, started_at=start, undone_at=end, ended_at=end)


def test_a_stall_longer_than_its_fault_plus_15_s_is_found_and_given_to_it() -> None:
    # Delivering every second, then nothing from 10 s to 50 s while messages are owed.
    samples = [sample(t / 2, min(t, 20) if t < 100 else t - 80, 200) for t in range(0, 240)]
    rows = timeline.per_fault(samples, [fault("pg-kill", 10.0, 20.0)], nodes=1)
    assert rows[0]["stall_s"] >= 39.0
    assert rows[0]["stall_limit_s"] == 25.0
    assert rows[0]["stall_ok"] is False
    assert timeline.outside_faults(samples, [fault("pg-kill", 10.0, 20.0)])["stall_ok"]


def test_a_stall_no_fault_explains_is_measured_against_15_s() -> None:
    samples = [sample(t / 2, min(t, 20) if t < 100 else t - 80, 200) for t in range(0, 240)]
    assert timeline.outside_faults(samples, [])["stall_ok"] is False


def test_a_stall_spanning_two_faults_is_measured_from_the_first_start_to_the_last_end() -> None:
    samples = [sample(t / 2, min(t, 20) if t < 100 else t - 80, 200) for t in range(0, 240)]
    faults = [fault("service-kill:notifications", 10.0, 13.0), fault("broker-kill", 20.0, 40.0)]
    rows = timeline.per_fault(samples, faults, nodes=1)
    assert rows[0]["stall_limit_s"] == 45.0
    assert rows[0]["stall_ok"] is True


def test_a_200_while_the_relay_does_not_move_for_10_s_is_a_lie_and_a_503_is_not() -> None:
    stuck = [
        sample(t / 2, 0, 0, outbox={**dict.fromkeys(SERVICES, 0), "intake": 5})
        for t in range(0, 60)
    ]
    assert timeline.readiness(stuck)["intake"]["ready_200_while_stuck"] > 0
    honest = [
        sample(
            t / 2,
            0,
            0,
            outbox={**dict.fromkeys(SERVICES, 0), "intake": 5},
            ready={**dict.fromkeys(SERVICES, 200), "intake": 503},
        )
        for t in range(0, 60)
    ]
    assert timeline.readiness(honest)["intake"]["ready_200_while_stuck"] == 0


def test_a_200_while_postgresql_is_down_is_a_lie() -> None:
    samples = [sample(t / 2, 0, 0) for t in range(0, 60)]
    row = timeline.per_fault(samples, [fault("pg-kill", 2.0, 20.0)], nodes=1)[0]
    assert row["readiness"]["checked"] is True
    assert row["readiness"]["truthful"] is False


def test_lag_back_to_zero_is_timed_from_the_broker_answering() -> None:
    samples = [
        sample(t / 2, 0, 0, lag={"enlace-intake.x": 0 if t / 2 >= 30 else 7}) for t in range(80)
    ]
    row = timeline.per_fault(samples, [fault("broker-kill", 5.0, 20.0)], nodes=1)[0]
    assert row["lag_zero_max_s"] == 10.0
    assert row["lag_ok"] is True


def _record(topic: str, event_id: str, kind: str, subject: str, **value: object) -> Record:
    headers = {"ce_id": event_id, "ce_type": kind, "ce_subject": subject}
    return Record(topic, 0, 0, subject, headers, dict(value))


def test_lost_and_doubled_messages_and_events_are_counted() -> None:
    template = Template(
        "piura",
        "ong-amanecer",
        (("upe-piura-proteccion", "referral.sent"),),
        (),
        (
            Message("sms", "+51911000603", "ct-upe", "referral.sent"),
            Message("email", "upe@example.org", "ct-upe", "referral.sent"),
        ),
    )
    case = Case(0, "piura", "k", [Attempt(0.0, 0.1, 201)], "case-1", "PE-PIU-2026-000001")
    topics = Topics(
        {
            "protection.cases.v1": [
                _record("protection.cases.v1", "e1", "case.created", "case-1"),
                _record("protection.cases.v1", "e2", "case.created", "case-1"),
            ],
            "protection.referrals.v1": [
                _record(
                    "protection.referrals.v1",
                    "r1",
                    "referral.sent",
                    "case-1",
                    service_id="upe-piura-proteccion",
                    version=1,
                )
            ],
        }
    )
    sms = Delivered("sms", "+51911000603", "PE-PIU-2026-000001", "referral.sent", "SM1")
    delivered = [sms, Delivered("sms", sms.to, sms.reference, sms.kind, "SM2")]
    lost = checker.lost([case], {"piura": template}, topics, delivered)
    assert lost.counts == {"case.created": 0, "referral events": 0, "sms": 0, "email": 1}
    doubled = checker.duplicates(topics, delivered).counts
    assert doubled["sms to the same recipient"] == 1
    assert doubled["logical: case.created per case"] == 1
    assert doubled["email to the same recipient"] == 0


def test_the_kind_of_a_message_is_read_from_its_words_in_either_language() -> None:
    assert kind_of("Enlace: nueva derivación PE-PIU-2026-000001 (protección)") == "referral.sent"
    assert kind_of("[URGENT] New referral GT-01-2026-000001: shelter") == "referral.sent"
    assert kind_of("Derivación PE-PIU-2026-000001 vencida: confirmar") == "referral.overdue"
