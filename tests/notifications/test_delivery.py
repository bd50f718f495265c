"""End to end on real Kafka, PostgreSQL, SMTP (aiosmtpd) and the local SMS API."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx

from contracts.codes import RiskLevel
from contracts.topics import Topic
from services.notifications.channels.sms import sign_request
from services.notifications.local_sms import LocalSmsProvider
from services.notifications.local_smtp import LocalSmtpServer
from tests.factories import case_created, piura_adolescent_girl
from tests.helpers import TopicReader, auth, poll_until
from tests.notifications import events
from tests.notifications.conftest import (
    INVALID_NUMBER,
    REFUSED_MAILBOX,
    Kafka,
    Notifications,
    emails_about,
    texts_about,
)

MESA_PHONE, MESA_EMAIL = "+51911000003", "mesa@upe-piura.example.org"
ROSA_PHONE = "+51987654321"  # the caseworker registered with the case at intake
GUARDIA = ("cem-piura-guardia", "ct-cem-piura-guardia", "+51911000501")  # service, contact, SMS
CHILD_DETAILS = ("Daniela", "Rojas", "Méndez", "V-31234567", "Veintiséis")


async def register_case(intake: httpx.AsyncClient) -> tuple[str, str]:
    response = await intake.post(
        "/v1/cases", json=piura_adolescent_girl(), headers=auth("ong-amanecer")
    )
    assert response.status_code == 201, response.text
    return response.json()["case_id"], response.json()["reference"]


def of_type(records: list, event_type: str) -> list:  # type: ignore[type-arg]
    return [r for r in records if r.type == event_type]


async def test_new_piura_referral_texts_and_emails_the_unit_once_in_spanish(
    notifications: Notifications,
    intake: httpx.AsyncClient,
    kafka: Kafka,
    smtp: LocalSmtpServer,
    sms: LocalSmsProvider,
    topics: TopicReader,
) -> None:
    case_id, reference = await register_case(intake)
    respond_by = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=24)
    sent = await kafka.publish(events.referral_sent(case_id, reference, respond_by=respond_by))

    texts = await poll_until(
        lambda: _texts(sms, reference, MESA_PHONE),
        lambda t: len(t) == 1,
        what="the SMS to the UPE Piura contact point",
    )
    mails = await poll_until(
        lambda: _mails(smtp, reference, MESA_EMAIL),
        lambda m: len(m) == 1,
        what="the email to the UPE Piura contact point",
    )
    local_deadline = respond_by.astimezone(__import__("zoneinfo").ZoneInfo("America/Lima"))
    body = texts[0]["body"]
    assert body.startswith(f"Enlace: nueva derivacion {reference} (proteccion especial)")
    assert f"antes del {local_deadline:%d/%m %H:%M}" in body
    email = mails[0]
    text = email.get_content()
    assert str(email["Subject"]).startswith(f"Nueva derivación {reference}")
    assert "Qué hacer: confirme la recepción" in text
    assert f"{local_deadline:%d/%m/%Y %H:%M} (hora de America/Lima)" in text
    assert "/v1/referrals/" in text
    for detail in CHILD_DETAILS:
        assert detail not in body, f"{detail!r} leaked into an SMS"
        assert detail not in text, f"{detail!r} leaked into an email"

    records = await topics.for_case(Topic.NOTIFICATIONS, case_id, 2)
    assert sorted(r.value["channel"] for r in of_type(records, "notification.sent")) == [
        "email",
        "sms",
    ]
    for record in records:
        assert record.key == case_id
        assert record.value["recipient_id"] == "ct-upe-piura-mesa"
        assert record.value["source_event_id"] == sent.id
        assert record.value["reference"] == reference

    # The same event again, then a later event of the same case (same partition) as a
    # barrier: once the caseworker's SMS is out, the duplicate has been consumed.
    await kafka.publish(sent)
    await kafka.publish(events.referral_accepted(case_id, reference))
    rosa = await poll_until(
        lambda: _texts(sms, reference, ROSA_PHONE),
        lambda t: len(t) == 1,
        what="the SMS to the referring caseworker",
    )
    assert rosa[0]["body"].startswith(f"Enlace: aceptaron la derivacion {reference}")
    await poll_until(
        lambda: _mails(smtp, reference, "rosa.huaman@amanecer.example.org"),
        lambda m: len(m) == 1,
        what="the email to the caseworker",
    )
    assert len(texts_about(sms, reference, MESA_PHONE)) == 1
    assert len(emails_about(smtp, reference, MESA_EMAIL)) == 1
    records = await topics.for_case(Topic.NOTIFICATIONS, case_id, 4)
    assert len(of_type(records, "notification.sent")) == 4

    # The provider's signed status callbacks reached the service.
    deliveries = await poll_until(
        lambda: notifications.deliveries(case_id),
        lambda ds: {d["status"] for d in ds if d["channel"] == "sms"} == {"delivered"},
        what="SMS delivery reports",
    )

    # The delivery log: the case's agency sees it, without message bodies; nobody else does.
    response = await notifications.client.get(
        "/v1/notifications", params={"case_id": case_id}, headers=auth("ong-amanecer")
    )
    assert response.status_code == 200, response.text
    log = response.json()["notifications"]
    assert len(log) == len(deliveries) == 4
    assert {(n["recipient_id"], n["channel"]) for n in log} == {
        ("ct-upe-piura-mesa", "sms"),
        ("ct-upe-piura-mesa", "email"),
        ("ong-amanecer.cw-rosa", "sms"),
        ("ong-amanecer.cw-rosa", "email"),
    }
    assert {n["status"] for n in log if n["channel"] == "email"} == {"sent"}
    assert all(n["attempts"] == 1 and n["provider_message_id"] for n in log)
    raw = json.dumps(log)
    for secret in (reference, "Enlace:", "@", "+51"):  # no bodies, no addresses
        assert secret not in raw
    other = await notifications.client.get(
        "/v1/notifications", params={"case_id": case_id}, headers=auth("upe-piura")
    )
    assert other.status_code == 404
    assert (
        other.json()
        == (
            await notifications.client.get(
                "/v1/notifications",
                params={"case_id": str(uuid.uuid4())},
                headers=auth("upe-piura"),
            )
        ).json()
    )
    bad = await notifications.client.get(
        "/v1/notifications", params={"case_id": "nope"}, headers=auth("ong-amanecer")
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "query.case_id"
    assert (
        await notifications.client.get("/v1/notifications", params={"case_id": case_id})
    ).status_code == 401


async def _texts(sms: LocalSmsProvider, reference: str, to: str) -> list[dict[str, Any]]:
    return texts_about(sms, reference, to)


async def _mails(smtp: LocalSmtpServer, reference: str, to: str) -> list[EmailMessage]:
    return list(emails_about(smtp, reference, to))


async def test_provider_answering_500_twice_then_201_gives_one_sms(
    notifications: Notifications,
    kafka: Kafka,
    sms: LocalSmsProvider,
    topics: TopicReader,
) -> None:
    guardia = GUARDIA[2]
    sms.fail_next(2, 500, to=guardia)
    case_id, reference = str(uuid.uuid4()), events.new_reference()
    await kafka.publish(
        events.referral_sent(
            case_id, reference, to_agency_id="cem-piura", service_id="cem-piura-guardia"
        )
    )
    (record,) = await topics.for_case(Topic.NOTIFICATIONS, case_id, 1)
    assert record.type == "notification.sent"
    assert record.value["attempts"] == 3
    assert record.value["channel"] == "sms"
    assert len(texts_about(sms, reference, guardia)) == 1
    assert len([r for r in sms.requests if reference in r["Body"]]) == 3
    (delivery,) = await notifications.deliveries(case_id)
    assert (delivery["status"], delivery["attempts"]) in (("sent", 3), ("delivered", 3))


async def test_invalid_number_and_refused_mailbox_fail_at_once(
    notifications: Notifications,
    kafka: Kafka,
    sms: LocalSmsProvider,
    smtp: LocalSmtpServer,
    topics: TopicReader,
) -> None:
    case_id, reference = str(uuid.uuid4()), events.new_reference()
    await kafka.publish(
        events.referral_sent(
            case_id, reference, to_agency_id="cem-piura", service_id="cem-piura-numero-invalido"
        )
    )
    records = await topics.for_case(Topic.NOTIFICATIONS, case_id, 2)
    failed = {r.value["channel"]: r.value for r in of_type(records, "notification.failed")}
    assert failed["sms"]["error_code"] == "twilio_21211"
    assert failed["email"]["error_code"] == "smtp_550"
    for value in failed.values():
        assert value["permanent"] is True
        assert value["attempts"] == 1

    # A later event of the same case (same key, same partition) as a marker: once its
    # SMS is out, nothing more can come of the first event (both of its rows are
    # final), so the absences below are proven, not a snapshot taken too early.
    await kafka.publish(
        events.referral_sent(case_id, reference, to_agency_id="cem-piura", service_id=GUARDIA[0])
    )
    await poll_until(
        lambda: notifications.deliveries(case_id),
        lambda ds: any(
            d["recipient_id"] == GUARDIA[1] and d["status"] in ("sent", "delivered") for d in ds
        ),
        what="the marker's SMS sent",
    )
    deliveries = await notifications.deliveries(case_id)
    assert [
        (d["channel"], d["status"], d["attempts"])
        for d in deliveries
        if d["recipient_id"] == "ct-cem-piura-invalido"
    ] == [("email", "failed", 1), ("sms", "failed", 1)]
    assert (
        len([r for r in sms.requests if r["To"] == INVALID_NUMBER and reference in r["Body"]]) == 1
    )
    assert emails_about(smtp, reference, REFUSED_MAILBOX) == []


async def test_forged_status_callback_is_refused(
    notifications: Notifications, kafka: Kafka, topics: TopicReader
) -> None:
    case_id, reference = str(uuid.uuid4()), events.new_reference()
    await kafka.publish(
        events.referral_sent(
            case_id, reference, to_agency_id="cem-piura", service_id="cem-piura-guardia"
        )
    )
    (record,) = await topics.for_case(Topic.NOTIFICATIONS, case_id, 1)
    sid = record.value["provider_message_id"]
    url = notifications.settings.sms_status_callback_url
    params = {
        "MessageSid": sid,
        "MessageStatus": "undelivered",
        "ErrorCode": "30003",
        "AccountSid": notifications.settings.sms_account_sid,
    }
    forged = await notifications.client.post(
        "/v1/sms/status",
        data=params,
        headers={"X-Twilio-Signature": sign_request(url, params, "not-the-token")},
    )
    assert forged.status_code == 403
    assert forged.json()["errors"][0]["field"] == "header.X-Twilio-Signature"
    unsigned = await notifications.client.post("/v1/sms/status", data=params)
    assert unsigned.status_code == 403
    tampered = dict(params, MessageStatus="delivered")  # signed one thing, sent another
    signature = sign_request(url, params, notifications.settings.sms_auth_token)
    response = await notifications.client.post(
        "/v1/sms/status", data=tampered, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 403
    await poll_until(
        lambda: notifications.deliveries(case_id),
        lambda ds: ds[0]["provider_status"] == "delivered",
        what="the genuine delivery report",
    )
    (delivery,) = await notifications.deliveries(case_id)
    assert delivery["status"] == "delivered"  # the forged 'undelivered' changed nothing
    assert [r.type for r in await topics.for_case(Topic.NOTIFICATIONS, case_id, 1)] == [
        "notification.sent"
    ]

    # A genuine undelivered report (signed with the account's token) is recorded and told.
    genuine = await notifications.client.post(
        "/v1/sms/status", data=params, headers={"X-Twilio-Signature": signature}
    )
    assert genuine.status_code == 204
    records = await topics.for_case(Topic.NOTIFICATIONS, case_id, 2)
    (failed,) = of_type(records, "notification.failed")
    assert (failed.value["error_code"], failed.value["permanent"]) == ("twilio_30003", True)
    (delivery,) = await notifications.deliveries(case_id)
    assert delivery["status"] == "undelivered"


async def test_quiet_hours_defer_until_morning_but_not_critical_cases(
    notifications: Notifications,
    kafka: Kafka,
    sms: LocalSmsProvider,
    topics: TopicReader,
) -> None:
    clock = notifications.clock
    night = clock.set_local(23, 30)
    try:
        case_id, reference = str(uuid.uuid4()), events.new_reference()
        await kafka.publish(events.referral_sent(case_id, reference))  # high, not critical
        urgent_case, urgent_ref = str(uuid.uuid4()), events.new_reference()
        await kafka.publish(
            events.referral_sent(urgent_case, urgent_ref, urgency=RiskLevel.CRITICAL)
        )
        deferred = await poll_until(
            lambda: notifications.deliveries(case_id),
            lambda ds: len(ds) == 2 and all(d["deferred_until"] for d in ds),
            what="deliveries deferred to the morning",
        )
        morning = (
            (night + timedelta(days=1))
            .astimezone(__import__("zoneinfo").ZoneInfo("America/Lima"))
            .replace(hour=7, minute=0, second=0, microsecond=0)
        )
        assert {d["next_attempt_at"] for d in deferred} == {morning.astimezone(UTC)}
        # Both rows were claimed and their attempt recorded as a deferral (attempt given
        # back): the attempt is over and it sent nothing, so the provider never saw it.
        assert {(d["status"], d["attempts"]) for d in deferred} == {("pending", 0)}
        await topics.for_case(Topic.NOTIFICATIONS, urgent_case, 2)  # critical: sent at night
        assert len(texts_about(sms, urgent_ref)) == 1
        assert [r for r in sms.requests if reference in r["Body"]] == []

        clock.set(morning + timedelta(minutes=1))  # the next morning in Lima
        records = await topics.for_case(Topic.NOTIFICATIONS, case_id, 2)
        assert {r.type for r in records} == {"notification.sent"}
        assert len(texts_about(sms, reference)) == 1
    finally:
        clock.set_local(12)


async def test_decision_before_the_case_is_known_waits_for_case_created(
    notifications: Notifications,
    intake: httpx.AsyncClient,
    kafka: Kafka,
    sms: LocalSmsProvider,
) -> None:
    await register_case(intake)  # makes sure intake knows caseworker cw-rosa of ong-amanecer
    case_id, reference = str(uuid.uuid4()), events.new_reference()
    rejected = await kafka.publish(events.referral_rejected(case_id, reference))
    # No case.created yet: the event is consumed (its id recorded in the same transaction
    # as its effects) and parked; it planned no delivery, so nothing can be sent.
    await notifications.consumed(rejected.id)
    assert await _awaiting(notifications, case_id)
    assert await notifications.deliveries(case_id) == []
    assert texts_about(sms, reference) == []
    await kafka.publish(
        case_created(case_id, reference),
        source="/enlace/intake",
    )
    (text,) = await poll_until(
        lambda: _texts(sms, reference, ROSA_PHONE),
        lambda t: len(t) == 1,
        what="the caseworker's SMS",
    )
    assert "rechazaron la derivacion" in str(text["body"])
    assert "informacion insuficiente" in str(text["body"])


async def _awaiting(notifications: Notifications, case_id: str) -> bool:
    import asyncpg

    conn = await asyncpg.connect(notifications.dsn)
    try:
        return bool(
            await conn.fetchval(
                "SELECT count(*) FROM awaiting_case WHERE case_id = $1::uuid", case_id
            )
        )
    finally:
        await conn.close()


async def test_escalation_level_two_reaches_focal_point_and_supervisor_even_at_night(
    notifications: Notifications,
    kafka: Kafka,
    sms: LocalSmsProvider,
    smtp: LocalSmtpServer,
    topics: TopicReader,
) -> None:
    notifications.clock.set_local(23, 30)
    try:
        case_id, reference = str(uuid.uuid4()), events.new_reference()
        await kafka.publish(events.referral_overdue(case_id, reference, 2))
        # focal point (sms+email), sender's supervisor (email), service contact (sms+email);
        # the caseworker waits for case.created
        records = await topics.for_case(Topic.NOTIFICATIONS, case_id, 5)
        assert {(r.value["recipient_id"], r.value["channel"]) for r in records} == {
            ("fp-upe-piura", "sms"),
            ("fp-upe-piura", "email"),
            ("sup-ong-amanecer", "email"),
            ("ct-upe-piura-mesa", "sms"),
            ("ct-upe-piura-mesa", "email"),
        }
        (focal_text,) = texts_about(sms, reference, "+51911000001")
        assert focal_text["body"].startswith(
            f"Enlace: ESCALAMIENTO nivel 2. Derivacion {reference}"
        )
        (supervisor_mail,) = emails_about(smtp, reference, "supervision@amanecer.example.org")
        assert str(supervisor_mail["Subject"]).startswith("[ESCALAMIENTO nivel 2]")
        assert "asegúrese de que alguien de su institución" in supervisor_mail.get_content()
    finally:
        notifications.clock.set_local(12)


async def test_english_speaking_focal_point_is_told_in_english(
    notifications: Notifications, kafka: Kafka, sms: LocalSmsProvider, smtp: LocalSmtpServer
) -> None:
    case_id, reference = str(uuid.uuid4()), events.new_reference()
    await kafka.publish(
        events.followup_due(
            case_id, reference, agency_id="ong-puentes-cr", caseworker_id=None, risk=RiskLevel.HIGH
        ),
        source="/enlace/followup",
    )
    (text,) = await poll_until(
        lambda: _texts(sms, reference, "+50688000001"), lambda t: len(t) == 1, what="English SMS"
    )
    assert text["body"].startswith(f"Enlace: Follow-up due for case {reference}")
    (mail,) = await poll_until(
        lambda: _mails(smtp, reference, "focal@puentes.example.org"),
        lambda m: len(m) == 1,
        what="English email",
    )
    assert "What to do: check whether the child received the service" in mail.get_content()
    assert "(America/Costa_Rica)" in mail.get_content()
