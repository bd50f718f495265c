"""Partner webhooks through the real service: events published on the real topics,
delivered to a real HTTP receiver, verified with the Standard Webhooks reference
implementation (`standardwebhooks`), never with our own signing code."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import asyncpg
import orjson
import pytest
import standardwebhooks.webhooks
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from contracts.registry import producer_source
from tests.helpers import auth, free_port, poll_until
from tests.notifications import events
from tests.notifications.conftest import Kafka, Notifications, emails_about, texts_about
from tests.notifications.webhook_receiver import Received, WebhookReceiver

AGENCY = "upe-piura"  # receives the referrals of tests.notifications.events
FOCAL_POINT = "enlace@upe-piura.example.org"


@contextlib.asynccontextmanager
async def receiving(status: int = 200, *, start: bool = True) -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver(free_port(), status)
    if start:
        await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


async def register(
    notifications: Notifications, url: str, event_types: list[str] | None = None
) -> dict[str, Any]:
    answer = await notifications.client.post(
        "/v1/webhook-endpoints",
        json={"url": url, "event_types": event_types or ["referral.sent"]},
        headers=auth(AGENCY),
    )
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


async def endpoint_log(notifications: Notifications, endpoint_id: str) -> list[dict[str, Any]]:
    answer = await notifications.client.get(
        f"/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=auth(AGENCY)
    )
    assert answer.status_code == 200, answer.text
    deliveries: list[dict[str, Any]] = answer.json()["deliveries"]
    return deliveries


async def endpoint_view(notifications: Notifications, endpoint_id: str) -> dict[str, Any]:
    answer = await notifications.client.get(
        f"/v1/webhook-endpoints/{endpoint_id}", headers=auth(AGENCY)
    )
    assert answer.status_code == 200, answer.text
    view: dict[str, Any] = answer.json()
    return view


async def delete(notifications: Notifications, endpoint_id: str) -> None:
    answer = await notifications.client.delete(
        f"/v1/webhook-endpoints/{endpoint_id}", headers=auth(AGENCY)
    )
    assert answer.status_code == 204, answer.text


async def disabled_days_later(notifications: Notifications, endpoint_id: str) -> dict[str, Any]:
    """Six days on (past the 5 allowed) by the service's clock, the endpoint's view
    once it is disabled; the clock back at midday afterwards."""
    notifications.clock.offset += timedelta(days=6)
    try:
        return await poll_until(
            lambda: endpoint_view(notifications, endpoint_id),
            lambda v: not v["enabled"],
            what="the endpoint disabled after failing for days",
        )
    finally:
        notifications.clock.set_local(12)


def verifies(secret: str, delivery: Received) -> bool:
    try:
        Webhook(secret).verify(delivery.body, delivery.headers)
    except WebhookVerificationError:
        return False
    return True


async def test_every_delivery_verifies_and_a_tampered_or_unsigned_one_does_not(
    notifications: Notifications, kafka: Kafka
) -> None:
    async with receiving() as receiver:
        endpoint = await register(notifications, receiver.url)
        secret = endpoint.pop("secret")
        assert secret.startswith("whsec_")
        published = [await kafka.publish(events.referral_sent()) for _ in range(3)]
        await poll_until(lambda: _count(receiver), lambda n: n >= 3, what="three deliveries")

        by_event = {orjson.loads(r.body)["id"]: r for r in receiver.received}
        assert sorted(by_event) == sorted(e.id for e in published)
        for event in published:
            delivery = by_event[event.id]
            body = Webhook(secret).verify(delivery.body, delivery.headers)
            # The event as published, in CloudEvents structured JSON; pseudonymous.
            assert body["type"] == "referral.sent"
            assert body["source"] == producer_source("referral.sent")
            assert body["subject"] == event.subject
            assert body["data"]["reference"] == event.data["reference"]
            assert delivery.headers["content-type"] == "application/cloudevents+json"
            assert delivery.webhook_id.startswith("msg_")

            tampered = delivery.body.replace(b"referral.sent", b"referral.closed")
            assert not verifies(secret, Received(delivery.headers, tampered))
            unsigned = {k: v for k, v in delivery.headers.items() if k != "webhook-signature"}
            assert not verifies(secret, Received(unsigned, delivery.body))
            assert not verifies("whsec_" + "A" * 43 + "=", delivery)  # another secret
        assert len(set(receiver.ids())) == 3

        log = await poll_until(
            lambda: endpoint_log(notifications, endpoint["endpoint_id"]),
            lambda rows: [r["status"] for r in rows] == ["sent"] * 3,
            what="three deliveries logged as sent",
        )
        assert {r["response_status"] for r in log} == {200}
        assert "secret" not in await endpoint_view(notifications, endpoint["endpoint_id"])

        # Redelivered on request: the same webhook-id, so the receiver can dedupe.
        first = log[0]["notification_id"]
        again = await notifications.client.post(
            f"/v1/webhook-endpoints/{endpoint['endpoint_id']}/deliveries/{first}/redeliver",
            headers=auth(AGENCY),
        )
        assert again.status_code == 202, again.text
        await poll_until(lambda: _count(receiver), lambda n: n == 4, what="the redelivery")
        assert receiver.ids().count(f"msg_{first.replace('-', '')}") == 2
        await delete(notifications, endpoint["endpoint_id"])


async def test_a_delivery_replayed_late_fails_verification(
    notifications: Notifications, kafka: Kafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A captured delivery sent again ten minutes later (the reference receiver's
    clock moved on) is refused: the signature covers its timestamp."""
    async with receiving() as receiver:
        endpoint = await register(notifications, receiver.url)
        await kafka.publish(events.referral_sent())
        await poll_until(lambda: _count(receiver), lambda n: n >= 1, what="a delivery")
        captured = receiver.received[0]
        assert verifies(endpoint["secret"], captured)

        class Later(datetime):
            @classmethod
            def now(cls, tz: tzinfo | None = None) -> Later:
                return cls.fromtimestamp(
                    (datetime.now(UTC) + timedelta(minutes=10)).timestamp(), tz
                )

        monkeypatch.setattr(standardwebhooks.webhooks, "datetime", Later)
        with pytest.raises(WebhookVerificationError, match="too old"):
            Webhook(endpoint["secret"]).verify(captured.body, captured.headers)
        await delete(notifications, endpoint["endpoint_id"])


async def test_a_receiver_down_then_up_gets_each_event_once(
    notifications: Notifications, kafka: Kafka
) -> None:
    async with receiving(start=False) as receiver:
        endpoint = await register(notifications, receiver.url)
        endpoint_id = endpoint["endpoint_id"]
        published = [await kafka.publish(events.referral_sent()) for _ in range(3)]
        await poll_until(
            lambda: endpoint_log(notifications, endpoint_id),
            lambda rows: len(rows) == 3 and all(r["attempts"] >= 2 for r in rows),
            what="every delivery retried while the receiver is down",
        )
        log = await endpoint_log(notifications, endpoint_id)
        assert {r["error_code"] for r in log} == {"connect_failed"}
        assert (await endpoint_view(notifications, endpoint_id))["failing_since"] is not None

        await receiver.start()
        log = await poll_until(
            lambda: endpoint_log(notifications, endpoint_id),
            lambda rows: [r["status"] for r in rows] == ["sent"] * 3,
            timeout=30,
            what="every delivery sent once the receiver is up",
        )
        # Final: nothing more will be tried. Each event arrived exactly once.
        assert sorted(orjson.loads(r.body)["id"] for r in receiver.received) == sorted(
            e.id for e in published
        )
        assert len(set(receiver.ids())) == len(receiver.ids()) == 3
        view = await endpoint_view(notifications, endpoint_id)
        assert view["enabled"]
        assert view["failing_since"] is None
        await delete(notifications, endpoint_id)


async def test_410_disables_the_endpoint_and_its_focal_point_is_told(
    notifications: Notifications, kafka: Kafka, smtp: Any
) -> None:
    async with receiving(410) as receiver:
        endpoint = await register(notifications, receiver.url)
        endpoint_id = endpoint["endpoint_id"]
        await kafka.publish(events.referral_sent())
        view = await poll_until(
            lambda: endpoint_view(notifications, endpoint_id),
            lambda v: not v["enabled"],
            what="the endpoint disabled",
        )
        assert view["disabled_reason"] == "gone"
        (notice,) = await poll_until(
            lambda: _notices(smtp, endpoint_id), what="the focal point's e-mail"
        )
        assert str(notice["To"]) == FOCAL_POINT
        assert "410" in notice.get_content()

        # Disabled: the next event concerning the agency gets no delivery at all.
        later = await kafka.publish(events.referral_sent())
        await notifications.consumed(later.id)
        assert len(await endpoint_log(notifications, endpoint_id)) == 1
        assert len(receiver.received) == 1

        enabled = await notifications.client.patch(
            f"/v1/webhook-endpoints/{endpoint_id}", json={"enabled": True}, headers=auth(AGENCY)
        )
        assert enabled.status_code == 200, enabled.text
        assert enabled.json()["enabled"]
        assert enabled.json()["disabled_reason"] is None
        await delete(notifications, endpoint_id)


async def test_an_endpoint_failing_for_days_is_disabled_its_focal_point_told_nothing_lost(
    notifications: Notifications, kafka: Kafka, smtp: Any
) -> None:
    async with receiving(500) as receiver:
        endpoint = await register(notifications, receiver.url)
        endpoint_id = endpoint["endpoint_id"]
        first = await kafka.publish(events.referral_sent())
        await poll_until(
            lambda: endpoint_view(notifications, endpoint_id),
            lambda v: v["failing_since"] is not None,
            what="the endpoint failing",
        )
        # Retried at least once before the days pass (else the sweep, every 0.2 s
        # here, may disable it before the worker tries again: both are correct).
        await poll_until(lambda: _count(receiver), lambda n: n >= 2, what="a retry")
        assert (await endpoint_view(notifications, endpoint_id))["enabled"]
        view = await disabled_days_later(notifications, endpoint_id)
        assert view["disabled_reason"] == "failing"
        await poll_until(lambda: _notices(smtp, endpoint_id), what="the focal point's e-mail")
        (held,) = await endpoint_log(notifications, endpoint_id)
        assert held["status"] == "held"
        assert held["response_status"] == 500
        attempts = len(receiver.received)
        assert attempts >= 2

        # While it is disabled, what concerns the agency is kept for it, not sent.
        later = await kafka.publish(events.referral_sent())
        await notifications.consumed(later.id)
        log = await endpoint_log(notifications, endpoint_id)
        assert {(r["source_event_id"], r["status"]) for r in log} == {
            (first.id, "held"),
            (later.id, "held"),
        }
        assert len(receiver.received) == attempts

        # Its system fixed, the agency enables it: both arrive, once each.
        receiver.status = 200
        enabled = await notifications.client.patch(
            f"/v1/webhook-endpoints/{endpoint_id}", json={"enabled": True}, headers=auth(AGENCY)
        )
        assert enabled.status_code == 200, enabled.text
        await poll_until(
            lambda: endpoint_log(notifications, endpoint_id),
            lambda rows: [r["status"] for r in rows] == ["sent", "sent"],
            what="the held deliveries sent",
        )
        delivered = [orjson.loads(r.body)["id"] for r in receiver.received[attempts:]]
        assert sorted(delivered) == sorted([first.id, later.id])
        await delete(notifications, endpoint_id)


async def test_429_and_503_pause_the_endpoint_for_what_it_asked(
    notifications: Notifications, kafka: Kafka
) -> None:
    async with receiving(503) as receiver:
        receiver.retry_after = "3600"
        endpoint = await register(notifications, receiver.url)
        endpoint_id = endpoint["endpoint_id"]
        await kafka.publish(events.referral_sent())
        view = await poll_until(
            lambda: endpoint_view(notifications, endpoint_id),
            lambda v: v["paused_until"] is not None,
            what="the endpoint paused",
        )
        (row,) = await endpoint_log(notifications, endpoint_id)
        assert (row["status"], row["error_code"]) == ("pending", "http_503")
        assert row["next_attempt_at"] >= view["paused_until"]
        # An event arriving during the pause waits for its end too.
        later = await kafka.publish(events.referral_sent())
        await notifications.consumed(later.id)
        log = await endpoint_log(notifications, endpoint_id)
        assert len(log) == 2
        assert all(r["next_attempt_at"] >= view["paused_until"] for r in log)
        assert len(receiver.received) == 1  # not hammered while it asked for an hour

        # Deleted: what was waiting is cancelled, and stays in the log.
        await delete(notifications, endpoint_id)
        for entry in log:
            (row,) = await delivery_rows(notifications, entry["notification_id"])
            assert (row["status"], row["error_code"]) == ("cancelled", "endpoint_deleted")


async def test_a_hanging_partner_endpoint_delays_neither_messages_nor_other_partners(
    notifications: Notifications, kafka: Kafka, sms: Any, smtp: Any
) -> None:
    """Partner webhooks have sending slots of their own, and one endpoint holds at
    most a few of them: with an endpoint that does not answer, a referral's SMS and
    e-mail still go out, and so do the other agency's webhooks."""
    settings = notifications.settings
    per_endpoint = settings.webhook_max_in_flight_per_endpoint
    assert per_endpoint < settings.webhook_max_in_flight
    async with receiving() as hanging, receiving() as healthy:
        hanging.holding = True
        stuck = await register(notifications, hanging.url)
        other = await notifications.client.post(  # the referring agency's own system
            "/v1/webhook-endpoints",
            json={"url": healthy.url, "event_types": ["referral.sent"]},
            headers=auth("ong-amanecer"),
        )
        assert other.status_code == 201, other.text
        published = [await kafka.publish(events.referral_sent()) for _ in range(per_endpoint + 3)]
        await poll_until(lambda: _count(hanging), lambda n: n >= per_endpoint, what="held")
        await poll_until(
            lambda: _count(healthy),
            lambda n: n >= len(published),
            what="the other agency's webhooks while one endpoint hangs",
        )
        sent = events.referral_sent()
        await kafka.publish(sent)
        await poll_until(
            lambda: _messages_about(sms, smtp, sent.reference),
            lambda n: n >= 2,
            what="the referral's SMS and e-mail while the endpoint hangs",
        )
        log = await endpoint_log(notifications, stuck["endpoint_id"])
        assert sum(r["status"] == "sending" for r in log) == per_endpoint
        assert len(hanging.received) == per_endpoint  # never more at once
        hanging.release()
        await poll_until(
            lambda: endpoint_log(notifications, stuck["endpoint_id"]),
            lambda rows: [r["status"] for r in rows] == ["sent"] * (len(published) + 1),
            what="every webhook sent once the endpoint answers",
        )
        await delete(notifications, stuck["endpoint_id"])
        deleted = await notifications.client.delete(
            f"/v1/webhook-endpoints/{other.json()['endpoint_id']}", headers=auth("ong-amanecer")
        )
        assert deleted.status_code == 204


async def _messages_about(sms: Any, smtp: Any, reference: str) -> int:
    return len(texts_about(sms, reference)) + len(emails_about(smtp, reference))


async def _count(receiver: WebhookReceiver) -> int:
    return len(receiver.received)


async def _notices(smtp: Any, endpoint_id: str) -> list[Any]:
    return [m for m in smtp.messages() if endpoint_id in m.get_content()]


async def delivery_rows(notifications: Notifications, delivery: str) -> list[Any]:
    conn = await asyncpg.connect(notifications.dsn)
    try:
        return list(
            await conn.fetch(
                "SELECT status, error_code FROM deliveries WHERE notification_id = $1::uuid",
                delivery,
            )
        )
    finally:
        await conn.close()
