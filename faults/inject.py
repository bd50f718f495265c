"""The faults, on a schedule over the run; each one recorded with when it started,
when it was undone and when the dependency answered again.

- `broker-kill`: SIGKILL of a broker (on three nodes, the leader of partition 0 of
  the cases topic, the busiest path), down `down_s`, then started again.
- `broker-pause`: SIGSTOP of a broker (three nodes: the leader of a referrals
  partition), `down_s`, then SIGCONT.
- `pg-restart`: `pg_ctl restart -m fast`.
- `pg-kill`: SIGKILL of the postmaster, down `down_s`, then started again.
- `service-kill:<name>`: SIGKILL of a service, down `down_s`, started again.
- `poison`: two records on the cases topic as the admin principal: a value that is
  not JSON, and a well-formed case.created whose ce_source is not intake's.

Each fault's own duration is a timed wait (that is the fault); what follows it (the
broker answering again) is polled with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from contracts.envelope import CloudEvent
from contracts.registry import service_source
from contracts.topics import Topic
from faults.expect import case_created
from faults.stack import SERVICES, Stack, wait_gone
from services.kit.kafka import admin_client

KINDS = (
    "broker-kill",
    "broker-pause",
    "pg-restart",
    "pg-kill",
    "poison",
    *(f"service-kill:{s}" for s in SERVICES),
)
# The dependency whose absence every service's /readyz must report.
DEPENDENCY_FAULTS = ("broker-kill", "broker-pause", "pg-restart", "pg-kill")


@dataclass(frozen=True)
class Spec:
    kind: str
    at: float  # seconds since the run's start
    down_s: float = 0.0


@dataclass
class Fault:
    kind: str
    target: str
    planned_at: float
    down_s: float
    started_at: float | None = None
    undone_at: float | None = None  # restart issued, SIGCONT sent
    ended_at: float | None = None  # the component answers again
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        if self.started_at is None or self.ended_at is None:
            return 0.0
        return self.ended_at - self.started_at

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "duration": round(self.duration, 2)}


class Injector:
    def __init__(
        self, stack: Stack, schedule: list[Spec], *, t0: float, gap_s: float = 5.0
    ) -> None:
        self.stack, self.schedule, self.t0 = stack, sorted(schedule, key=lambda s: s.at), t0
        self.gap_s = gap_s  # at least this long between one fault's end and the next
        self.faults: list[Fault] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def run(self) -> list[Fault]:
        ended = 0.0
        for spec in self.schedule:
            delay = max(spec.at, ended + self.gap_s) - self.now()
            if delay > 0:
                await asyncio.sleep(delay)  # the schedule: a timed wait
            fault = Fault(spec.kind, "", spec.at, spec.down_s)
            self.faults.append(fault)
            try:
                await self._apply(fault)
            except Exception as exc:  # recorded and reported; the run goes on
                fault.error = f"{exc.__class__.__name__}: {str(exc)[-800:]}"
                if fault.ended_at is None:
                    fault.ended_at = self.now()
            ended = fault.ended_at or self.now()
        return self.faults

    async def _apply(self, fault: Fault) -> None:
        kind = fault.kind
        if kind == "broker-kill":
            await self._broker(fault, Topic.CASES.value, signal.SIGKILL)
        elif kind == "broker-pause":
            await self._broker(fault, Topic.REFERRALS.value, signal.SIGSTOP)
        elif kind == "pg-restart":
            fault.target = "postgresql"
            fault.started_at = self.now()
            await asyncio.to_thread(self.stack.pg, "restart")
            fault.undone_at = fault.ended_at = self.now()
        elif kind == "pg-kill":
            fault.target = "postgresql"
            fault.detail["pid"] = int((await asyncio.to_thread(self.stack.pg, "pid")).strip())
            fault.started_at = self.now()
            await asyncio.to_thread(self.stack.pg, "kill")
            await asyncio.sleep(max(0.0, fault.started_at + fault.down_s - self.now()))
            fault.undone_at = self.now()
            await asyncio.to_thread(self.stack.pg, "start")
            fault.ended_at = self.now()
        elif kind.startswith("service-kill:"):
            service = kind.split(":", 1)[1]
            fault.target = service
            fault.started_at = self.now()
            fault.detail["pid"] = await asyncio.to_thread(self.stack.kill_service, service)
            await asyncio.sleep(max(0.0, fault.started_at + fault.down_s - self.now()))
            fault.undone_at = self.now()
            await asyncio.to_thread(self.stack.start_services)
            fault.ended_at = self.now()
        elif kind == "poison":
            fault.target = Topic.CASES.value
            fault.started_at = self.now()
            fault.detail = await self._poison()
            fault.undone_at = fault.ended_at = self.now()
        else:
            raise ValueError(f"unknown fault {kind!r}; expected one of {', '.join(KINDS)}")

    async def _broker(self, fault: Fault, topic: str, sig: signal.Signals) -> None:
        node = await self._leader(topic) if self.stack.nodes > 1 else 1
        pid = await asyncio.to_thread(self.stack.kafka_pid, node)
        if pid is None:
            raise RuntimeError(f"no pid for Kafka node {node}")
        fault.target = f"kafka node {node} (leader of {topic}-0)"
        fault.detail.update(node=node, pid=pid)
        fault.started_at = self.now()
        if sig is signal.SIGKILL:
            os.kill(pid, signal.SIGKILL)
            await asyncio.to_thread(wait_gone, pid)
            await asyncio.sleep(max(0.0, fault.started_at + fault.down_s - self.now()))
            fault.undone_at = self.now()
            await asyncio.to_thread(self.stack.kafka_start, node)
        else:
            os.kill(pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(fault.down_s)
            finally:
                os.kill(pid, signal.SIGCONT)
            fault.undone_at = self.now()
            await self._kafka_answers(timeout=120)
        fault.ended_at = self.now()

    async def _leader(self, topic: str) -> int:
        """The node that leads partition 0 of `topic` now."""
        admin = admin_client(self.stack.kafka(), "enlace-faults-leader")
        await asyncio.wait_for(admin.start(), 20)
        try:
            cluster = await asyncio.wait_for(admin.describe_cluster(), 20)
            ports = {b["node_id"]: b["port"] for b in cluster["brokers"]}
            (described,) = await asyncio.wait_for(admin.describe_topics([topic]), 20)
            leader = next(p["leader"] for p in described["partitions"] if p["partition"] == 0)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        node = self.stack.node_of_port(int(ports[leader]))
        if node is None:
            raise RuntimeError(f"leader {leader} of {topic}-0 is not a node of this stack")
        return node

    async def _kafka_answers(self, timeout: float) -> None:
        """Until an admin client gets the cluster's metadata back."""
        deadline = time.monotonic() + timeout
        while True:
            admin = admin_client(self.stack.kafka(), "enlace-faults-probe")
            try:
                await asyncio.wait_for(admin.start(), 5)
                await asyncio.wait_for(admin.describe_cluster(), 5)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
            finally:
                with contextlib.suppress(Exception):
                    await admin.close()
            await asyncio.sleep(0.5)

    async def _poison(self) -> dict[str, Any]:
        """A record that is not JSON and a case.created from a forged source, on the
        cases topic; returns where they landed and the forged case's id."""
        producer = AIOKafkaProducer(**self.stack.kafka().aiokafka(), client_id="enlace-faults")
        await producer.start()
        try:
            forged_case = str(uuid.uuid4())
            forged = CloudEvent(
                type="case.created",
                source=service_source("referral"),  # only intake may say a case exists
                subject=forged_case,
                data=case_created("piura", uuid.UUID(forged_case)).model_dump(mode="json"),
            )
            undecodable = CloudEvent(
                type="case.created",
                source=service_source("intake"),
                subject=str(uuid.uuid4()),
                data={},
            )
            landed: dict[str, Any] = {"forged_case_id": forged_case, "records": []}
            for name, event, value in (
                ("not-json", undecodable, b"\xff{not json"),
                ("forged-source", forged, forged.value()),
            ):
                meta = await producer.send_and_wait(
                    Topic.CASES.value, value=value, key=event.key, headers=event.headers()
                )
                landed["records"].append(
                    {
                        "name": name,
                        "event_id": event.id,
                        "partition": meta.partition,
                        "offset": meta.offset,
                    }
                )
            return landed
        finally:
            await producer.stop()


def spread(
    kinds: list[str], *, duration: float, lead: float, downs: dict[str, float]
) -> list[Spec]:
    """The faults one after another, evenly over the load's duration after `lead`."""
    if not kinds:
        return []
    gap = max(0.0, duration - lead) / len(kinds)
    return [
        Spec(kind, lead + i * gap, downs.get(kind.split(":")[0], downs.get(kind, 0.0)))
        for i, kind in enumerate(kinds)
    ]


def describe(faults: list[Fault]) -> str:
    return orjson.dumps([f.as_dict() for f in faults]).decode()
