"""When to send: quiet hours in the recipient's own time zone, and the provider's
rate limit (a token bucket). Retry delays are the kit's one backoff schedule
(`services.kit.backoff.delay_for`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`, or UTC when it is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def quiet_hours_end(now: datetime, time_zone: str, start: time, end: time) -> datetime | None:
    """When `now` falls in the recipient's quiet hours, the local morning they end
    (as an aware datetime); else None. Handles windows that wrap past midnight."""
    tz = zone(time_zone)
    local = now.astimezone(tz)
    t = local.time().replace(tzinfo=None)
    morning: datetime | None = None
    if start > end:  # e.g. 21:00-07:00
        if t >= start:
            morning = datetime.combine(local.date() + timedelta(days=1), end, tzinfo=tz)
        elif t < end:
            morning = datetime.combine(local.date(), end, tzinfo=tz)
    elif start <= t < end:
        morning = datetime.combine(local.date(), end, tzinfo=tz)
    return morning.astimezone(UTC) if morning else None


class TokenBucket:
    """`rate` sends per second, bursts up to `burst`. `reserve()` takes a token and says
    how long the caller must wait before using it (callers queue fairly)."""

    def __init__(self, rate: float, burst: float, now: Callable[[], float]) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._now = now
        self._tokens = burst
        self._updated = now()

    def reserve(self) -> float:
        current = self._now()
        self._tokens = min(self.burst, self._tokens + (current - self._updated) * self.rate)
        self._updated = current
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else float(-self._tokens / self.rate)
