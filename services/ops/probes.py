"""What operations asks each service over HTTP: its /readyz document (ready or not,
each loop's state) and, from its /metrics, the outbox backlog and the age of the
oldest outbox row. Bounded in time: a service that does not answer is shown as
unreachable, never waited for."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.ops.domain import LoopState, ServiceHealth

BACKLOG = "enlace_outbox_backlog"
OLDEST_AGE = "enlace_outbox_oldest_age_seconds"


def outbox_figures(metrics_text: str) -> tuple[float | None, float | None]:
    """(backlog, oldest row's age in seconds) from a Prometheus text exposition."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name in (BACKLOG, OLDEST_AGE):
                found[sample.name] = sample.value
    return found.get(BACKLOG), found.get(OLDEST_AGE)


async def probe(client: httpx.AsyncClient, service: str, url: str, timeout: float) -> ServiceHealth:
    base = url.rstrip("/")
    try:
        ready, metrics = await asyncio.gather(
            client.get(f"{base}/readyz", timeout=timeout),
            client.get(f"{base}/metrics", timeout=timeout),
        )
        document = ready.json()
        backlog, age = outbox_figures(metrics.text) if metrics.status_code == 200 else (None, None)
        loops = {
            name: LoopState(
                status=str(view.get("status", "unknown")),
                needed=bool(view.get("needed", True)),
                restarts=int(view.get("restarts", 0)),
                last_error=view.get("last_error"),
            )
            for name, view in dict(document.get("loops", {})).items()
        }
        return ServiceHealth(
            service=service,
            url=url,
            reachable=True,
            ready=ready.status_code == 200 and document.get("status") == "ready",
            checks={k: bool(v) for k, v in dict(document.get("checks", {})).items()},
            loops=loops,
            outbox_backlog=backlog,
            outbox_oldest_age_seconds=age,
        )
    except Exception as exc:  # unreachable, timed out, not our /readyz
        return ServiceHealth(
            service=service,
            url=url,
            reachable=False,
            ready=False,
            checks={},
            loops={},
            outbox_backlog=None,
            outbox_oldest_age_seconds=None,
            error=exc.__class__.__name__,
        )


async def probe_all(
    client: httpx.AsyncClient, services: dict[str, str], timeout: float
) -> list[ServiceHealth]:
    return list(await asyncio.gather(*(probe(client, s, u, timeout) for s, u in services.items())))
