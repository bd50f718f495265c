"""Background loops never die silently: the relay survives the error that once stalled
it for minutes, a crashing loop is restarted with backoff, /readyz says 503 and which
loop is down while it is, and /healthz fails once a loop stays dead past the bound."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from asyncpg.exceptions._base import InternalClientError

from contracts.envelope import CloudEvent
from contracts.topics import Topic
from services.kit.outbox import enqueue
from services.kit.runtime import ServiceRuntime, service_app
from services.kit.supervision import LoopStatus, Supervisor, loop_health
from tests.helpers import TopicReader, poll_until
from tests.infra import Infra
from tests.kit.conftest import toy_settings


class FailingFirstFetch:
    """The relay's pool, whose next `fetch` fails as asyncpg did after a fast
    PostgreSQL restart; everything else is the real pool."""

    def __init__(self, pool: Any, failures: int) -> None:
        self._pool, self.failures = pool, failures

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise InternalClientError(
                "cannot switch to state 15; another operation (2) is in progress"
            )
        return await self._pool.fetch(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


class Crashing:
    """A worker that crashes at every start until told to work."""

    def __init__(self) -> None:
        self.starts = 0
        self.healthy = asyncio.Event()

    async def crashing_worker(self, runtime: ServiceRuntime) -> None:
        self.starts += 1
        if not self.healthy.is_set():
            raise RuntimeError("a bug in the loop")
        loop_health().ok()
        await runtime.stopping.wait()


@pytest.fixture
async def runtime(
    infra: Infra, namespace: str, databases: Callable[..., Any]
) -> AsyncIterator[tuple[ServiceRuntime, Crashing]]:
    crashing = Crashing()
    settings = toy_settings(
        infra,
        namespace,
        await databases("supervised", role="intake"),
        loop_restart_max_seconds=0.2,
        loop_dead_after_seconds=1.0,
    )
    runtime = ServiceRuntime(settings, workers=[crashing.crashing_worker])
    await runtime.start()
    try:
        yield runtime, crashing
    finally:
        await runtime.stop()


async def test_the_relay_survives_a_connection_lost_mid_query(
    runtime: tuple[ServiceRuntime, Crashing], topics: TopicReader
) -> None:
    """The stall: after `pg_ctl restart -m fast` the relay died on asyncpg's
    InternalClientError, and registered cases sat unpublished until a manual restart."""
    service, _ = runtime
    assert service.relay is not None
    await poll_until(
        lambda: asyncio.sleep(0, service.relay and service.relay.is_leader), what="leader"
    )
    service.relay._pool = FailingFirstFetch(service.relay._pool, failures=2)  # type: ignore[assignment]
    case = str(uuid.uuid4())
    event = CloudEvent(type="toy.happened", source="/toy", subject=case, data={"n": 1})
    async with service.pool.acquire() as conn, conn.transaction():
        await enqueue(conn, Topic.NOTIFICATIONS, event)
    (published,) = await topics.for_case(Topic.NOTIFICATIONS, case, 1, timeout=30)
    assert published.headers["ce_id"] == event.id
    assert service.supervisor.loops["outbox-relay"].status is LoopStatus.RUNNING


async def test_a_crashing_loop_is_restarted_and_readiness_and_liveness_say_so(
    runtime: tuple[ServiceRuntime, Crashing],
) -> None:
    service, crashing = runtime
    app = service_app(service, title="toy", description="toy")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://toy") as http:
        await poll_until(
            lambda: asyncio.sleep(0, crashing.starts), lambda n: n >= 3, what="restarts"
        )
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        loop = ready.json()["loops"]["crashing_worker"]
        assert loop["status"] == "restarting"
        assert loop["restarts"] >= 2
        assert loop["last_error"] == "RuntimeError"
        # Down for longer than the bound (1 s here): the process must be restarted.
        dead = await poll_until(
            lambda: http.get("/healthz"), lambda r: r.status_code == 503, what="healthz 503"
        )
        assert dead.json()["dead_loops"] == ["crashing_worker"]

        crashing.healthy.set()  # the next restart works
        await poll_until(
            lambda: http.get("/readyz"), lambda r: r.status_code == 200, what="ready again"
        )
        alive = await http.get("/healthz")
        assert alive.status_code == 200
        assert alive.json()["dead_loops"] == []


async def test_a_loop_that_returns_or_cancels_itself_is_restarted() -> None:
    stopping = asyncio.Event()
    supervisor = Supervisor(stopping, restart_base=0.01, restart_cap=0.02)
    runs: list[str] = []

    async def returns() -> None:
        runs.append("returns")

    async def cancels_itself() -> None:
        runs.append("cancels")
        raise asyncio.CancelledError("not a cancellation of the task")

    supervisor.spawn("returns", returns)
    supervisor.spawn("cancels", cancels_itself)
    await poll_until(
        lambda: asyncio.sleep(0, runs),
        lambda r: r.count("returns") >= 3 and r.count("cancels") >= 3,
        what="both loops restarted",
    )
    assert supervisor.loops["cancels"].last_error == "CancelledError"
    stopping.set()
    await supervisor.stop(grace=2)
    assert {s.status for s in supervisor.loops.values()} == {LoopStatus.STOPPED}


async def test_liveness_forgives_a_crash_once_the_loop_has_run_stably() -> None:
    now = [1000.0]
    stopping = asyncio.Event()
    supervisor = Supervisor(
        stopping,
        restart_base=0.01,
        restart_cap=0.02,
        dead_after=60,
        stable_after=30,
        monotonic=lambda: now[0],
    )
    crashes = [1]

    async def flaky() -> None:
        if crashes[0] > 0:
            crashes[0] -= 1
            raise RuntimeError("once")
        await stopping.wait()

    supervisor.spawn("flaky", flaky)
    state = supervisor.loops["flaky"]
    await poll_until(lambda: asyncio.sleep(0, state.restarts), lambda n: n == 1, what="a crash")
    await poll_until(
        lambda: asyncio.sleep(0, state.status), lambda s: s is LoopStatus.RUNNING, what="rerun"
    )
    now[0] += 61  # a minute later: it has been running since, so it is not dead
    assert supervisor.dead() == []
    assert state.crashed_since is None
    stopping.set()
    await supervisor.stop(grace=2)


async def test_readiness_answers_within_its_bound_when_kafka_hangs(
    infra: Infra, namespace: str, databases: Callable[..., Any]
) -> None:
    """A paused broker accepts connections and never answers: /readyz must still
    answer "not ready" before an orchestrator's probe (1 s by default) gives up."""
    accepted: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    hole = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = hole.sockets[0].getsockname()[1]
    settings = toy_settings(infra, namespace, await databases("hanging", role="intake"))
    settings = settings.model_copy(
        update={"kafka_bootstrap_servers": f"127.0.0.1:{port}", "readiness_timeout_seconds": 0.5}
    )
    runtime = ServiceRuntime(settings)
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        assert await runtime.kafka_reachable() is False
        assert loop.time() - started < 1.0
        assert accepted, "the probe never reached the hanging broker"
    finally:
        hole.close()
        for writer in accepted:
            writer.close()
