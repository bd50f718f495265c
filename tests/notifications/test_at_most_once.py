"""At most one message per (event, recipient, channel), whatever happened to the
attempt: a worker killed after the provider accepted a message, but before its
outcome was recorded, leaves the delivery `sending` with its lease running. When the
lease runs out the delivery is claimed again, and the provider is asked (by the
delivery's client reference, or the e-mail's Message-ID) before anything is sent:
found, it is recorded as sent with the provider's id; not found, it is sent."""

from __future__ import annotations

import functools
import uuid
from datetime import timedelta
from typing import Any

import asyncpg

from services.notifications.local_sms import LocalSmsProvider
from services.notifications.local_smtp import LocalSmtpServer
from tests.helpers import poll_until
from tests.notifications import events
from tests.notifications.conftest import Kafka, Notifications

DONE = ("sent", "delivered")


async def _sent_once(
    notifications: Notifications, kafka: Kafka
) -> tuple[str, dict[str, dict[str, Any]]]:
    """A new referral for the UPE Piura desk, once its SMS and e-mail are sent: the
    reference, and the delivery rows by channel."""
    case_id, reference = str(uuid.uuid4()), events.new_reference()
    await kafka.publish(events.referral_sent(case_id, reference))
    rows = await poll_until(
        lambda: notifications.deliveries(case_id),
        lambda rows: len(rows) == 2 and all(r["status"] in DONE for r in rows),
        what="the SMS and the e-mail sent",
    )
    return reference, {r["channel"]: r for r in rows}


async def _as_if_the_worker_died(
    notifications: Notifications, notification_id: uuid.UUID, *, new_id: uuid.UUID | None = None
) -> None:
    """The row as a worker killed mid-attempt leaves it: `sending`, no outcome, its
    lease run out. With `new_id`, an attempt that never reached the provider."""
    conn = await asyncpg.connect(notifications.dsn)
    try:
        await conn.execute(
            """UPDATE deliveries SET status = 'sending', provider_message_id = NULL,
                      provider = NULL, sent_at = NULL, claim_token = $2, attempts = 1,
                      lease_until = $3, notification_id = COALESCE($4, notification_id)
               WHERE notification_id = $1""",
            notification_id,
            uuid.uuid4(),
            notifications.clock.now() - timedelta(seconds=1),
            new_id,
        )
    finally:
        await conn.close()


async def _row(notifications: Notifications, notification_id: uuid.UUID) -> dict[str, Any]:
    conn = await asyncpg.connect(notifications.dsn)
    try:
        row = await conn.fetchrow(
            "SELECT * FROM deliveries WHERE notification_id = $1", notification_id
        )
        assert row is not None
        return dict(row)
    finally:
        await conn.close()


def _mails_with_id(smtp: LocalSmtpServer, notification_id: uuid.UUID) -> int:
    return sum(1 for m in smtp.messages() if notification_id.hex in str(m["Message-ID"]))


async def test_an_accepted_attempt_whose_outcome_was_lost_is_not_sent_again(
    notifications: Notifications,
    kafka: Kafka,
    smtp: LocalSmtpServer,
    sms: LocalSmsProvider,
) -> None:
    reference, first = await _sent_once(notifications, kafka)
    texts_before = [m for m in sms.messages if reference in m["body"]]
    assert len(texts_before) == 1
    for row in first.values():
        await _as_if_the_worker_died(notifications, row["notification_id"])

    for channel, row in first.items():
        again = await poll_until(
            functools.partial(_row, notifications, row["notification_id"]),
            lambda r: r["status"] in DONE,
            what=f"the {channel} delivery reconciled",
        )
        # Recorded from the provider's answer: the message the first attempt sent.
        assert again["provider_message_id"] == row["provider_message_id"]
        assert again["attempts"] == 2
    # Both rows are settled: nothing is in flight that could still send a copy.
    assert [m for m in sms.messages if reference in m["body"]] == texts_before
    assert _mails_with_id(smtp, first["email"]["notification_id"]) == 1


async def test_an_attempt_that_never_reached_the_provider_is_sent(
    notifications: Notifications,
    kafka: Kafka,
    smtp: LocalSmtpServer,
    sms: LocalSmsProvider,
) -> None:
    reference, first = await _sent_once(notifications, kafka)
    unsent = {channel: uuid.uuid4() for channel in first}  # references no provider knows
    for channel, row in first.items():
        await _as_if_the_worker_died(notifications, row["notification_id"], new_id=unsent[channel])

    for channel, notification_id in unsent.items():
        again = await poll_until(
            functools.partial(_row, notifications, notification_id),
            lambda r: r["status"] in DONE,
            what=f"the {channel} delivery sent",
        )
        assert again["provider_message_id"] != first[channel]["provider_message_id"]
    texts = [m for m in sms.messages if reference in m["body"]]
    assert [m["client_reference"] for m in texts] == [
        first["sms"]["notification_id"].hex,
        unsent["sms"].hex,
    ]
    assert _mails_with_id(smtp, unsent["email"]) == 1
