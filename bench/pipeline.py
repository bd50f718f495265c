"""The whole pipeline, as a caseworker waits for it: from `POST /v1/cases` to
`referral.sent` on the topic, to the SMS accepted by the SMS provider and to the
e-mail accepted by SMTP.

The four services run as separate processes started by deploy/local/services.sh, as
`make run` starts them, on a private stack of their own (Kafka, PostgreSQL, the local
SMTP and SMS providers: `faults.stack`), so nothing else shares their topics. Cases
are posted at fixed rates, one step after another; each step is drained before the
next. The floor beside it is measured in the same run on the same broker: a raw
aiokafka produce -> consume round trip, times the Kafka hops on the path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic

from bench.common import BenchContext, Figure, percentile
from contracts.topics import Topic
from faults import expect, truth
from faults.load import Case, Load
from faults.observe import Counters
from faults.stack import Stack
from services.kit.kafka import admin_client
from tests.helpers import TopicReader

# Cases per second, one step each, until POST -> SMS p99 passes GIVE_UP_S (or a step
# does not drain): the highest rate under 1 s is the pipeline's sustained capacity.
RATES = tuple(
    float(r) for r in os.environ.get("BENCH_PIPELINE_RATES", "10,20,30,50,100,150").split(",")
)
STEP_S = float(os.environ.get("BENCH_PIPELINE_STEP_SECONDS", "20"))
DRAIN_S = 60.0
WARM_UP_RATE, WARM_UP_S = 10.0, 15.0
# The ladder goes on past a step over 1 s (noise on a shared machine can push one
# step over and the next under) and stops once the pipeline is plainly saturated.
GIVE_UP_S = 3.0
# Kafka hops from a registration to each point: intake's relay -> cases topic ->
# referral (1); referral's relay -> referrals topic -> notifications (2).
HOPS = {"referral.sent": 1, "sms": 2, "email": 2}


@dataclass
class Step:
    rate: float
    cases: list[Case]
    posted_at: dict[str, float] = field(default_factory=dict)  # case id -> wall clock
    sms: list[float] = field(default_factory=list)  # POST -> last SMS of each case, s
    drained: bool = False

    def references(self) -> dict[str, str]:
        return {c.reference: c.case_id for c in self.cases if c.reference and c.case_id}


def _wall(case: Case, t0_wall: float) -> float:
    return t0_wall + case.attempts[0].started


def _last_per_case(accepted: list[truth.Delivered], step: Step) -> dict[str, float]:
    """Case id -> when the last of its messages on that channel was accepted."""
    by_reference = step.references()
    last: dict[str, float] = {}
    for message in accepted:
        case_id = by_reference.get(message.reference or "")
        if case_id is not None:
            last[case_id] = max(message.accepted_at, last.get(case_id, 0.0))
    return last


async def _referral_sent(stack: Stack) -> dict[str, float]:
    """Case id -> when its first referral.sent reached the topic (the record's time)."""
    records = await TopicReader(stack.kafka(), "").read(Topic.REFERRALS.value, timeout=60)
    first: dict[str, float] = {}
    for record in records:
        if record.type == "referral.sent" and record.timestamp_ms:
            at = record.timestamp_ms / 1000
            first[record.subject] = min(at, first.get(record.subject, at))
    return first


async def kafka_round_trip(stack: Stack, count: int = 200) -> float:
    """Median produce -> consume time of one record on the stack's broker (acks=all,
    the services' producer settings), one record at a time."""
    client = stack.kafka()
    topic = f"bench.floor.{uuid.uuid4().hex[:6]}"
    admin = admin_client(client, "enlace-bench-floor")
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, len(stack.kafka_ports))])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(**client.aiokafka(), acks="all", enable_idempotence=True)
    consumer = AIOKafkaConsumer(
        **client.aiokafka(), enable_auto_commit=False, fetch_max_wait_ms=500
    )
    await producer.start()
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        times = []
        for _ in range(count):
            started = time.perf_counter()
            await producer.send_and_wait(topic, b"x")
            while not (await consumer.getmany(tp, timeout_ms=1000)).get(tp):
                pass
            times.append(time.perf_counter() - started)
        return percentile(times, 50)
    finally:
        await producer.stop()
        await consumer.stop()


async def _drain(counters: Counters, load: Load, deadline_s: float) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        sms, mails = counters.read()
        if sms >= load.expected["sms"] and mails >= load.expected["email"]:
            return True
        await asyncio.sleep(0.5)  # a poll with a deadline: the providers' own records
    return False


async def _step(
    stack: Stack, counters: Counters, rate: float, owed: dict[str, int], seconds: float = STEP_S
) -> Step:
    t0 = time.monotonic()
    t0_wall = time.time()
    load = Load(
        stack.url("intake"),
        expect.templates(),
        cases=max(1, round(rate * seconds)),
        rate=rate,
        concurrency=max(32, int(rate)),
        t0=t0,
    )
    load.expected = dict(owed)  # the earlier steps' messages are counted too
    cases = await load.run()
    step = Step(rate, cases)
    step.posted_at = {c.case_id: _wall(c, t0_wall) for c in cases if c.case_id}
    step.drained = await _drain(counters, load, DRAIN_S)
    owed.update(load.expected)
    return step


def _latencies(step: Step, reached: dict[str, float]) -> list[float]:
    return [
        reached[case_id] - posted
        for case_id, posted in step.posted_at.items()
        if case_id in reached
    ]


def _spread(
    name: str, values: list[float], target: str = "", limit_s: float | None = None
) -> list[Figure]:
    """p50, p99 and max of one path, in ms; `limit_s` judges the p99."""
    p99 = percentile(values, 99)
    met = None if limit_s is None else bool(values) and p99 < limit_s
    return [
        Figure(f"{name} p50", percentile(values, 50) * 1000, "ms"),
        Figure(f"{name} p99", p99 * 1000, "ms", target, met),
        Figure(f"{name} max", max(values, default=float("nan")) * 1000, "ms"),
    ]


async def run(ctx: BenchContext) -> list[Figure]:
    del ctx  # a private stack of its own: the shared broker's namespace is not used
    stack = Stack(f"bench-{uuid.uuid4().hex[:6]}", 1)
    try:
        await stack.start()
        floor = await kafka_round_trip(stack)
        owed = {"sms": 0, "email": 0}
        counters = Counters(stack)
        # Unmeasured: the first cases meet cold connections, caches and query plans
        # (a fresh database's tables are empty when their statements are planned).
        await _step(stack, counters, WARM_UP_RATE, owed, seconds=WARM_UP_S)
        steps: list[Step] = []
        for rate in RATES:
            step = await _step(stack, counters, rate, owed)
            steps.append(step)
            step.sms = _latencies(step, _last_per_case(truth.sms(stack.sms_log), step))
            print(
                f"  rate {rate:>5.0f}/s: POST -> SMS p50 {percentile(step.sms, 50) * 1000:,.0f} "
                f"ms, p99 {percentile(step.sms, 99) * 1000:,.0f} ms"
                + ("" if step.drained else f", not drained within {DRAIN_S:.0f} s"),
                flush=True,
            )
            if not step.drained or percentile(step.sms, 99) > GIVE_UP_S:
                break
        sent = await _referral_sent(stack)
        mailed = truth.mails(stack.maildir)
        figures = [Figure("raw aiokafka produce -> consume, median [baseline]", floor * 1000, "ms")]
        for point, hops in HOPS.items():
            figures.append(Figure(f"  floor to {point}: x {hops} hops", floor * hops * 1000, "ms"))
        best = 0.0
        for step in steps:
            label = f"{step.rate:.0f} cases/s: POST ->"
            sms = step.sms
            mails = _latencies(step, _last_per_case(mailed, step))
            at_50 = step.rate == 50
            figures += _spread(f"{label} referral.sent on the topic", _latencies(step, sent))
            figures += _spread(
                f"{label} last SMS accepted",
                sms,
                "< 500 ms" if at_50 else "",
                0.5 if at_50 else None,
            )
            figures += _spread(f"{label} last e-mail accepted", mails)
            if not step.drained:
                figures.append(Figure(f"{label} not drained within {DRAIN_S:.0f} s", 0, ""))
            elif sms and percentile(sms, 99) < 1.0:
                best = max(best, step.rate)
        figures.append(
            Figure(
                "highest rate with POST -> SMS p99 under 1 s",
                best,
                "cases/s",
                ">= 150",
                best >= 150,
            )
        )
        return figures
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(stack.stop, None)
