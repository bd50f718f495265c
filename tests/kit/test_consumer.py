"""The idempotent consumer on real Kafka and PostgreSQL: effects applied once per
event id, poison records dead-lettered with the error, transient failures retried,
nothing blocks the partition."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from asyncpg.exceptions._base import InternalClientError

from contracts.envelope import CloudEvent
from contracts.topics import Topic, namespaced
from services.kit.consumer import Subscription, prune_processed_events
from services.kit.db import Conn
from services.kit.event_errors import TransientError
from services.kit.kafka import admin_client
from services.kit.runtime import ServiceRuntime
from tests.helpers import TopicReader, poll_until
from tests.infra import Infra
from tests.kit.conftest import toy_settings

MIGRATION = """
CREATE TABLE effects (event_id TEXT NOT NULL, case_id TEXT NOT NULL, note TEXT NOT NULL);
"""


class Behaviour:
    """What the toy handler does per case id, set by each test."""

    def __init__(self) -> None:
        self.fail_times: dict[str, int] = {}
        self.fail_with: dict[str, Exception] = {}  # what the failures raise; TransientError
        self.always_fail: set[str] = set()
        self.attempts: dict[str, int] = {}
        self.gates: dict[str, asyncio.Event] = {}  # the handler waits until the test opens it


@pytest.fixture(scope="module")
async def toy(
    infra: Infra, namespace: str, databases: Callable[..., Any], tmp_path_factory: Any
) -> AsyncIterator[tuple[ServiceRuntime, Behaviour]]:
    migrations: Path = tmp_path_factory.mktemp("toy-migrations")
    (migrations / "001_effects.sql").write_text(MIGRATION)
    behaviour = Behaviour()

    async def apply(conn: Conn, event: CloudEvent) -> None:
        case = event.subject
        behaviour.attempts[case] = behaviour.attempts.get(case, 0) + 1
        if case in behaviour.gates:
            await behaviour.gates[case].wait()
        if case in behaviour.always_fail:
            raise KeyError("a bug in the handler")
        if behaviour.fail_times.get(case, 0) > 0:
            behaviour.fail_times[case] -= 1
            raise behaviour.fail_with.get(case, TransientError("dependency down"))
        await conn.execute(
            "INSERT INTO effects VALUES ($1, $2, $3)", event.id, case, event.data.get("note", "")
        )

    settings = toy_settings(
        infra,
        namespace,
        await databases("toy", role="intake"),
        consumer_backoff_initial_seconds=0.01,
        consumer_backoff_max_seconds=0.05,
        consumer_max_attempts=3,
    )
    runtime = ServiceRuntime(
        settings,
        migrations=migrations,
        subscriptions=[Subscription(Topic.NOTIFICATIONS, {"toy.happened": apply})],
    )
    await runtime.start()
    try:
        yield runtime, behaviour
    finally:
        await runtime.stop()


async def _produce(
    infra: Infra, namespace: str, *records: tuple[bytes, bytes | None, list[tuple[str, bytes]]]
) -> None:
    producer = AIOKafkaProducer(**infra.kafka().aiokafka())
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(
                namespaced(namespace, Topic.NOTIFICATIONS), value=value, key=key, headers=headers
            )
    finally:
        await producer.stop()


def _event(case_id: str, note: str = "x", event_id: str | None = None) -> CloudEvent:
    return CloudEvent(
        type="toy.happened",
        source="/test",
        subject=case_id,
        data={"note": note},
        id=event_id or str(uuid.uuid4()),
    )


def _record(event: CloudEvent) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    return event.key, event.value(), event.headers()


async def _effects(runtime: ServiceRuntime, case_id: str) -> list[str]:
    rows = await runtime.pool.fetch(
        "SELECT note FROM effects WHERE case_id = $1 ORDER BY note", case_id
    )
    return [r["note"] for r in rows]


async def test_redelivered_event_applies_once(
    toy: tuple[ServiceRuntime, Behaviour], infra: Infra, namespace: str
) -> None:
    runtime, _ = toy
    case = str(uuid.uuid4())
    first = _event(case, "a")
    await _produce(
        infra, namespace, _record(first), _record(first), _record(_event(case, "b")), _record(first)
    )
    notes = await poll_until(
        lambda: _effects(runtime, case), lambda n: len(n) >= 2, what="both distinct events applied"
    )
    # a later marker proves the duplicates behind it were consumed, not just pending
    marker = _event(case, "c")
    await _produce(infra, namespace, _record(first), _record(marker))
    notes = await poll_until(lambda: _effects(runtime, case), lambda n: "c" in n, what="marker")
    assert notes == ["a", "b", "c"]


async def _committed(infra: Infra, group: str) -> dict[TopicPartition, int]:
    admin = admin_client(infra.kafka(), "enlace-test-offsets")
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp: o.offset for tp, o in offsets.items() if o.offset >= 0}


async def test_offsets_are_committed_after_the_batch_applied_never_before(
    toy: tuple[ServiceRuntime, Behaviour], infra: Infra, namespace: str
) -> None:
    runtime, behaviour = toy
    group = runtime.consumers[0].group_id
    case = str(uuid.uuid4())
    applied, held = _event(case, "applied"), _event(case, "held")
    await _produce(infra, namespace, _record(applied))
    await poll_until(lambda: _effects(runtime, case), lambda n: n == ["applied"], what="applied")
    behaviour.gates[case] = asyncio.Event()
    producer = AIOKafkaProducer(**infra.kafka().aiokafka())
    await producer.start()
    try:
        key, value, headers = _record(held)
        sent = await producer.send_and_wait(
            namespaced(namespace, Topic.NOTIFICATIONS), value=value, key=key, headers=headers
        )
    finally:
        await producer.stop()
    partition = TopicPartition(sent.topic, sent.partition)

    async def attempts() -> int:
        return behaviour.attempts.get(case, 0)

    await poll_until(attempts, lambda n: n >= 2, what="the held event reached the handler")
    # While the held event is being applied, the group's offset covers "applied" (its
    # batch committed after its transaction) and not "held": a crash now brings it back.
    await poll_until(
        lambda: _committed(infra, group),
        lambda c: c.get(partition) == sent.offset,
        what="the applied event's offset committed, the held one's not",
    )
    behaviour.gates[case].set()
    await poll_until(
        lambda: _effects(runtime, case), lambda n: n == ["applied", "held"], what="held applied"
    )
    # Once applied, its own batch's commit covers it.
    await poll_until(
        lambda: _committed(infra, group),
        lambda c: c.get(partition) == sent.offset + 1,
        what="the held event's offset committed",
    )


async def test_poison_record_goes_to_dlq_and_does_not_block(
    toy: tuple[ServiceRuntime, Behaviour], infra: Infra, namespace: str, topics: TopicReader
) -> None:
    runtime, _ = toy
    case = str(uuid.uuid4())
    broken_headers = [(k, v) for k, v in _event(case).headers() if k != "ce_id"]
    after = _event(case, "after-poison")
    await _produce(
        infra,
        namespace,
        (case.encode(), b"{not json", _event(case).headers()),
        (case.encode(), b"{}", broken_headers),
        _record(after),
    )
    await poll_until(
        lambda: _effects(runtime, case),
        lambda n: n == ["after-poison"],
        what="the record behind the poison ones",
    )
    dead = await topics.wait_for(
        Topic.NOTIFICATIONS.dlq,
        lambda rs: len([r for r in rs if r.key == case]) >= 2,
        what="two dead letters",
    )
    mine = [r for r in dead if r.key == case]
    errors = sorted(r.headers["x-error-message"] for r in mine)
    assert errors[0].startswith("EnvelopeError: missing header ce_id")
    assert errors[1].startswith("EnvelopeError: value is not JSON")
    assert all(
        r.headers["x-original-topic"] == namespaced(namespace, Topic.NOTIFICATIONS) for r in mine
    )
    assert all("x-original-offset" in r.headers for r in mine)


async def test_transient_failures_are_retried_until_applied(
    toy: tuple[ServiceRuntime, Behaviour], infra: Infra, namespace: str
) -> None:
    runtime, behaviour = toy
    case = str(uuid.uuid4())
    behaviour.fail_times[case] = 6  # more than max attempts: transient errors do not count
    await _produce(infra, namespace, _record(_event(case, "eventually")))
    assert await poll_until(lambda: _effects(runtime, case), what="applied after retries") == [
        "eventually"
    ]
    assert behaviour.attempts[case] >= 7


async def test_a_connection_lost_mid_query_is_transient_not_a_bad_event(
    toy: tuple[ServiceRuntime, Behaviour], infra: Infra, namespace: str, topics: TopicReader
) -> None:
    """asyncpg's InternalClientError after a fast PostgreSQL restart once counted toward
    dead-lettering a valid event."""
    runtime, behaviour = toy
    case = str(uuid.uuid4())
    behaviour.fail_times[case] = 5  # more than max attempts (3)
    behaviour.fail_with[case] = InternalClientError(
        "cannot switch to state 15; another operation (2) is in progress"
    )
    await _produce(infra, namespace, _record(_event(case, "kept")))
    assert await poll_until(lambda: _effects(runtime, case), what="applied after retries") == [
        "kept"
    ]
    dead = await topics.read(Topic.NOTIFICATIONS.dlq)
    assert not [r for r in dead if r.key == case]  # read after it was applied: caught up


async def test_an_undecodable_record_is_dead_lettered_once_however_often_it_comes(
    toy: tuple[ServiceRuntime, Behaviour], infra: Infra, namespace: str, topics: TopicReader
) -> None:
    runtime, _ = toy
    case = str(uuid.uuid4())
    record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        topic=namespaced(namespace, Topic.NOTIFICATIONS),
        partition=0,
        offset=987_654,
        timestamp=0,
        timestamp_type=0,
        key=case.encode(),
        value=b"\x00not json",
        checksum=None,
        serialized_key_size=36,
        serialized_value_size=10,
        headers=_event(case).headers(),
    )
    (consumer,) = runtime.consumers
    for _ in range(3):  # redelivered: a rewound batch, a rebalance, a restart
        await consumer.handle_batch([record])
    # Each handle_batch returned after the broker acknowledged what it wrote: the DLQ
    # read now holds every copy there will ever be.
    dead = await topics.for_case(Topic.NOTIFICATIONS.dlq, case, 1)
    assert len(dead) == 1
    assert dead[0].headers["x-original-offset"] == "987654"


async def test_failing_handler_is_dead_lettered_after_bounded_retries(
    toy: tuple[ServiceRuntime, Behaviour], infra: Infra, namespace: str, topics: TopicReader
) -> None:
    runtime, behaviour = toy
    case = str(uuid.uuid4())
    behaviour.always_fail.add(case)
    bad = _event(case, "bad")
    await _produce(infra, namespace, _record(bad))
    (dead,) = await topics.for_case(Topic.NOTIFICATIONS.dlq, case, 1)
    assert dead.headers["ce_id"] == bad.id
    assert dead.headers["x-error-type"] == "KeyError"
    assert dead.headers["x-error-attempts"] == "3"
    # who refused it: the service, its subscription, its consumer group
    assert dead.headers["x-consumer-service"] == "toy"
    assert dead.headers["x-consumer-subscription"] == Topic.NOTIFICATIONS.value
    assert dead.headers["x-consumer-group"] == f"{namespace}-toy.{Topic.NOTIFICATIONS.value}"
    assert behaviour.attempts[case] == 1 + 3  # the batch attempt, then 3 alone
    outcome = await runtime.pool.fetchval(
        "SELECT outcome FROM processed_events WHERE event_id = $1", bad.id
    )
    assert outcome == "dead_lettered"
    # the same record delivered again is not retried nor dead-lettered twice
    behaviour.always_fail.discard(case)
    marker = _event(case, "marker")
    await _produce(infra, namespace, _record(bad), _record(marker))
    assert await poll_until(lambda: _effects(runtime, case), what="marker") == ["marker"]
    assert behaviour.attempts[case] == 5  # 4 for bad, 1 for marker


async def test_old_event_ids_are_pruned_recent_ones_kept(
    toy: tuple[ServiceRuntime, Behaviour],
) -> None:
    runtime, _ = toy
    old, recent = f"old-{uuid.uuid4()}", f"recent-{uuid.uuid4()}"
    await runtime.pool.execute(
        """INSERT INTO processed_events (consumer, event_id, event_type, processed_at)
           VALUES ('toy', $1, 'toy.happened', now() - interval '15 days'),
                  ('toy', $2, 'toy.happened', now() - interval '13 days')""",
        old,
        recent,
    )
    assert await prune_processed_events(runtime.pool, timedelta(days=14)) >= 1
    kept = await runtime.pool.fetch(
        "SELECT event_id FROM processed_events WHERE event_id = ANY($1::text[])", [old, recent]
    )
    assert [r["event_id"] for r in kept] == [recent]
