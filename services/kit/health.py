"""/healthz, /readyz and /metrics of every service.

- `/healthz` (liveness): 503 when a background loop has stayed crashed longer than
  the supervisor's bound, so an orchestrator restarts the process. A database or a
  broker being down does not fail it: restarting would not bring them back.
- `/readyz` (readiness): 200 only when the database and Kafka really answer and every
  loop the replica needs is running and not failing; the body shows each check and
  each loop's state, so an operator sees which loop is down and why.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Literal

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

if TYPE_CHECKING:
    from services.kit.runtime import ServiceRuntime


class LoopView(BaseModel):
    status: Literal["running", "failing", "restarting", "stopped"]
    needed: bool
    restarts: int
    last_error: str | None


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, bool]
    loops: dict[str, LoopView]


class Liveness(BaseModel):
    status: Literal["ok", "dead"]
    service: str
    dead_loops: list[str]


def health_router(runtime: ServiceRuntime) -> APIRouter:
    router = APIRouter(tags=["operations"])
    service = runtime.settings.service_name

    @router.get(
        "/healthz",
        summary="The process is alive: no background loop stayed dead",
        response_model=Liveness,
        responses={
            503: {
                "description": "A background loop could not be restarted within the "
                "bound: restart the process",
                "model": Liveness,
            }
        },
    )
    async def healthz(response: Response) -> dict[str, object]:
        dead = runtime.supervisor.dead()
        response.status_code = 503 if dead else 200
        return {"status": "dead" if dead else "ok", "service": service, "dead_loops": dead}

    @router.get(
        "/readyz",
        summary="Database and Kafka really reachable, every needed loop working",
        response_model=Readiness,
        responses={
            503: {
                "description": "Not ready: the same document, whose checks and loops say "
                "what is missing (for orchestrators: the status is the answer, not a problem)",
                "model": Readiness,
            }
        },
    )
    async def readyz(response: Response) -> dict[str, object]:
        database, kafka = await asyncio.gather(
            runtime.database_reachable(), runtime.kafka_reachable()
        )
        loops = runtime.supervisor.ready()
        # Connected means the consumer groups are joined: until then nothing is consumed.
        subscribers = runtime.broker_connected or not runtime.subscriptions
        ready = database and kafka and loops and subscribers
        response.status_code = 200 if ready else 503
        return {
            "status": "ready" if ready else "not ready",
            "checks": {
                "database": database,
                "kafka": kafka,
                "loops": loops,
                "subscribers": subscribers,
                "outbox_relay_leader": bool(runtime.relay and runtime.relay.is_leader),
            },
            "loops": runtime.supervisor.view(),
        }

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
    )
    async def metrics() -> Response:
        if runtime.relay is not None:
            with contextlib.suppress(Exception):
                await runtime.relay.backlog()
        return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router
