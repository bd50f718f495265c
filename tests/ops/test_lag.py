"""The lag operations shows is the real lag: a consumer group held back on purpose
(committed at a known offset, then N more records per partition) is reported with
exactly N per partition, in total, in the sampled history and in the metric."""

from __future__ import annotations

import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from contracts.topics import Topic, namespaced
from services.kit.kafka import admin_client
from tests.helpers import auth, poll_until
from tests.infra import Infra
from tests.ops.conftest import Kafka, Ops

TOPIC = Topic.NOTIFICATIONS.value  # nothing else writes it in this package
MORE = {0: 3, 1: 1, 2: 4}  # records produced after the commit, per partition
HEADERS = [("ce_type", b"test.lag")]  # a type no consumer handles: skipped, not refused


def lag_metric(text: str, group: str) -> dict[int, float]:
    out: dict[int, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = s.labels
            if s.name == "enlace_consumer_lag" and (labels["group"], labels["topic"]) == (
                group,
                TOPIC,
            ):
                out[int(labels["partition"])] = s.value
    return out


async def test_the_lag_shown_is_the_real_lag_of_a_consumer_held_back(
    infra: Infra, namespace: str, kafka: Kafka, ops: Ops
) -> None:
    name = namespaced(namespace, TOPIC)
    group = f"enlace-ops.{namespace}-held-back-{uuid.uuid4().hex[:6]}"
    for partition in MORE:  # something before the commit too
        await kafka.send(TOPIC, b"{}", HEADERS, partition=partition)
    held = AIOKafkaConsumer(**infra.kafka().aiokafka(), group_id=group, enable_auto_commit=False)
    await held.start()
    try:
        tps = [TopicPartition(name, p) for p in MORE]
        held.assign(tps)
        committed_at = await held.end_offsets(tps)
        await held.commit(dict(committed_at))  # consumed up to here, not one record more
    finally:
        await held.stop()
    for partition, count in MORE.items():
        for _ in range(count):
            await kafka.send(TOPIC, b"{}", HEADERS, partition=partition)

    # The real lag, read independently as the admin: end offset - committed offset.
    admin = admin_client(infra.kafka())
    await admin.start()
    reader = AIOKafkaConsumer(**infra.kafka().aiokafka(), enable_auto_commit=False)
    await reader.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        ends = await reader.end_offsets(tps)
    finally:
        await admin.close()
        await reader.stop()
    real = {tp.partition: ends[tp] - committed[tp].offset for tp in tps}
    assert real == MORE

    async def shown() -> dict[str, object]:
        answer = await ops.client.get(
            "/v1/ops/lag", params={"group": group, "topic": TOPIC}, headers=auth("enlace-ops")
        )
        assert answer.status_code == 200, answer.text
        lags: list[dict[str, object]] = answer.json()["lag"]
        return lags[0] if lags else {}

    now = await poll_until(shown, lambda g: g.get("lag") == sum(MORE.values()), what="lag 8")
    partitions = {p["partition"]: p for p in now["partitions"]}  # type: ignore[attr-defined]
    assert {p: row["lag"] for p, row in partitions.items()} == real
    assert {p: row["committed"] for p, row in partitions.items()} == {
        tp.partition: off for tp, off in committed_at.items()
    }

    async def metric() -> dict[int, float]:
        return lag_metric((await ops.client.get("/metrics")).text, group)

    await poll_until(metric, lambda m: m == {p: float(n) for p, n in real.items()}, what="metric")

    async def history() -> list[dict[str, Any]]:
        answer = await ops.client.get(
            "/v1/ops/lag/history",
            params={"group": group, "topic": TOPIC},
            headers=auth("enlace-ops"),
        )
        assert answer.status_code == 200, answer.text
        points: list[dict[str, Any]] = answer.json()["points"]
        return points

    points = await poll_until(history, lambda ps: bool(ps) and ps[-1]["lag"] == 8, what="history")
    assert all(0 <= p["lag"] <= 8 for p in points)  # samples taken while it grew

    # A bad query names the fields.
    missing = await ops.client.get("/v1/ops/lag/history", headers=auth("enlace-ops"))
    assert missing.status_code == 422
    assert {e["field"] for e in missing.json()["errors"]} == {"query.group", "query.topic"}
