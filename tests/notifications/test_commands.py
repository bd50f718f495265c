"""Notifications' use cases against a real PostgreSQL database, without HTTP or
Kafka: what planning writes (delivery rows, parked events), what a case and a status
report change, what the delivery log shows, and the errors they raise."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import pytest

from contracts.registry import producer_source, to_cloud_event
from services.kit.db import create_pool, migrate
from services.kit.errors import NotFound
from services.kit.event_errors import TransientError
from services.notifications import commands
from services.notifications.app import MIGRATIONS
from services.notifications.domain.recipients import CaseInfo, ContactBook
from services.notifications.partner_feeds import Published
from tests.factories import case_created
from tests.notifications import events
from tests.notifications.conftest import DIRECTORY, book_of

SOURCE = "/enlace/notifications"
BOOK = book_of(DIRECTORY)
NOW = datetime(2026, 3, 11, 17, 0, tzinfo=UTC)


async def loaded() -> ContactBook:
    return BOOK


async def never_loaded() -> ContactBook:
    raise TransientError("contact directory not loaded yet")


@pytest.fixture(scope="module")
async def pool(databases: Callable[[str], Any]) -> AsyncIterator[asyncpg.Pool]:
    created = await create_pool(await databases("notifications"), min_size=1, max_size=4)
    await migrate(created, MIGRATIONS, "notifications")
    yield created
    await created.close()


NO_FEEDS: frozenset[str] = frozenset()


def published_of(data: Any) -> Published:
    event = to_cloud_event(data, source=producer_source(data.event_type))
    return Published(event.id, event.source, event.time, event.traceparent, data)


def plan_of(data: Any) -> commands.PlanDeliveries:
    return commands.PlanDeliveries(published_of(data))


async def plan(
    conn: asyncpg.Connection,
    command: commands.PlanDeliveries,
    contacts: Callable[[], Awaitable[ContactBook]] = loaded,
) -> commands.Planned:
    return await commands.plan_deliveries(conn, command, contacts=contacts, feeds=NO_FEEDS, now=NOW)


async def rows(pool: asyncpg.Pool, case_id: str) -> list[tuple[str, str, str, str]]:
    found = await pool.fetch(
        """SELECT recipient_id, channel, status, owner_agency_id FROM deliveries
           WHERE case_id = $1::uuid ORDER BY recipient_id, channel""",
        case_id,
    )
    return [tuple(r.values()) for r in found]  # type: ignore[misc]


async def test_a_new_referral_plans_one_row_per_contact_and_channel_once(
    pool: asyncpg.Pool,
) -> None:
    case_id = str(uuid.uuid4())
    command = plan_of(events.referral_sent(case_id, events.new_reference()))
    async with pool.acquire() as conn, conn.transaction():
        planned = await commands.plan_deliveries(
            conn, command, contacts=loaded, feeds=NO_FEEDS, now=NOW
        )
    assert planned == commands.Planned(deliveries=2, waiting_for_case=False)
    expected = [
        ("ct-upe-piura-mesa", "email", "pending", "ong-amanecer"),
        ("ct-upe-piura-mesa", "sms", "pending", "ong-amanecer"),
    ]
    assert await rows(pool, case_id) == expected

    async with pool.acquire() as conn, conn.transaction():  # the same event again
        again = await commands.plan_deliveries(
            conn, command, contacts=loaded, feeds=NO_FEEDS, now=NOW
        )
    assert again.deliveries == 0
    assert await rows(pool, case_id) == expected


async def test_nothing_is_planned_on_a_contact_book_never_loaded(pool: asyncpg.Pool) -> None:
    case_id = str(uuid.uuid4())
    command = plan_of(events.referral_sent(case_id, events.new_reference()))
    async with pool.acquire() as conn:
        with pytest.raises(TransientError):
            await commands.plan_deliveries(
                conn, command, contacts=never_loaded, feeds=NO_FEEDS, now=NOW
            )
        assert not await conn.fetchval(
            "SELECT count(*) FROM source_events WHERE event_id = $1", command.event_id
        )
    assert await rows(pool, case_id) == []


async def test_a_decision_waits_for_its_case_then_tells_the_caseworker(
    pool: asyncpg.Pool,
) -> None:
    case_id, reference = str(uuid.uuid4()), events.new_reference()
    command = plan_of(events.referral_rejected(case_id, reference))
    async with pool.acquire() as conn, conn.transaction():
        parked = await commands.plan_deliveries(
            conn, command, contacts=loaded, feeds=NO_FEEDS, now=NOW
        )
    assert parked == commands.Planned(deliveries=0, waiting_for_case=True)
    assert await rows(pool, case_id) == []

    case = CaseInfo(case_id, reference, "ong-amanecer", "cw-rosa")
    created = published_of(case_created(case_id, reference))
    async with pool.acquire() as conn, conn.transaction():
        planned = await commands.record_case(
            conn, commands.RecordCase(case, created), contacts=loaded, feeds=NO_FEEDS, now=NOW
        )
    assert planned == [commands.Planned(deliveries=2, waiting_for_case=False)]
    assert await rows(pool, case_id) == [
        ("ong-amanecer.cw-rosa", "email", "pending", "ong-amanecer"),
        ("ong-amanecer.cw-rosa", "sms", "pending", "ong-amanecer"),
    ]
    async with pool.acquire() as conn, conn.transaction():  # nothing waits any more
        assert (
            await commands.record_case(
                conn,
                commands.RecordCase(case, created),
                contacts=never_loaded,
                feeds=NO_FEEDS,
                now=NOW,
            )
            == []
        )


async def test_the_delivery_log_is_the_owning_agencys_only(pool: asyncpg.Pool) -> None:
    case_id = str(uuid.uuid4())
    async with pool.acquire() as conn, conn.transaction():
        await commands.plan_deliveries(
            conn,
            plan_of(events.referral_sent(case_id, events.new_reference())),
            contacts=loaded,
            feeds=NO_FEEDS,
            now=NOW,
        )
    async with pool.acquire() as conn:
        log = await commands.read_delivery_log(
            conn, commands.ReadDeliveryLog(uuid.UUID(case_id), "ong-amanecer")
        )
        assert [(e["recipient_id"], e["channel"], e["status"]) for e in log] == [
            ("ct-upe-piura-mesa", "email", "pending"),
            ("ct-upe-piura-mesa", "sms", "pending"),
        ]
        assert all(set(e) == set(commands.LOG_FIELDS) for e in log)
        for agency, case in (("upe-piura", case_id), ("ong-amanecer", str(uuid.uuid4()))):
            with pytest.raises(NotFound) as refused:
                await commands.read_delivery_log(
                    conn, commands.ReadDeliveryLog(uuid.UUID(case), agency)
                )
            assert refused.value.detail == "No such case."


async def _sent_sms(pool: asyncpg.Pool) -> tuple[str, str]:
    """A referral.sent planned, and its SMS sent: (case id, provider message id)."""
    case_id = str(uuid.uuid4())
    async with pool.acquire() as conn, conn.transaction():
        await commands.plan_deliveries(
            conn,
            plan_of(events.referral_sent(case_id, events.new_reference())),
            contacts=loaded,
            feeds=NO_FEEDS,
            now=NOW,
        )
    sid = f"SM{uuid.uuid4().hex}"
    await pool.execute(
        """UPDATE deliveries SET status = 'sent', provider_message_id = $2, attempts = 1
           WHERE case_id = $1::uuid AND channel = 'sms'""",
        case_id,
        sid,
    )
    return case_id, sid


async def test_an_undelivered_report_fails_the_sms_and_says_so(pool: asyncpg.Pool) -> None:
    case_id, sid = await _sent_sms(pool)

    async def report(status: str, code: str | None = None) -> None:
        async with pool.acquire() as conn:
            await commands.apply_sms_status_reports(
                conn, [commands.SmsStatusReport(sid, status, code)], now=NOW, source=SOURCE
            )

    async def failed_events() -> list[dict[str, Any]]:
        found = await pool.fetch(
            "SELECT data FROM outbox WHERE event_type = 'notification.failed' AND subject = $1",
            case_id,
        )
        return [orjson.loads(r["data"]) for r in found]

    await report("delivered")
    assert ("ct-upe-piura-mesa", "sms", "delivered", "ong-amanecer") in await rows(pool, case_id)
    assert await failed_events() == []

    await report("undelivered", "twilio_30003")
    assert ("ct-upe-piura-mesa", "sms", "undelivered", "ong-amanecer") in await rows(pool, case_id)
    (failed,) = await failed_events()
    assert (failed["channel"], failed["error_code"], failed["permanent"]) == (
        "sms",
        "twilio_30003",
        True,
    )
    await report("failed", "twilio_30005")  # already undelivered: told once
    assert len(await failed_events()) == 1
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM sms_status_reports WHERE provider_message_id = $1", sid
        )
        == 3
    )


async def test_reports_applied_together_keep_their_order_and_never_move_back(
    pool: asyncpg.Pool,
) -> None:
    """Callbacks that arrive together are applied in one transaction, in the order
    received: late reports are kept but move nothing back, and an SMS that becomes
    undelivered is reported failed once, whatever else is in the batch."""
    sids = {name: await _sent_sms(pool) for name in ("delivered", "undelivered")}
    ok, bad = sids["delivered"][1], sids["undelivered"][1]
    batch = [
        commands.SmsStatusReport(ok, "sent", None),
        commands.SmsStatusReport(bad, "undelivered", "twilio_30003"),
        commands.SmsStatusReport(ok, "delivered", None),
        commands.SmsStatusReport(ok, "sent", None),  # a retried, late report
        commands.SmsStatusReport(bad, "failed", "twilio_30005"),
    ]
    async with pool.acquire() as conn:
        await commands.apply_sms_status_reports(conn, batch, now=NOW, source=SOURCE)
    statuses = {
        r["provider_message_id"]: (r["status"], r["provider_status"], r["error_code"])
        for r in await pool.fetch(
            "SELECT * FROM deliveries WHERE provider_message_id = ANY($1::text[])", [ok, bad]
        )
    }
    assert statuses == {
        ok: ("delivered", "delivered", None),
        bad: ("undelivered", "undelivered", "twilio_30003"),
    }
    failed = await pool.fetch(
        "SELECT data FROM outbox WHERE event_type = 'notification.failed' AND subject = $1",
        sids["undelivered"][0],
    )
    assert [orjson.loads(r["data"])["error_code"] for r in failed] == ["twilio_30003"]
    kept = await pool.fetch(
        """SELECT provider_message_id, status FROM sms_status_reports
           WHERE provider_message_id = ANY($1::text[]) ORDER BY id""",
        [ok, bad],
    )
    assert [(r["provider_message_id"], r["status"]) for r in kept] == [
        (r.provider_message_id, r.status) for r in batch
    ]


async def test_the_same_content_under_a_new_id_or_an_older_version_plans_nothing(
    pool: asyncpg.Pool,
) -> None:
    case_id, reference = str(uuid.uuid4()), events.new_reference()
    sent = events.referral_sent(case_id, reference, version=2)
    async with pool.acquire() as conn, conn.transaction():
        await commands.plan_deliveries(
            conn, plan_of(sent), contacts=loaded, feeds=NO_FEEDS, now=NOW
        )
        copy = plan_of(sent)  # another event id, the same data
        assert copy.event_id != plan_of(sent).event_id
        assert await commands.plan_deliveries(
            conn, copy, contacts=loaded, feeds=NO_FEEDS, now=NOW
        ) == (commands.Planned(0, False))
    assert len(await rows(pool, case_id)) == 2

    overdue = events.referral_overdue(
        case_id, reference, 2, referral_id=sent.referral_id, version=4
    )
    late = events.referral_sent(case_id, reference, referral_id=sent.referral_id, version=3)
    async with pool.acquire() as conn, conn.transaction():
        planned = await commands.plan_deliveries(
            conn, plan_of(overdue), contacts=loaded, feeds=NO_FEEDS, now=NOW
        )
    assert planned.deliveries > 0
    before = await rows(pool, case_id)
    async with pool.acquire() as conn, conn.transaction():
        ignored = await commands.plan_deliveries(
            conn, plan_of(late), contacts=loaded, feeds=NO_FEEDS, now=NOW
        )
    assert ignored == commands.Planned(0, False)
    assert await rows(pool, case_id) == before
    stored = await pool.fetchval(
        "SELECT count(*) FROM source_events WHERE data->>'referral_id' = $1",
        str(sent.referral_id),
    )
    assert stored == 2  # the first referral.sent and the overdue; not the late one
