"""A contact point edited through the referral service's admin API is used for the
next message, without a restart: notifications keeps a replica of referral's contact
directory (polled from its internal endpoint, never sent on a topic) and resolves a
directory recipient at send time."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from contracts.topics import Topic
from services.notifications.local_sms import LocalSmsProvider
from tests.helpers import TopicReader, auth, poll_until
from tests.infra import Infra
from tests.notifications import events
from tests.notifications.conftest import Kafka, Notifications, referral_namespace, texts_about

OPS = auth("enlace-ops")
# The desk of tests/notifications/directory.yaml that only these tests edit.
AGENCY, SERVICE, CONTACT = "ong-amanecer", "amanecer-escucha", "ct-amanecer-escucha"


async def _set_phone(referral: httpx.AsyncClient, phone: str) -> tuple[str, int]:
    """Change the desk's phone the way an operator does (PUT the whole organisation as
    GET returned it); returns the old number and the directory's new version."""
    before = await referral.get("/v1/admin/directory", headers=OPS)
    assert before.status_code == 200, before.text
    (org,) = [o for o in before.json()["organizations"] if o["id"] == AGENCY]
    (contact,) = [c for s in org["services"] if s["id"] == SERVICE for c in s["contacts"]]
    old, contact["phone"] = contact["phone"], phone
    saved = await referral.put(f"/v1/admin/directory/organizations/{AGENCY}", json=org, headers=OPS)
    assert saved.status_code == 200, saved.text
    after = await referral.get("/v1/admin/directory", headers=OPS)
    version: int = after.json()["version"]
    assert version > before.json()["version"]
    return old, version


async def _picked_up(notifications: Notifications, version: int) -> None:
    await poll_until(
        notifications.directory_version,
        lambda v: v is not None and v >= version,
        what=f"notifications to hold directory version {version}",
    )


def _desk_referral(case_id: str, reference: str, **overrides: Any) -> Any:
    return events.referral_sent(
        case_id,
        reference,
        from_agency_id="upe-piura",
        to_agency_id=AGENCY,
        service_id=SERVICE,
        **overrides,
    )


async def _only_sms_request(sms: LocalSmsProvider, reference: str) -> dict[str, str]:
    """The provider's log of every POST (failed ones too) holds exactly one for this
    reference: with the delivery row final after one attempt, no other can follow."""
    (request,) = [r for r in sms.requests if reference in r["Body"]]
    return request


async def test_an_edited_phone_number_gets_the_next_sms_and_the_old_one_nothing(
    notifications: Notifications,
    referral: httpx.AsyncClient,
    kafka: Kafka,
    sms: LocalSmsProvider,
    topics: TopicReader,
    infra: Infra,
    namespace: str,
) -> None:
    new_phone = f"+5191100{uuid.uuid4().int % 10_000:04d}"
    old_phone, version = await _set_phone(referral, new_phone)
    assert old_phone != new_phone
    await _picked_up(notifications, version)

    case_id, reference = str(uuid.uuid4()), events.new_reference()
    await kafka.publish(_desk_referral(case_id, reference))

    (record,) = await topics.for_case(Topic.NOTIFICATIONS, case_id, 1)
    assert (record.type, record.value["recipient_id"]) == ("notification.sent", CONTACT)
    assert (record.value["channel"], record.value["attempts"]) == ("sms", 1)
    (delivery,) = await notifications.deliveries(case_id)
    assert (delivery["channel"], delivery["attempts"]) == ("sms", 1)
    assert delivery["status"] in ("sent", "delivered")
    assert (await _only_sms_request(sms, reference))["To"] == new_phone
    assert len(texts_about(sms, reference, new_phone)) == 1
    assert texts_about(sms, reference, old_phone) == []

    # The edit reached notifications over referral's internal API, not on a topic: no
    # record of either service's topics carries the number.
    for ns in (namespace, referral_namespace(namespace)):
        reader = TopicReader(infra.kafka(), ns)
        for topic in Topic:
            for r in await reader.read(topic):
                assert new_phone not in repr(r.value) + repr(r.headers), (ns, topic)


async def test_a_message_planned_before_the_edit_and_sent_after_goes_to_the_new_number(
    notifications: Notifications,
    referral: httpx.AsyncClient,
    kafka: Kafka,
    sms: LocalSmsProvider,
    topics: TopicReader,
) -> None:
    """Recipients are kept as contact ids and resolved at send time: a message held by
    quiet hours goes out in the morning to the number the directory has then."""
    clock = notifications.clock
    night = clock.set_local(23, 30)
    try:
        case_id, reference = str(uuid.uuid4()), events.new_reference()
        await kafka.publish(_desk_referral(case_id, reference))
        await poll_until(
            lambda: notifications.deliveries(case_id),
            lambda ds: len(ds) == 1 and ds[0]["deferred_until"] is not None,
            what="the SMS held until the morning",
        )
        new_phone = f"+5191101{uuid.uuid4().int % 10_000:04d}"
        old_phone, version = await _set_phone(referral, new_phone)
        await _picked_up(notifications, version)

        morning = (
            (night + timedelta(days=1))
            .astimezone(ZoneInfo("America/Lima"))
            .replace(hour=7, minute=0, second=0, microsecond=0)
        )
        clock.set(morning + timedelta(minutes=1))
        (record,) = await topics.for_case(Topic.NOTIFICATIONS, case_id, 1)
        assert record.type == "notification.sent"
        (delivery,) = await notifications.deliveries(case_id)
        assert delivery["status"] in ("sent", "delivered")
        assert (await _only_sms_request(sms, reference))["To"] == new_phone
        assert texts_about(sms, reference, old_phone) == []
    finally:
        clock.set_local(12)
