"""Shared shapes for `make bench` sections.

Each section is `async def section(ctx: BenchContext) -> list[Figure]` and runs
against the real local Kafka and PostgreSQL in a namespace of its own.

Kafka is the local broker as every client sees it (SASL_SSL, SCRAM-SHA-512, ACLs of
deploy/kafka-access.yaml): the bench creates topics and observes them as the admin,
as the scripts do, and each service it runs connects as its own principal, with a
consumer group its ACL admits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from contracts.registry import producer_source, to_cloud_event
from services.kit.kafka import KafkaClient
from services.kit.settings import REPO_ROOT


@dataclass(frozen=True)
class BenchContext:
    kafka: KafkaClient  # the admin: topics, ACLs and the bench's own watchers
    namespace: str  # topics and their ACL grants already made in it
    make_database: Callable[[str], Awaitable[str]]  # service name -> DSN of a fresh database
    service_kafka: Callable[[str], KafkaClient]  # service name -> client as its principal

    def consumer_group(self, service: str) -> str:
        """A group of this namespace that the service's ACL admits (`enlace-<service>`)."""
        return f"enlace-{service}.{self.namespace}-{uuid.uuid4().hex[:6]}"

    def settings(self, service: str) -> dict[str, Any]:
        """Keyword arguments of a service's settings built in-process: the local
        profile, this namespace, and the service's own Kafka principal."""
        kafka = self.service_kafka(service)
        return {
            "env": "local",
            "kafka_bootstrap_servers": kafka.bootstrap,
            "kafka_security_protocol": kafka.security_protocol,
            "kafka_sasl_mechanism": kafka.sasl_mechanism,
            "kafka_sasl_username": kafka.username,
            "kafka_sasl_password": kafka.password,
            "kafka_ssl_cafile": kafka.cafile,
            "topic_namespace": self.namespace,
            "consumer_group": self.consumer_group(service),
        }

    def env(self, service: str) -> dict[str, str]:
        """The same for a service started as its own process."""
        return {
            **os.environ,
            **self.service_kafka(service).as_env(),
            "ENLACE_ENV": "local",
            "ENLACE_TOPIC_NAMESPACE": self.namespace,
            "ENLACE_CONSUMER_GROUP": self.consumer_group(service),
        }


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    target: str = ""  # e.g. ">= 500 cases/s"
    met: bool | None = None

    def line(self) -> str:
        verdict = (
            "" if self.met is None else ("  [target met]" if self.met else "  [TARGET MISSED]")
        )
        target = f"  (target {self.target})" if self.target else ""
        return f"{self.name:<58} {self.value:>12,.1f} {self.unit:<10}{target}{verdict}"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


@contextlib.asynccontextmanager
async def module_process(
    *args: str, port: int, env: dict[str, str] | None = None
) -> AsyncIterator[None]:
    """`python -m <args>` as its own process, until it listens on `port`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        *args,
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.returncode is not None:
                    raise RuntimeError(f"{args[0]} did not start") from None
                await asyncio.sleep(0.05)
        yield
    finally:
        proc.terminate()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), timeout=5)


async def publish_events(producer: Any, topic: str, events: list[Any]) -> None:
    """Publish contract events as their producing service does (binary CloudEvents,
    keyed by case, the type's own ce_source), all sends in flight at once."""
    sends = []
    for data in events:
        event = to_cloud_event(data, source=producer_source(data.event_type))
        sends.append(
            await producer.send(topic, key=event.key, value=event.value(), headers=event.headers())
        )
    await asyncio.gather(*sends)


class Sequenced:
    """Publishes events made by `make(n)` for n = 1, 2, ... across calls."""

    def __init__(self, producer: Any, topic: str, make: Callable[[int], Any]) -> None:
        self.producer, self.topic, self.make = producer, topic, make
        self.count = 0

    async def publish(self, count: int) -> None:
        events = [self.make(self.count + n + 1) for n in range(count)]
        self.count += count
        await publish_events(self.producer, self.topic, events)
