"""SMTP refusing connections until it is started: the email is retried from the
database, survives a restart of the service, and arrives once. The restart happens
while referral is unreachable: the contact directory saved by the first run is what
the second one sends with. Runs in a topic namespace of its own so that its service
instances see only this test's events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.topics import Topic
from services.notifications.local_sms import LocalSmsProvider
from services.notifications.local_smtp import LocalSmtpServer
from tests.conftest import fresh_namespace
from tests.helpers import TopicReader, free_port, poll_until
from tests.infra import Infra
from tests.notifications import events
from tests.notifications.conftest import (
    SMS_AUTH_TOKEN,
    FlowingClock,
    Kafka,
    Notifications,
    emails_about,
    fast_settings,
    serving_notifications,
    texts_about,
)


@pytest.fixture
async def own_namespace(infra: Infra, namespace: str) -> AsyncIterator[str]:
    name = f"{namespace}-smtp-{uuid.uuid4().hex[:6]}"
    async with fresh_namespace(infra, name, partitions=1) as ns:
        yield ns


async def test_email_waits_for_smtp_and_survives_a_restart(
    infra: Infra,
    own_namespace: str,
    databases: Callable[[str], Any],
    kafka: Kafka,
    referral: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    smtp = LocalSmtpServer(port=free_port(), maildir=tmp_path / "mail")  # not started yet
    sms = LocalSmsProvider(SMS_AUTH_TOKEN, record_dir=tmp_path / "sms")
    dsn: str = await databases("notifications")
    async with sms.serving(port=free_port()) as sms_url:
        settings = fast_settings(
            infra,
            own_namespace,
            dsn,
            smtp_port=smtp.port,
            sms_base_url=sms_url,
            sms_status_callback_url="",
            retry_max_attempts=1000,
            retry_backoff_cap_seconds=0.2,
        )
        clock = FlowingClock()
        clock.set_local(12)
        probe = Notifications(None, clock, dsn, settings)  # type: ignore[arg-type]
        case_id, reference = str(uuid.uuid4()), events.new_reference()

        async with serving_notifications(
            settings, free_port(), clock=clock, intake_client=None, referral_client=referral
        ):
            await kafka.publish(events.referral_sent(case_id, reference), namespace=own_namespace)
            rows = await poll_until(
                lambda: probe.deliveries(case_id),
                lambda ds: (
                    len(ds) == 2
                    and ds[0]["attempts"] >= 2
                    and ds[0]["status"] == "pending"
                    and ds[1]["status"] == "sent"
                ),
                what="the email retried while SMTP refuses connections",
            )
            email_row = rows[0]
            assert (email_row["channel"], email_row["status"]) == ("email", "pending")
            assert email_row["error_code"] == "smtp_unavailable"
        # the service is down; the retry waits in the database
        (email_row,) = [d for d in await probe.deliveries(case_id) if d["channel"] == "email"]
        assert email_row["status"] == "pending"

        smtp.start()
        # Nothing listens there: the directory can only come from the saved snapshot.
        referral_down = httpx.AsyncClient(base_url=f"http://127.0.0.1:{free_port()}")
        try:
            async with serving_notifications(
                settings,
                free_port(),
                clock=clock,
                intake_client=None,
                referral_client=referral_down,
            ):
                mails = await poll_until(
                    lambda: _mails(smtp, reference),
                    lambda m: len(m) == 1,
                    what="the email after SMTP came up",
                )
                assert str(mails[0]["To"]) == "mesa@upe-piura.example.org"
                records = await TopicReader(infra.kafka(), own_namespace).for_case(
                    Topic.NOTIFICATIONS, case_id, 2
                )
                by_channel = {r.value["channel"]: r for r in records}
                assert {r.type for r in records} == {"notification.sent"}
                assert by_channel["email"].value["attempts"] >= 3
                assert by_channel["sms"].value["attempts"] == 1
            assert len(emails_about(smtp, reference)) == 1
            assert len(texts_about(sms, reference)) == 1
        finally:
            smtp.stop()
            await referral_down.aclose()


async def _mails(smtp: LocalSmtpServer, reference: str) -> list[Any]:
    return list(emails_about(smtp, reference))
