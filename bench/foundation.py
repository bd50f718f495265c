"""Foundation figures: the raw aiokafka produce rate (the baseline) over PLAINTEXT, on
a private broker, and over SASL_SSL, on the shared one; the outbox relay rate and
intake's throughput and POST-to-topic latency (a real uvicorn process), over SASL_SSL
as the intake principal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from asyncpg import Pool

from bench.common import BenchContext, Figure, percentile
from bench.private_broker import plaintext_broker
from contracts.envelope import CloudEvent
from contracts.registry import producer_source
from contracts.topics import Topic, namespaced
from services.kit.db import create_pool, migrate
from services.kit.kafka import KafkaClient, ensure_topics, make_producer
from services.kit.metrics import KitMetrics
from services.kit.outbox import OutboxRelay, enqueue
from tests.factories import piura_adolescent_girl
from tests.helpers import DEMO_KEYS, free_port

REPO = Path(__file__).resolve().parents[1]
EVENTS = 40_000
SAMPLE_DATA = {
    "reference": "PE-PIU-2026-000123",
    "registering_agency_id": "ong-amanecer",
    "country": "PE",
    "region": "PE-PIU",
    "age_band": "15-17",
    "sex": "female",
    "nationality": "VE",
    "languages": ["es"],
    "unaccompanied": True,
    "separated": False,
    "has_disability": False,
    "concerns": ["physical_violence", "gender_based_violence"],
    "needs": ["special_protection", "psychosocial_support"],
    "risk_level": "high",
    "consent": {
        "basis": "consent",
        "scope": "all_referral_services",
        "given_by": "child",
        "recorded_at": "2026-11-23T10:00:00+00:00",
        "service_types": [],
        "decided_by": None,
    },
    "caseworker_id": "cw-rosa",
    "possible_duplicate": False,
    "possible_duplicate_of": [],
}


def _events(count: int) -> list[CloudEvent]:
    cases = [str(uuid.uuid4()) for _ in range(max(1, count // 4))]
    return [
        CloudEvent(
            type="case.created",
            source=producer_source("case.created"),
            subject=cases[i % len(cases)],
            data={"case_id": cases[i % len(cases)], **SAMPLE_DATA},
        )
        for i in range(count)
    ]


WARM_UP_SECONDS = 3.0
# Raw and relay rates are each the best of ROUNDS rounds of EVENTS: the machine is
# shared, and the same statistic on both sides keeps the ratio honest.
ROUNDS = 3


async def _send_all(producer: AIOKafkaProducer, topic: str, events: list[CloudEvent]) -> None:
    futures = [
        await producer.send(topic, value=e.value(), key=e.key, headers=e.headers()) for e in events
    ]
    await asyncio.gather(*futures)


async def raw_produce_rate(client: KafkaClient, namespace: str) -> Figure:
    """The relay's producer settings (make_producer), sending straight from memory,
    after an untimed warm-up (a broker just started is measured warm too)."""
    producer = make_producer(client, "bench-raw")
    await producer.start()
    topic = namespaced(namespace, Topic.CASES)
    rates: list[float] = []
    try:
        warm_until = time.perf_counter() + WARM_UP_SECONDS
        while time.perf_counter() < warm_until:
            await _send_all(producer, topic, _events(5000))
        for _ in range(ROUNDS):
            events = _events(EVENTS)
            started = time.perf_counter()
            await _send_all(producer, topic, events)
            rates.append(EVENTS / (time.perf_counter() - started))
    finally:
        await producer.stop()
    how = client.security_protocol + (f" {client.sasl_mechanism}" if client.sasl else "")
    return Figure(f"raw aiokafka produce, {how} [baseline]", max(rates), "events/s")


async def plaintext_produce_rate(ctx: BenchContext) -> Figure:
    """The same over PLAINTEXT, on a private broker (the shared one has no such listener)."""
    async with plaintext_broker() as client:
        await ensure_topics(client, ctx.namespace, partitions=3)
        return await raw_produce_rate(client, ctx.namespace)


async def relay_rate(ctx: BenchContext, client: KafkaClient, baseline: float) -> Figure:
    dsn = await ctx.make_database("relaybench")
    pool = await create_pool(dsn)
    try:
        await migrate(pool, None, "relaybench")
        rates = [await _relay_round(pool, dsn, ctx.namespace, client) for _ in range(ROUNDS)]
    finally:
        await pool.close()
    rate = max(rates)
    target = max(5000.0, baseline / 2)
    return Figure(
        f"outbox relay (DB -> Kafka, acked, rows deleted), {client.security_protocol}",
        rate,
        "events/s",
        f">= {target:,.0f}: 5,000 and half the {client.security_protocol} baseline",
        rate >= target,
    )


async def _relay_round(pool: Pool, dsn: str, namespace: str, client: KafkaClient) -> float:
    """EVENTS rows in the outbox, then a relay started: the time until they are all
    published, acknowledged and deleted (producer start and lock included)."""
    events = _events(EVENTS)
    async with pool.acquire() as conn:
        for start in range(0, len(events), 2000):
            async with conn.transaction():
                await enqueue(conn, Topic.CASES, *events[start : start + 2000])
    relay = OutboxRelay(
        pool=pool,
        dsn=dsn,
        producer_factory=lambda: make_producer(client, "bench-relay"),
        namespace=namespace,
        lock_key=4242,
        metrics=KitMetrics("relaybench"),
    )
    task = asyncio.create_task(relay.run())
    started = time.perf_counter()
    try:
        while await pool.fetchval("SELECT count(*) FROM outbox") > 0:
            if time.perf_counter() - started > 120:
                raise RuntimeError(f"the relay did not drain the outbox: {relay.last_error}")
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
    finally:
        await relay.stop()
        await task
    return EVENTS / elapsed


@contextlib.asynccontextmanager
async def intake_process(ctx: BenchContext) -> AsyncIterator[str]:
    port = free_port()
    env = {
        **ctx.env("intake"),  # its own principal, consumer group and namespace
        "DATABASE_URL": await ctx.make_database("intakebench"),
        "ENLACE_HTTP_PORT": str(port),
        "ENLACE_LOG_LEVEL": "WARNING",
        "ENLACE_DB_POOL_MAX": "20",
    }
    # One process per core, as a deployment on this machine would run it.
    env["ENLACE_HTTP_WORKERS"] = str(INTAKE_WORKERS)
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.intake"], env=env, cwd=REPO, stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as client:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{url}/readyz")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("intake did not become ready")
                await asyncio.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


INTAKE_WORKERS = int(os.environ.get("ENLACE_BENCH_INTAKE_WORKERS", "2"))
KEY_VALUE = DEMO_KEYS["ong-amanecer"]
KEY = {"Authorization": f"Bearer {KEY_VALUE}"}


async def intake_throughput(ctx: BenchContext, url: str) -> Figure:
    """The load generator shares the two cores with the server it measures, so the
    lighter it is the truer the figure: wrk (C) when installed, else aiohttp."""
    if shutil.which("wrk"):
        return await _throughput_with_wrk(url)
    return await _throughput_with_aiohttp(url)


async def _throughput_with_wrk(url: str) -> Figure:
    connections, seconds = 32, 10
    template = orjson.dumps(piura_adolescent_girl(external_id="__EXTERNAL_ID__")).decode()
    env = {**os.environ, "ENLACE_BENCH_BODY": template, "ENLACE_BENCH_KEY": KEY_VALUE}
    proc = await asyncio.create_subprocess_exec(
        "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
        "-s", str(Path(__file__).with_name("intake_post.lua")), url,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output = (await proc.communicate())[0].decode()
    rate_match = re.search(r"Requests/sec:\s+([0-9.]+)", output)
    if proc.returncode != 0 or rate_match is None:
        raise RuntimeError(f"wrk failed:\n{output}")
    failed = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = int(failed.group(1)) if failed else 0
    rate = float(rate_match.group(1))
    return Figure(
        f"intake POST /v1/cases ({INTAKE_WORKERS} procs, wrk {connections} conns, {errors} errors)",
        rate,
        "cases/s",
        ">= 300 cases/s",
        rate >= 300 and errors == 0,
    )


async def _throughput_with_aiohttp(url: str) -> Figure:
    total, concurrency = 4000, 32
    bodies = [orjson.dumps(piura_adolescent_girl()) for _ in range(total)]
    headers = {**KEY, "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, connector=connector) as session:

        async def post(body: bytes) -> None:
            async with session.post("/v1/cases", data=body, headers=headers) as response:
                assert response.status == 201, await response.text()

        async def worker(mine: list[bytes]) -> None:
            for body in mine:
                await post(body)

        await post(orjson.dumps(piura_adolescent_girl()))  # warm-up
        started = time.perf_counter()
        await asyncio.gather(*(worker(bodies[i::concurrency]) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
    rate = total / elapsed
    return Figure(
        f"intake POST /v1/cases ({INTAKE_WORKERS} procs, aiohttp {concurrency} clients)",
        rate,
        "cases/s",
        ">= 300 cases/s",
        rate >= 300,
    )


async def intake_latency(ctx: BenchContext, url: str) -> list[Figure]:
    """Paced at 50 cases/s; latency = POST sent -> record readable by a consumer."""
    rate, seconds = 50, 10
    sent_at: dict[str, float] = {}
    seen_at: dict[str, float] = {}
    consumer = AIOKafkaConsumer(
        namespaced(ctx.namespace, Topic.CASES),
        **ctx.kafka.aiokafka(),  # the bench's watcher reads as the admin
        auto_offset_reset="latest",
        group_id=f"bench-{uuid.uuid4().hex[:6]}",
        fetch_max_wait_ms=5,
    )
    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=100)
    for tp in consumer.assignment():
        await consumer.seek_to_end(tp)

    async def watch() -> None:
        while True:
            for records in (await consumer.getmany(timeout_ms=20)).values():
                now = time.perf_counter()
                for r in records:
                    seen_at.setdefault(r.key.decode(), now)

    watcher = asyncio.create_task(watch())
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def one(body: dict[str, object]) -> None:
            started = time.perf_counter()
            response = await client.post("/v1/cases", json=body, headers=KEY)
            sent_at[response.json()["case_id"]] = started

        tasks = []
        begin = time.perf_counter()
        for i in range(rate * seconds):
            await asyncio.sleep(max(0.0, begin + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(piura_adolescent_girl())))
        await asyncio.gather(*tasks)
    deadline = time.monotonic() + 20
    while len([c for c in sent_at if c in seen_at]) < len(sent_at) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    await consumer.stop()
    latencies = [(seen_at[c] - t) * 1000 for c, t in sent_at.items() if c in seen_at]
    missing = len(sent_at) - len(latencies)
    p99 = percentile(latencies, 99)
    return [
        Figure(
            "intake POST -> record on topic, p50 at 50 cases/s", percentile(latencies, 50), "ms"
        ),
        Figure(
            "intake POST -> record on topic, p99 at 50 cases/s",
            p99,
            "ms",
            "< 100 ms",
            p99 < 100 and missing == 0,
        ),
        Figure("  records not seen within 20 s", missing, "cases", "0", missing == 0),
    ]


async def run(ctx: BenchContext) -> list[Figure]:
    # The private broker first, and stopped before anything else is measured.
    plaintext = await plaintext_produce_rate(ctx)
    intake = ctx.service_kafka("intake")  # case.created is intake's to write
    baseline = await raw_produce_rate(intake, ctx.namespace)
    figures = [plaintext, baseline, await relay_rate(ctx, intake, baseline.value)]
    async with intake_process(ctx) as url:
        figures.append(await intake_throughput(ctx, url))
        figures += await intake_latency(ctx, url)
    return figures
