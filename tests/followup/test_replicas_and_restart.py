"""Timers fire from the database: two replicas fire each due timer once, and a
service killed with timers due emits every due event once after it starts again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter as PromCounter

from contracts.topics import Topic
from services.followup.app import FollowupSettings, create_app
from services.kit.clock import MovableClock
from tests.conftest import running, service_settings
from tests.followup.conftest import T0, Publisher, Referral
from tests.helpers import Record, TopicReader, free_port, poll_until
from tests.infra import Infra

H = timedelta(hours=1)
REPO = Path(__file__).resolve().parents[2]


def overdue_of(records: list[Record], referrals: list[Referral]) -> list[Record]:
    ids = {str(r.referral_id) for r in referrals}
    return [r for r in records if r.type == "referral.overdue" and r.value["referral_id"] in ids]


def fired(counter: PromCounter) -> float:
    return sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total"))


async def all_settled(db: asyncpg.Pool, now: datetime) -> bool:
    due = await db.fetchval(
        "SELECT count(*) FROM timers WHERE status = 'pending' AND fire_at <= $1", now
    )
    return bool(due == 0 and await db.fetchval("SELECT count(*) FROM outbox") == 0)


async def test_two_replicas_fire_each_due_timer_once(
    infra: Infra,
    own_namespace: str,
    databases: Callable[[str], Any],
    producer: AIOKafkaProducer,
) -> None:
    namespace = own_namespace
    publish, topics = Publisher(producer, namespace), TopicReader(infra.kafka(), namespace)
    dsn = await databases("followup")
    group = f"enlace-followup.{namespace}-pair-{uuid.uuid4().hex[:6]}"
    clocks = [MovableClock(T0), MovableClock(T0)]
    settings = service_settings(
        FollowupSettings,
        infra,
        namespace,
        dsn,
        timer_batch_size=4,
        timer_concurrency=2,
        timer_poll_seconds=0.2,
    )
    settings = settings.model_copy(update={"consumer_group": group})  # one group, two members
    apps = [create_app(settings, clock=clock) for clock in clocks]
    referrals = [Referral() for _ in range(30)]
    db = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    async with running(apps[0]), running(apps[1]):
        await publish(*(r.sent(T0) for r in referrals))
        await poll_until(
            lambda: db.fetchval("SELECT count(*) FROM timers WHERE kind = 'deadline'"),
            lambda n: n == 30,
            what="30 acknowledge timers",
        )
        for level, hours in ((1, 4), (2, 8)):
            for clock, app in zip(clocks, apps, strict=True):
                clock.set(T0 + hours * H + timedelta(minutes=1))
                app.state.timers.wake()
            expected = 30 * level
            await topics.wait_for(
                Topic.REFERRALS,
                lambda rs: len(overdue_of(rs, referrals)) >= expected,  # noqa: B023
                what=f"level {level} for all 30",
            )
            now = clocks[0].now()
            await poll_until(
                lambda: all_settled(db, now),  # noqa: B023 (awaited right here)
                what="nothing due and nothing unpublished",
            )
        per_replica = [fired(app.state.metrics.timers_fired) for app in apps]
    await db.close()

    records = overdue_of(await topics.read(Topic.REFERRALS), referrals)
    per_firing = Counter((r.value["referral_id"], r.value["escalation_level"]) for r in records)
    assert len(records) == 60
    assert set(per_firing.values()) == {1}  # each referral, each level: exactly once
    assert sum(per_replica) == 60
    print(f"fired per replica: {per_replica}")


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.followup"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _healthy(port: int) -> bool:
    try:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"http://127.0.0.1:{port}/healthz", timeout=1)).is_success
    except httpx.HTTPError:
        return False


async def test_killed_with_timers_due_emits_every_due_event_once_after_restart(
    infra: Infra,
    own_namespace: str,
    databases: Callable[[str], Any],
    producer: AIOKafkaProducer,
    tmp_path: Path,
) -> None:
    namespace = own_namespace
    publish, topics = Publisher(producer, namespace), TopicReader(infra.kafka(), namespace)
    dsn = await databases("followup")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        **infra.service_kafka("followup").as_env(),
        "ENLACE_TOPIC_NAMESPACE": namespace,
        "ENLACE_HTTP_PORT": str(port),
        "ENLACE_CONSUMER_GROUP": f"enlace-followup.{namespace}-kill-{uuid.uuid4().hex[:6]}",
        "ENLACE_TIMER_BATCH_SIZE": "1",
        "ENLACE_TIMER_CONCURRENCY": "1",
        "ENLACE_OUTBOX_FALLBACK_POLL_SECONDS": "0.5",
        "ENLACE_LOG_LEVEL": "WARNING",
    }
    log = tmp_path / "followup.log"
    # Real clock in a subprocess: referrals sent 9 h ago are past both escalation levels.
    sent_at = datetime.now(UTC) - 9 * H
    referrals = [Referral() for _ in range(40)]
    # The new consumer group also reads earlier tests' referrals: count ours only.
    ids = [r.referral_id for r in referrals]
    ours = "SELECT count(*) FROM timers WHERE referral_id = ANY($1::uuid[])"
    db = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    first = _start(env, log)
    try:
        await poll_until(lambda: _healthy(port), timeout=30, what="service up")
        await publish(*(r.sent(sent_at) for r in referrals))
        await poll_until(
            lambda: db.fetchval(f"{ours} AND kind = 'deadline'", ids),
            lambda n: n == 40,
            timeout=30,
            what="40 timers stored",
        )
        # Kill it mid-way: some timers fired (one per transaction), most still due.
        await poll_until(
            lambda: db.fetchval(
                "SELECT coalesce(sum(fired_count), 0) FROM timers WHERE referral_id = ANY($1)", ids
            ),
            lambda n: n >= 5,
            timeout=30,
            what="the first firings",
        )
        first.send_signal(signal.SIGKILL)  # no shutdown, no flush, no goodbye
        first.wait(timeout=10)
        fired_before = await db.fetchval(
            "SELECT coalesce(sum(fired_count), 0) FROM timers WHERE referral_id = ANY($1)", ids
        )
        unpublished = await db.fetchval("SELECT count(*) FROM outbox")

        second = _start(env, log)
        try:
            await poll_until(
                lambda: db.fetchval(f"{ours} AND status = 'escalated'", ids),
                lambda n: n == 40,
                timeout=30,
                what="every timer through both levels",
            )
            await poll_until(
                lambda: db.fetchval("SELECT count(*) FROM outbox"),
                lambda n: n == 0,
                timeout=30,
                what="outbox published",
            )
        finally:
            second.send_signal(signal.SIGTERM)
            await asyncio.to_thread(second.wait, 30)
    finally:
        if first.poll() is None:
            first.kill()
        await db.close()

    records = overdue_of(await topics.read(Topic.REFERRALS), referrals)
    ids_per_firing: dict[tuple[str, int], set[str]] = {}
    for r in records:
        key = (r.value["referral_id"], r.value["escalation_level"])
        ids_per_firing.setdefault(key, set()).add(r.headers["ce_id"])
    assert len(ids_per_firing) == 80  # 40 referrals x 2 levels, none missing
    assert all(len(ids) == 1 for ids in ids_per_firing.values())  # each fired once: one event
    # The kit relay is at-least-once: a kill between the broker's ack and the outbox
    # delete republishes that row after the restart, as the same event (same ce_id, same
    # data), which consumers drop by id. Only rows still in the outbox at the kill can.
    copies = Counter(r.headers["ce_id"] for r in records)
    republished = sum(n - 1 for n in copies.values())
    assert republished <= unpublished
    for event_id in (i for i, n in copies.items() if n > 1):
        assert len({str(r.value) for r in records if r.headers["ce_id"] == event_id}) == 1
    print(
        f"fired before the kill: {fired_before}/80, unpublished at the kill: {unpublished}, "
        f"republished copies: {republished}"
    )
