"""The callers: cases registered through intake's HTTP API at a steady rate with
bounded concurrency, as a partner's integration would: each case has its own
Idempotency-Key and is retried with it (same body) after an error or a timeout until
intake answers 201 (or 200, a replay of a registration that had gone through), so
that every case ends registered once and its expectation is known. Every attempt's
status and latency is recorded: the report counts the callers' errors per fault."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from faults.expect import Template
from services.kit.backoff import Backoff
from tests.helpers import auth

# Statuses a caller retries (with the same key and body); anything else is final.
RETRIED = {408, 409, 425, 429, 500, 502, 503, 504}


@dataclass
class Attempt:
    started: float  # seconds since the run's start
    ended: float
    status: int | None  # None: no answer (refused connection, timeout)
    error: str | None = None  # the exception's class (no answer) or the problem's title


@dataclass
class Case:
    index: int
    template: str
    key: str  # Idempotency-Key
    attempts: list[Attempt] = field(default_factory=list)
    case_id: str | None = None
    reference: str | None = None
    accepted_at: float | None = None

    @property
    def accepted(self) -> bool:
        return self.case_id is not None

    @property
    def first_status(self) -> int | None:
        return self.attempts[0].status if self.attempts else None

    @property
    def latency(self) -> float | None:
        """From the first attempt to the answer that registered it."""
        if self.accepted_at is None or not self.attempts:
            return None
        return self.accepted_at - self.attempts[0].started


class Load:
    """Registers `cases` cases, alternating the templates, `rate` per second."""

    def __init__(
        self,
        url: str,
        templates: dict[str, Template],
        *,
        cases: int,
        rate: float,
        concurrency: int = 32,
        t0: float,
        give_up_s: float = 240.0,
    ) -> None:
        self.url = url.rstrip("/") + "/v1/cases"
        self.templates = list(templates.values())
        self.count, self.rate, self.concurrency = cases, rate, concurrency
        self.t0, self.give_up_s = t0, give_up_s
        self.cases: list[Case] = []
        self.accepted = 0  # read by the sampler
        # idem: messages the accepted cases must cause, per channel
        self.expected: dict[str, int] = {"sms": 0, "email": 0}
        self.finished_at: float | None = None

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def run(self) -> list[Case]:
        gate = asyncio.Semaphore(self.concurrency)
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=16)
        start = self.now()
        async with httpx.AsyncClient(timeout=10.0, limits=limits) as client:
            tasks: list[asyncio.Task[None]] = []
            for index in range(self.count):
                # The pace itself is a timed wait: case i leaves at start + i / rate.
                delay = start + index / self.rate - self.now()
                if delay > 0:
                    await asyncio.sleep(delay)
                await gate.acquire()
                template = self.templates[index % len(self.templates)]
                case = Case(index, template.name, str(uuid.uuid4()))
                self.cases.append(case)
                task = asyncio.create_task(self._register(client, case, template, gate))
                tasks.append(task)
            await asyncio.gather(*tasks)
        self.finished_at = self.now()
        return self.cases

    async def _register(
        self, client: httpx.AsyncClient, case: Case, template: Template, gate: asyncio.Semaphore
    ) -> None:
        try:
            body = template.body(case.index)
            headers = {**auth(template.agency_id), "Idempotency-Key": case.key}
            # The kit's schedule without jitter: 0.25, 0.5, 1, 2, 2... s between retries.
            backoff = Backoff(0.25, 2.0, rng=lambda _low, high: high)
            while True:
                started = self.now()
                status, answer, error = await self._post(client, body, headers)
                case.attempts.append(Attempt(started, self.now(), status, error))
                if status in (200, 201) and answer is not None:
                    case.case_id, case.reference = answer["case_id"], answer["reference"]
                    case.accepted_at = self.now()
                    self.accepted += 1
                    for message in template.messages:
                        self.expected[message.channel] += 1
                    return
                retried = status is None or status in RETRIED
                if not retried or self.now() - case.attempts[0].started > self.give_up_s:
                    return
                # A caller's back-off between retries (a timed wait, not a poll).
                await asyncio.sleep(backoff.next_delay())
        finally:
            gate.release()

    async def _post(
        self, client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int | None, dict[str, Any] | None, str | None]:
        try:
            answer = await client.post(self.url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            return None, None, exc.__class__.__name__
        if answer.status_code in (200, 201):
            payload: dict[str, Any] = answer.json()
            return answer.status_code, payload, None
        title = None
        with contextlib.suppress(ValueError, AttributeError):
            title = str(answer.json().get("title"))[:80]  # a problem's title: no request data
        return answer.status_code, None, title


def plan_rate(cases: int, rate: float, faults: int, slot_s: float, lead_s: float = 10.0) -> float:
    """The rate at which the load lasts long enough for every fault to have its slot
    (and a lead before the first): `rate` if that is slow enough, else slower."""
    needed = lead_s + faults * slot_s
    return min(rate, cases / needed) if needed > 0 else rate
