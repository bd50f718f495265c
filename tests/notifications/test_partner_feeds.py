"""Need-to-know on the partner feeds, through the real service, Kafka and PostgreSQL:
an agency's webhook endpoint and its own Kafka topic get the events that concern it
and never one about a referral between two other agencies or a case it did not
register. And the endpoint API: secrets rotated with an overlap, errors naming the
field, another agency's endpoint invisible, the URL rule outside the local profile."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from standardwebhooks.webhooks import Webhook

from contracts import events as ev
from contracts.registry import PARTNER_EVENT_TYPES
from contracts.topics import partner_topic
from services.kit.errors import InvalidField
from services.notifications.webhook_endpoints import UrlPolicy
from tests.factories import case_created
from tests.helpers import DEMO_KEYS, TopicReader, auth, poll_until
from tests.infra import Infra
from tests.notifications import events
from tests.notifications.conftest import Kafka, Notifications
from tests.notifications.test_webhooks import receiving, verifies

X = "red-reencuentro"  # has a webhook endpoint and a Kafka feed (deploy/kafka-access.yaml)
Y, Z = "ong-amanecer", "upe-piura"
W = "uavt-gt"  # the other agency with a Kafka feed


def registered_by(agency: str) -> ev.CaseCreatedV1:
    created = case_created(uuid.uuid4(), events.new_reference())
    return ev.CaseCreatedV1(**{**created.model_dump(), "registering_agency_id": agency})


async def outbox_rows_for(notifications: Notifications, topic: str) -> int:
    conn = await asyncpg.connect(notifications.dsn)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM outbox WHERE topic = $1", topic)
        return count
    finally:
        await conn.close()


async def test_an_agency_gets_what_concerns_it_and_nothing_between_others(
    notifications: Notifications, kafka: Kafka, infra: Infra, namespace: str
) -> None:
    async with receiving() as receiver:
        created = await notifications.client.post(
            "/v1/webhook-endpoints",
            json={"url": receiver.url, "event_types": ["case.created", "referral.sent"]},
            headers=auth(X),
        )
        assert created.status_code == 201, created.text
        endpoint = created.json()

        # Not X's business: a referral between Y and Z, a case Y registered.
        others = [
            await kafka.publish(events.referral_sent(from_agency_id=Y, to_agency_id=Z)),
            await kafka.publish(registered_by(Y)),
        ]
        # X's: a referral X received, one X sent, a case X registered.
        mine = [
            await kafka.publish(events.referral_sent(from_agency_id=Y, to_agency_id=X)),
            await kafka.publish(events.referral_sent(from_agency_id=X, to_agency_id=Z)),
            await kafka.publish(registered_by(X)),
        ]
        for event in others + mine:  # the service has handled all of them
            await notifications.consumed(event.id)

        # The endpoint: every row was written when its event was handled.
        log = await notifications.client.get(
            f"/v1/webhook-endpoints/{endpoint['endpoint_id']}/deliveries", headers=auth(X)
        )
        assert sorted(d["source_event_id"] for d in log.json()["deliveries"]) == sorted(
            e.id for e in mine
        )
        await poll_until(lambda: _count(receiver), lambda n: n >= len(mine), what="X's deliveries")
        received = [
            Webhook(endpoint["secret"]).verify(r.body, r.headers) for r in receiver.received
        ]
        assert sorted(r["id"] for r in received) == sorted(e.id for e in mine)

        # The topic: once the outbox holds nothing more for it, read it to its end.
        topic = partner_topic(X)
        await poll_until(
            lambda: outbox_rows_for(notifications, topic),
            lambda n: n == 0,
            what="X's feed relayed",
        )
        records = await TopicReader(infra.kafka(X), namespace).read(topic)
        on_topic = {r.headers["ce_id"] for r in records}
        assert {e.id for e in mine} <= on_topic
        assert not {e.id for e in others} & on_topic
        # The event as published: same attributes, same data, keyed by its case.
        record = next(r for r in records if r.headers["ce_id"] == mine[0].id)
        assert record.headers["ce_type"] == "referral.sent"
        assert record.headers["ce_source"] == mine[0].source
        assert record.key == mine[0].subject
        assert record.value == mine[0].data

        # Another agency's feed got none of X's events.
        other_feed = await TopicReader(infra.kafka(W), namespace).read(partner_topic(W))
        assert not {r.headers["ce_id"] for r in other_feed} & {e.id for e in mine}
        await notifications.client.delete(
            f"/v1/webhook-endpoints/{endpoint['endpoint_id']}", headers=auth(X)
        )


async def test_a_referral_between_two_agencies_with_feeds_reaches_both_feeds(
    notifications: Notifications, kafka: Kafka, infra: Infra, namespace: str
) -> None:
    """The same event, under its own ce_id, on each concerned agency's topic."""
    referral = await kafka.publish(events.referral_sent(from_agency_id=X, to_agency_id=W))
    await notifications.consumed(referral.id)
    for agency in (X, W):
        topic = partner_topic(agency)
        await poll_until(
            lambda topic=topic: outbox_rows_for(notifications, topic),  # type: ignore[misc]
            lambda n: n == 0,
            what=f"{agency}'s feed relayed",
        )
        records = await TopicReader(infra.kafka(agency), namespace).read(topic)
        assert [r.headers["ce_id"] for r in records].count(referral.id) == 1, agency


async def test_a_rotated_secret_signs_beside_the_old_one_during_the_overlap(
    notifications: Notifications, kafka: Kafka
) -> None:
    async with receiving() as receiver:
        created = await notifications.client.post(
            "/v1/webhook-endpoints",
            json={"url": receiver.url, "event_types": ["referral.sent"]},
            headers=auth(Z),
        )
        endpoint_id, old = created.json()["endpoint_id"], created.json()["secret"]
        rotated = await notifications.client.post(
            f"/v1/webhook-endpoints/{endpoint_id}/secret/rotate",
            json={"overlap_hours": 1},
            headers=auth(Z),
        )
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["secret"]
        assert new != old
        assert rotated.json()["rotation_overlap"]
        await kafka.publish(events.referral_sent())
        await poll_until(lambda: _count(receiver), lambda n: n == 1, what="a delivery")
        during = receiver.received[0]
        assert len(during.headers["webhook-signature"].split(" ")) == 2
        assert verifies(old, during)
        assert verifies(new, during)

        again = await notifications.client.post(
            f"/v1/webhook-endpoints/{endpoint_id}/secret/rotate",
            json={"overlap_hours": 0},
            headers=auth(Z),
        )
        newest = again.json()["secret"]
        await kafka.publish(events.referral_sent())
        await poll_until(lambda: _count(receiver), lambda n: n == 2, what="a second delivery")
        after = receiver.received[1]
        assert verifies(newest, after)
        assert not verifies(new, after)
        assert not verifies(old, after)
        await notifications.client.delete(f"/v1/webhook-endpoints/{endpoint_id}", headers=auth(Z))


async def test_the_endpoint_api_names_the_field_and_hides_other_agencies_endpoints(
    notifications: Notifications,
) -> None:
    client = notifications.client
    bad_type = await client.post(
        "/v1/webhook-endpoints",
        json={"url": "http://127.0.0.1:9/x", "event_types": ["referral.sent", "case.nope"]},
        headers=auth(Z),
    )
    assert bad_type.status_code == 422
    (error,) = bad_type.json()["errors"]
    assert error["field"] == "event_types"
    assert "case.nope" in error["message"]
    for url in ("ftp://example.org/x", "not a url", "http://user:pw@127.0.0.1/x"):
        bad_url = await client.post(
            "/v1/webhook-endpoints",
            json={"url": url, "event_types": ["referral.sent"]},
            headers=auth(Z),
        )
        assert bad_url.status_code == 422, url
        assert [e["field"] for e in bad_url.json()["errors"]] == ["url"]
    unknown_field = await client.post(
        "/v1/webhook-endpoints",
        json={"url": "http://127.0.0.1:9/x", "event_types": ["referral.sent"], "secret": "x"},
        headers=auth(Z),
    )
    assert unknown_field.status_code == 422
    assert [e["field"] for e in unknown_field.json()["errors"]] == ["secret"]

    mine = await client.post(
        "/v1/webhook-endpoints",
        json={"url": "http://127.0.0.1:9/x", "event_types": ["referral.sent"]},
        headers=auth(Z),
    )
    endpoint_id = mine.json()["endpoint_id"]
    for method, path in (
        ("GET", f"/v1/webhook-endpoints/{endpoint_id}"),
        ("PATCH", f"/v1/webhook-endpoints/{endpoint_id}"),
        ("DELETE", f"/v1/webhook-endpoints/{endpoint_id}"),
        ("GET", f"/v1/webhook-endpoints/{endpoint_id}/deliveries"),
        ("POST", f"/v1/webhook-endpoints/{endpoint_id}/secret/rotate"),
    ):
        answer = await client.request(
            method, path, headers=auth(Y), json={} if method != "GET" else None
        )
        assert answer.status_code == 404, (method, path, answer.text)
    assert endpoint_id not in {
        e["endpoint_id"]
        for e in (await client.get("/v1/webhook-endpoints", headers=auth(Y))).json()["endpoints"]
    }
    service = await client.get(
        "/v1/webhook-endpoints", headers={"Authorization": f"Bearer {DEMO_KEYS['svc-referral']}"}
    )
    assert service.status_code == 403
    await client.delete(f"/v1/webhook-endpoints/{endpoint_id}", headers=auth(Z))


async def test_the_openapi_document_describes_what_a_partner_endpoint_receives(
    notifications: Notifications,
) -> None:
    document = (await notifications.client.get("/openapi.json")).json()
    hook = document["webhooks"]["partner-event"]["post"]
    assert [p["name"] for p in hook["parameters"]] == [
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    ]
    (media,) = hook["requestBody"]["content"]
    assert media == "application/cloudevents+json"
    body = document["components"]["schemas"]["PartnerEvent"]
    assert body["properties"]["type"]["enum"] == list(PARTNER_EVENT_TYPES)
    assert {"410", "429", "503"} <= set(hook["responses"])


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://partner.example.org/hooks", "must be an https URL"),
        ("https://127.0.0.1/hooks", "must resolve to a public address"),
        ("https://10.1.2.3/hooks", "must resolve to a public address"),
        ("https://[::ffff:192.168.0.1]/hooks", "must resolve to a public address"),
        ("https://169.254.169.254/latest/meta-data", "must resolve to a public address"),
        ("https://localhost/hooks", "must resolve to a public address"),
        ("https://partner.invalid/hooks", "must resolve to public addresses only"),
    ],
)
async def test_outside_the_local_profile_only_https_to_public_addresses(
    url: str, message: str
) -> None:
    with pytest.raises(InvalidField) as refused:
        await UrlPolicy(public_https_only=True).check(url)
    assert refused.value.field == "url"
    assert refused.value.message == message


async def _count(receiver: Any) -> int:
    return len(receiver.received)
