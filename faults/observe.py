"""The sampler: every half second, what the pipeline has delivered (the providers'
records), what each service's /readyz says, and (when they answer) the outbox
backlogs in PostgreSQL and each consumer group's lag in Kafka. The checker reads
stalls, resumption, lag recovery and the truth of readiness off these samples.

A probe that does not answer within its timeout leaves its field None for that
sample: a broker or a database being down is what is being observed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.topics import all_topic_names
from faults.load import Load
from faults.stack import SERVICES, Stack
from services.kit.kafka import admin_client

INTERVAL_S = 0.5
PROBE_TIMEOUT_S = 1.5
OPEN_DELIVERIES = (
    "SELECT count(*) FROM deliveries WHERE status NOT IN ('sent', 'delivered', 'failed', "
    "'undelivered')"
)
# Due for 2 s already: pending past its next attempt, or claimed past its lease (a
# delivery whose sender was killed waits for its lease to run out: not stuck).
DUE_DELIVERIES = (
    "SELECT count(*) FROM deliveries WHERE (status = 'pending' AND next_attempt_at < "
    "now() - interval '2 seconds') OR (status = 'sending' AND lease_until < now() - "
    "interval '2 seconds')"
)


@dataclass
class Sample:
    t: float
    sms: int
    mails: int
    accepted: int  # cases registered so far
    expected: dict[str, int]  # messages those cases must cause, per channel
    ready: dict[str, int | None]  # /readyz status per service (None: no answer)
    unready: dict[str, list[str]]  # what the body says is missing (checks, needed loops)
    outbox: dict[str, int] | None = None  # rows waiting in each service's outbox
    open_deliveries: int | None = None  # notifications' deliveries not yet final
    due_deliveries: int | None = None  # of those, the ones due now (not waiting a lease)
    lag: dict[str, int] | None = None  # per consumer group
    committed: dict[str, int] | None = None  # per consumer group, sum of offsets
    ends: dict[str, int] | None = None  # per topic, sum of end offsets

    @property
    def delivered(self) -> int:
        return self.sms + self.mails

    def count(self, channel: str) -> int:
        return self.sms if channel == "sms" else self.mails

    @property
    def idle(self) -> bool:
        """Nothing waiting anywhere the probes see (and both probes answered)."""
        return (
            self.outbox is not None
            and not any(self.outbox.values())
            and self.lag is not None
            and not any(self.lag.values())
            and not self.open_deliveries
        )


class Counters:
    """What the providers recorded: SMS lines and Maildir files."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self._sms_offset = 0
        self.sms = 0

    def read(self) -> tuple[int, int]:
        log = self.stack.sms_log
        if log.exists():
            with log.open("rb") as handle:
                handle.seek(self._sms_offset)
                chunk = handle.read()
            whole = chunk[: chunk.rfind(b"\n") + 1]
            self._sms_offset += len(whole)
            self.sms += whole.count(b"\n")
        new = self.stack.maildir / "new"
        mails = len(os.listdir(new)) if new.exists() else 0
        return self.sms, mails


class Readiness:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.client = httpx.AsyncClient(timeout=PROBE_TIMEOUT_S)

    async def probe(self, service: str) -> tuple[int | None, list[str]]:
        try:
            answer = await self.client.get(f"{self.stack.url(service)}/readyz")
        except httpx.HTTPError:
            return None, ["no answer"]
        missing: list[str] = []
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            body: dict[str, Any] = answer.json()
            missing += [f"check:{k}" for k, v in (body.get("checks") or {}).items() if not v]
            for name, loop in (body.get("loops") or {}).items():
                if loop.get("needed") and loop.get("status") != "running":
                    missing.append(f"loop:{name}:{loop.get('status')}")
        return answer.status_code, missing

    async def sample(self) -> dict[str, tuple[int | None, list[str]]]:
        answers = await asyncio.gather(*(self.probe(s) for s in SERVICES))
        return dict(zip(SERVICES, answers, strict=True))

    async def close(self) -> None:
        await self.client.aclose()


class Database:
    """Backlogs, read as the superuser of the private cluster."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.conns: dict[str, asyncpg.Connection] = {}

    async def _conn(self, service: str) -> asyncpg.Connection:
        conn = self.conns.get(service)
        if conn is None or conn.is_closed():
            conn = await asyncpg.connect(
                self.stack.admin_dsn(f"enlace_{service}"), timeout=PROBE_TIMEOUT_S
            )
            self.conns[service] = conn
        return conn

    async def _count(self, service: str, query: str) -> int:
        try:
            conn = await self._conn(service)
            return int(await conn.fetchval(query, timeout=PROBE_TIMEOUT_S))
        except Exception:
            await self._drop(service)
            raise

    async def _drop(self, service: str) -> None:
        conn = self.conns.pop(service, None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()

    async def sample(self) -> tuple[dict[str, int], int | None, int | None] | None:
        try:
            counts = await asyncio.gather(
                *(self._count(s, "SELECT count(*) FROM outbox") for s in SERVICES)
            )
        except Exception:
            return None
        try:
            open_deliveries: int | None = await self._count("notifications", OPEN_DELIVERIES)
        except Exception:
            open_deliveries = None
        try:
            due: int | None = await self._count("notifications", DUE_DELIVERIES)
        except Exception:
            due = None
        return dict(zip(SERVICES, counts, strict=True)), open_deliveries, due

    async def close(self) -> None:
        for service in list(self.conns):
            await self._drop(service)


class KafkaLag:
    """Consumer groups' committed offsets against the topics' end offsets."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.admin: Any = None
        self.consumer: AIOKafkaConsumer | None = None
        self.topics = all_topic_names()
        self._closing: set[asyncio.Task[None]] = set()

    async def _clients(self) -> tuple[Any, AIOKafkaConsumer]:
        if self.admin is None or self.consumer is None:
            client = self.stack.kafka()
            admin = admin_client(client, "enlace-faults-lag")
            consumer = AIOKafkaConsumer(
                **client.aiokafka(), enable_auto_commit=False, client_id="enlace-faults-lag"
            )
            self.admin, self.consumer = admin, consumer
            await admin.start()
            await consumer.start()
        return self.admin, self.consumer

    async def _read(self) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        admin, consumer = await self._clients()
        groups = sorted(
            g[0] for g in await admin.list_consumer_groups() if g[0].startswith("enlace-")
        )
        partitions = [
            TopicPartition(t, p)
            for t in self.topics
            for p in consumer.partitions_for_topic(t) or ()
        ]
        if not partitions:
            await consumer._client.force_metadata_update()
            return {}, {}, {}
        end = await consumer.end_offsets(partitions)
        ends: dict[str, int] = {}
        for tp, offset in end.items():
            ends[tp.topic] = ends.get(tp.topic, 0) + offset
        lag: dict[str, int] = {}
        committed: dict[str, int] = {}
        for group in groups:
            offsets = await admin.list_consumer_group_offsets(group)
            mine = {tp: o.offset for tp, o in offsets.items() if o.offset >= 0}
            topics = {tp.topic for tp in mine}
            lag[group] = sum(
                max(0, end[tp] - mine.get(tp, 0)) for tp in partitions if tp.topic in topics
            )
            committed[group] = sum(mine.values())
        return lag, committed, ends

    async def sample(self) -> tuple[dict[str, int], dict[str, int], dict[str, int]] | None:
        try:
            return await asyncio.wait_for(self._read(), PROBE_TIMEOUT_S)
        except Exception:
            self._discard()
            return None

    def _discard(self) -> None:
        """Drop the clients; close them aside (against a paused broker closing takes
        seconds, and the sampler must not wait for it)."""
        admin, consumer, self.admin, self.consumer = self.admin, self.consumer, None, None
        task = asyncio.create_task(self._close(admin, consumer))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        self._discard()
        await asyncio.wait(set(self._closing), timeout=15)

    @staticmethod
    async def _close(admin: Any, consumer: AIOKafkaConsumer | None) -> None:
        if consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), 5)
        if admin is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(admin.close(), 5)


@dataclass
class Sampler:
    stack: Stack
    load: Load
    t0: float
    samples: list[Sample] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def run(self, stop: asyncio.Event) -> None:
        counters, ready = Counters(self.stack), Readiness(self.stack)
        database, kafka = Database(self.stack), KafkaLag(self.stack)
        try:
            while not stop.is_set():
                began = time.monotonic()
                await self.sample_once(counters, ready, database, kafka)
                # The sampling period: a timed wait between samples.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        stop.wait(), max(0.0, INTERVAL_S - (time.monotonic() - began))
                    )
        finally:
            await ready.close()
            await database.close()
            await kafka.close()

    async def sample_once(
        self, counters: Counters, ready: Readiness, database: Database, kafka: KafkaLag
    ) -> Sample:
        t = self.now()
        answers, db, lag = await asyncio.gather(
            ready.sample(),
            asyncio.wait_for(database.sample(), PROBE_TIMEOUT_S + 0.5),
            kafka.sample(),
            return_exceptions=True,
        )
        sms, mails = counters.read()
        sample = Sample(
            t=t,
            sms=sms,
            mails=mails,
            accepted=self.load.accepted,
            expected=dict(self.load.expected),
            ready={},
            unready={},
        )
        if isinstance(answers, dict):
            sample.ready = {s: a[0] for s, a in answers.items()}
            sample.unready = {s: a[1] for s, a in answers.items() if a[1]}
        if isinstance(db, tuple):
            sample.outbox, sample.open_deliveries, sample.due_deliveries = db
        if isinstance(lag, tuple):
            sample.lag, sample.committed, sample.ends = lag
        self.samples.append(sample)
        return sample
