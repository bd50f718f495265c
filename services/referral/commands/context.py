"""What the use cases are given besides the database: the process's dependencies
(`Context`), the port to intake's identity API, and the version preconditions a
caller may state (an HTTP If-Match or If-None-Match, parsed by the API)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from services.kit.clock import Clock
from services.referral.directory_cache import DirectoryCache
from services.referral.domain.disclosure import Identity, IdentityRequest, IdentityStatus
from services.referral.domain.lifecycle import Deadlines
from services.referral.domain.routing import RoutingRules
from services.referral.metrics import ReferralMetrics


class IdentitySource(Protocol):
    """Intake's identity API (services/referral/intake.py): the details, or why not
    (`CONSENT_WITHDRAWN`, `UNAVAILABLE`). Intake audits the call on its side."""

    async def identity(self, request: IdentityRequest) -> Identity | IdentityStatus: ...


@dataclass(frozen=True)
class Context:
    directory: DirectoryCache
    rules: RoutingRules
    deadlines: Deadlines
    clock: Clock
    source: str  # CloudEvents source of the events written
    metrics: ReferralMetrics
    identities: IdentitySource


@dataclass(frozen=True)
class Versions:
    """The versions a caller names: it expects (If-Match) or already has
    (If-None-Match) one of `numbers`, or any version at all (`*`)."""

    numbers: frozenset[int] = frozenset()
    any: bool = False

    def include(self, version: int) -> bool:
        return self.any or version in self.numbers
