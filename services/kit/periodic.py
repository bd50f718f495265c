"""A background loop that does one step every so often: the step's success or
failure is the loop's health (`enlace_loop_up`, /readyz), a failure is logged and
tried again at the next period. By default only a transient failure (the database
or Kafka away) is waited out; anything else ends the step's loop, and the
supervisor logs it and starts it again. `retry_any` waits out every failure (a
sampler whose step touches many things, none of them its own state)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from services.kit.event_errors import describe_error
from services.kit.logging import get_logger
from services.kit.runtime import ServiceRuntime
from services.kit.supervision import loop_health
from services.kit.transient import is_transient

log = get_logger(__name__)


async def run_every(
    runtime: ServiceRuntime,
    seconds: float,
    step: Callable[[], Awaitable[None]],
    *,
    what: str,
    retry_any: bool = False,
) -> None:
    """Run `step` now and then every `seconds` until the service stops."""
    while not runtime.stopping.is_set():
        try:
            await step()
            loop_health().ok()
        except Exception as exc:
            if not (retry_any or is_transient(exc)):
                raise
            loop_health().failing(describe_error(exc))
            log.warning(f"{what} failed", error=describe_error(exc))
        if await runtime.sleep(seconds):
            return
