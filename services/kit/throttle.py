"""Throttling of failed authentication, per client address.

After `limit` failures (no key, or a key nobody holds) within a minute, an address
gets 429 with `Retry-After` instead of 401 until its oldest failure in the window is
a minute old. A request with a working key is never throttled, whatever its address
did: agencies behind one NAT must not be locked out by a neighbour guessing keys (the
keys are 256-bit random, so guessing is not what this defends against; log noise and
work spent on a flood of bad requests are).

State is per process (each replica counts its own), bounded in size: past
`max_addresses`, addresses whose failures have all aged out are forgotten first,
then the longest-known ones.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

WINDOW_SECONDS = 60.0


class AuthThrottle:
    def __init__(
        self,
        limit: int,
        *,
        max_addresses: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit  # failures a minute; 0 turns throttling off
        self.max_addresses = max_addresses
        self._now = monotonic
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, address: str) -> int | None:
        """Seconds until `address` may fail again, or None if it is not throttled."""
        if self.limit <= 0:
            return None
        failures = self._recent(address)
        if failures is None or len(failures) < self.limit:
            return None
        return max(1, math.ceil(failures[0] + WINDOW_SECONDS - self._now()))

    def failed(self, address: str) -> None:
        if self.limit <= 0:
            return
        failures = self._recent(address)
        if failures is None:
            if len(self._failures) >= self.max_addresses:
                self._forget()
            failures = self._failures[address] = deque(maxlen=self.limit)
        failures.append(self._now())

    def _recent(self, address: str) -> deque[float] | None:
        failures = self._failures.get(address)
        if failures is None:
            return None
        horizon = self._now() - WINDOW_SECONDS
        while failures and failures[0] <= horizon:
            failures.popleft()
        return failures

    def _forget(self) -> None:
        horizon = self._now() - WINDOW_SECONDS
        stale = [a for a, f in self._failures.items() if not f or f[-1] <= horizon]
        for address in stale:
            del self._failures[address]
        while len(self._failures) >= self.max_addresses:
            del self._failures[next(iter(self._failures))]
