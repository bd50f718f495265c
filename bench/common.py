"""Shared shapes for `make bench` sections.

Each section is `async def section(ctx: BenchContext) -> list[Figure]` and runs
against the real local Kafka and PostgreSQL in a namespace of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BenchContext:
    bootstrap: str
    namespace: str  # topics already created in it
    make_database: Callable[[str], Awaitable[str]]  # service name -> DSN of a fresh database


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
