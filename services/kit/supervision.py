"""Supervision of a service's background loops: the outbox relay, the Kafka
subscribers, the timers, the delivery worker, the directory followers, pruning.

Each loop runs in a task of its own under `Supervisor`. A loop is meant to run until
the service stops; when it ends or raises anything else, the supervisor logs what
died and starts it again on the kit's backoff schedule. Nothing a loop meets can
leave it dead with the process still answering "ready".

A loop also says how it is doing, through `loop_health()` (a context variable, so the
tasks a loop starts, such as FastStream's consumer tasks, report for it too):
`failing(reason)` while it cannot do its work (database or broker down), `ok()` once it
works again. From that:

- `ready()`: every loop the replica needs is running and not failing (`/readyz`).
- `dead()`: the loops that stayed crashed for longer than `dead_after` seconds
  (`/healthz`, so an orchestrator restarts a process whose loop cannot come back).
  A loop that crashes again at each start stays "crashed" from its first crash
  until it has run `stable_after` seconds or reported `ok()`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from services.kit.backoff import Backoff, pause
from services.kit.event_errors import describe_error
from services.kit.logging import get_logger

log = get_logger(__name__)

Monotonic = Callable[[], float]


class LoopStatus(StrEnum):
    RUNNING = "running"
    FAILING = "failing"  # running, but cannot do its work (a dependency is down)
    RESTARTING = "restarting"  # died; waiting to start again
    STOPPED = "stopped"


@dataclass
class LoopState:
    name: str
    needed: bool
    status: LoopStatus = LoopStatus.RUNNING
    restarts: int = 0
    last_error: str | None = None
    started_at: float = 0.0
    crashed_since: float | None = None  # first crash not yet followed by a stable run

    def view(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "needed": self.needed,
            "restarts": self.restarts,
            "last_error": self.last_error,
        }


class LoopHealth:
    """What a loop reports about itself; see the module docstring."""

    def __init__(self, state: LoopState) -> None:
        self.state = state

    def ok(self) -> None:
        self.state.crashed_since = None
        if self.state.status is LoopStatus.FAILING:
            log.info("background loop working again", loop=self.state.name)
        self.state.status = LoopStatus.RUNNING

    def failing(self, reason: str) -> None:
        if self.state.status is not LoopStatus.FAILING:
            log.warning("background loop cannot do its work", loop=self.state.name, reason=reason)
        self.state.status = LoopStatus.FAILING
        self.state.last_error = reason


_detached = LoopHealth(LoopState("detached", needed=False))
_current: ContextVar[LoopHealth] = ContextVar("loop_health", default=_detached)


def loop_health() -> LoopHealth:
    """The health handle of the loop running this code (a no-op outside any loop)."""
    return _current.get()


class Supervisor:
    def __init__(
        self,
        stopping: asyncio.Event,
        *,
        restart_base: float = 0.5,
        restart_cap: float = 15.0,
        dead_after: float = 60.0,
        stable_after: float = 30.0,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        self._stopping = stopping
        self._restart_base = restart_base
        self._restart_cap = restart_cap
        self.dead_after = dead_after
        self._stable_after = stable_after
        self._now = monotonic
        self.loops: dict[str, LoopState] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def spawn(self, name: str, body: Callable[[], Awaitable[None]], *, needed: bool = True) -> None:
        """Run `body()` (a fresh call at each restart) until the service stops."""
        if name in self.loops:
            raise ValueError(f"a loop named {name!r} is already supervised")
        state = LoopState(name, needed)
        self.loops[name] = state
        self.tasks.append(asyncio.create_task(self._supervise(state, body), name=name))

    async def _supervise(self, state: LoopState, body: Callable[[], Awaitable[None]]) -> None:
        health = LoopHealth(state)
        _current.set(health)  # this task's context: inherited by the tasks the loop starts
        backoff = Backoff(min(self._restart_base, self._restart_cap), self._restart_cap)
        while not self._stopping.is_set():
            state.status, state.started_at = LoopStatus.RUNNING, self._now()
            try:
                await body()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._stopping.is_set() or (task is not None and task.cancelling()):
                    break
                error = "CancelledError"  # raised by the loop itself, not a cancellation
            except Exception as exc:
                error = describe_error(exc)
                if self._stopping.is_set():
                    log.warning(
                        "background loop ended with an error while stopping",
                        loop=state.name,
                        error=error,
                    )
                    break
                log.error("background loop died", loop=state.name, error=error, exc_info=exc)
            else:
                if self._stopping.is_set():
                    break
                error = "returned"  # a loop ends only when the service stops
                log.error("background loop ended on its own", loop=state.name)
            if self._now() - state.started_at >= self._stable_after:
                backoff.reset()
                state.crashed_since = None
            state.restarts += 1
            state.last_error = error
            state.status = LoopStatus.RESTARTING
            if state.crashed_since is None:
                state.crashed_since = self._now()
            delay = backoff.next_delay()
            log.warning("background loop restarting", loop=state.name, restart_in=round(delay, 2))
            await pause(delay, self._stopping)
        state.status = LoopStatus.STOPPED

    async def stop(self, grace: float) -> None:
        """After `stopping` is set: wait up to `grace` seconds, then cancel what is left."""
        if not self.tasks:
            return
        _, pending = await asyncio.wait(self.tasks, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)

    # --- what /readyz and /healthz say ----------------------------------------------

    def ready(self) -> bool:
        return all(s.status is LoopStatus.RUNNING for s in self.loops.values() if s.needed)

    def dead(self) -> list[str]:
        """Loops that stayed crashed for longer than `dead_after` seconds."""
        now = self._now()
        out = []
        for s in self.loops.values():
            if s.crashed_since is None:
                continue
            if s.status is not LoopStatus.RESTARTING and now - s.started_at >= self._stable_after:
                s.crashed_since = None  # it has run long enough since its last crash
                continue
            if now - s.crashed_since > self.dead_after:
                out.append(s.name)
        return out

    def view(self) -> dict[str, dict[str, Any]]:
        return {name: s.view() for name, s in self.loops.items()}
