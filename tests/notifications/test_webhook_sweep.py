"""An endpoint of an agency with little traffic: its deliveries spend their retries
and nothing more is tried, yet once it has failed for longer than allowed it is
disabled, its focal point is told, and what it missed is held for it, so that
enabling it again sends everything, once."""

from __future__ import annotations

from typing import Any

import orjson

from tests.helpers import auth, poll_until
from tests.notifications import events
from tests.notifications.conftest import Kafka, Notifications
from tests.notifications.test_webhooks import (
    AGENCY,
    FOCAL_POINT,
    _notices,
    delete,
    disabled_days_later,
    endpoint_log,
    endpoint_view,
    receiving,
    register,
)


async def test_a_quiet_endpoint_failing_for_days_is_disabled_and_gets_what_it_missed(
    notifications: Notifications, kafka: Kafka, smtp: Any
) -> None:
    attempts = len(notifications.settings.webhook_retry_schedule_seconds) + 1
    async with receiving(500) as receiver:
        endpoint = await register(notifications, receiver.url)
        endpoint_id = endpoint["endpoint_id"]
        missed = await kafka.publish(events.referral_sent())
        (failed,) = await poll_until(
            lambda: endpoint_log(notifications, endpoint_id),
            lambda rows: [r["status"] for r in rows] == ["failed"],
            what="the delivery failed after its last retry",
        )
        assert failed["attempts"] == attempts == len(receiver.received)
        assert (await endpoint_view(notifications, endpoint_id))["enabled"]

        view = await disabled_days_later(notifications, endpoint_id)  # no new event
        assert view["disabled_reason"] == "failing"
        (notice,) = await poll_until(
            lambda: _notices(smtp, endpoint_id), what="the focal point's e-mail"
        )
        assert str(notice["To"]) == FOCAL_POINT
        (held,) = await endpoint_log(notifications, endpoint_id)
        assert held["status"] == "held"
        # Operations sees it too (the alert EnlacePartnerEndpointDisabled reads this).
        gauge = f'enlace_webhook_endpoints{{agency="{AGENCY}",state="disabled_failing"}} 1.0'
        await poll_until(
            lambda: _metrics(notifications), lambda text: gauge in text, what="the gauge"
        )

        receiver.status = 200
        enabled = await notifications.client.patch(
            f"/v1/webhook-endpoints/{endpoint_id}", json={"enabled": True}, headers=auth(AGENCY)
        )
        assert enabled.status_code == 200, enabled.text
        await poll_until(
            lambda: endpoint_log(notifications, endpoint_id),
            lambda rows: [r["status"] for r in rows] == ["sent"],
            what="what it missed sent",
        )
        delivered = [orjson.loads(r.body)["id"] for r in receiver.received[attempts:]]
        assert delivered == [missed.id]
        await delete(notifications, endpoint_id)


async def _metrics(notifications: Notifications) -> str:
    return (await notifications.client.get("/metrics")).text
