"""The console's lag chart: an inline SVG polyline of (time, lag) points, drawn on
the server (no script, no external library)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    points: str  # "x,y x,y ..." for <polyline points=...>
    peak: int  # the highest lag in the window
    start: datetime | None
    end: datetime | None


def lag_chart(samples: list[tuple[datetime, int]], *, width: int = 320, height: int = 70) -> Chart:
    """Samples oldest first; time on x (from the first to the last sample), lag on y
    (0 at the bottom, the window's peak at the top)."""
    if not samples:
        return Chart(width, height, "", 0, None, None)
    start, end = samples[0][0], samples[-1][0]
    span = max((end - start).total_seconds(), 1.0)
    peak = max(lag for _, lag in samples)
    top = max(peak, 1)
    pad = 4
    coords = []
    for at, lag in samples:
        x = pad + (width - 2 * pad) * (at - start).total_seconds() / span
        y = height - pad - (height - 2 * pad) * lag / top
        coords.append(f"{x:.1f},{y:.1f}")
    return Chart(width, height, " ".join(coords), peak, start, end)
