"""The kit's one retry schedule: exponential backoff with equal jitter.

Every loop that retries after a failure (the outbox relay, the consumer's retries,
the subscribers' reconnection, the follow-up timers, the delivery worker's claim
loop) and every retry stored for later (a notification's next attempt) takes its
delay from here, so they all back off the same way and are tuned in one place.

Written here rather than taken from tenacity or stamina: those libraries own the
control flow (a decorator or an iterator of attempts), while these loops must also
wake early on shutdown, reset after a success, and sometimes store the delay in the
database instead of sleeping it. What they share is the arithmetic, which is this.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

Jitter = Callable[[float, float], float]


def delay_for(attempt: int, *, base: float, cap: float, rng: Jitter = random.uniform) -> float:
    """Delay after failed attempt number `attempt` (1-based): between half and all of
    min(cap, base * 2^(attempt-1)) seconds ("equal jitter")."""
    ceiling = min(cap, base * (2.0 ** max(0, attempt - 1)))
    return ceiling / 2 + rng(0.0, ceiling / 2)


def scheduled_delay(
    attempt: int, schedule: tuple[float, ...], *, spread: float = 0.2, rng: Jitter = random.uniform
) -> float | None:
    """Delay after failed attempt number `attempt` (1-based) on a fixed schedule (the
    Standard Webhooks retry table), spread by +/- `spread` so that many deliveries
    failing together do not come back together; None once the schedule is spent."""
    if attempt < 1 or attempt > len(schedule):
        return None
    nominal = schedule[attempt - 1]
    return max(0.0, nominal * (1.0 + rng(-spread, spread)))


class Backoff:
    """A loop's position in the schedule: `next_delay()` after each failure,
    `reset()` after a success."""

    def __init__(self, base: float, cap: float, *, rng: Jitter = random.uniform) -> None:
        if base <= 0 or cap < base:
            raise ValueError("backoff needs 0 < base <= cap")
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng = rng

    def next_delay(self) -> float:
        self.failures += 1
        return delay_for(self.failures, base=self.base, cap=self.cap, rng=self._rng)

    def reset(self) -> None:
        self.failures = 0


async def pause(seconds: float, *events: asyncio.Event) -> None:
    """Wait `seconds`, or less when any of `events` is set (a wake-up, a shutdown)."""
    if any(event.is_set() for event in events):
        return
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        if waiters:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        else:
            await asyncio.sleep(seconds)
    finally:
        for waiter in waiters:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter


T = TypeVar("T")


class Stopped(Exception):
    """`until_done` gave up because the service is stopping."""


async def until_done(
    step: Callable[[], Awaitable[T]],
    *,
    backoff: Backoff,
    stopping: asyncio.Event,
    on_error: Callable[[Exception], None],
) -> T:
    """Run `step` until it succeeds, backing off between failures (`on_error` hears
    each one); raises `Stopped` instead of waiting once `stopping` is set. For work
    that must not be skipped, such as writing a dead letter before moving on."""
    while True:
        try:
            return await step()
        except Exception as exc:
            on_error(exc)
            if stopping.is_set():
                raise Stopped from exc
            await pause(backoff.next_delay(), stopping)
