"""Garbage-collector pauses: measured, and kept short.

A full (generation 2) collection walks every tracked object, and a service's heap is
mostly what start-up built (modules, the FastAPI app, pydantic models, templates)
and will never free. On a busy two-core machine such a walk took 100 to 225 ms,
during which the event loop stood still: every message in flight waited (the tail
of the pipeline bench). `settle()` collects once after start-up, then freezes what
is left into the permanent generation, which collections skip; collections then
walk only what the service allocated since. `GcPauses` exports each collection's
length by generation, so a stall of this kind shows in the metrics."""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import CollectorRegistry, Histogram


def settle() -> None:
    gc.collect()
    gc.freeze()


class GcPauses:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.pauses = Histogram(
            "enlace_gc_pause_seconds",
            "Garbage-collector pauses (the event loop stands still meanwhile)",
            ["generation"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=registry,
        )
        # Bound once: a young collection runs hundreds of times a second under load.
        self._by_generation = [self.pauses.labels(str(g)) for g in range(3)]
        self._started = 0.0

    def _observe(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started:
            generation = int(info.get("generation", 2))
            self._by_generation[generation].observe(time.perf_counter() - self._started)

    def install(self) -> None:
        if self._observe not in gc.callbacks:
            gc.callbacks.append(self._observe)

    def remove(self) -> None:
        if self._observe in gc.callbacks:
            gc.callbacks.remove(self._observe)
