"""Safeguarding values more than one service records: a documented best-interest
decision (who took it, when, why) and the check that a recorded moment is real (it
carries a time zone and is not in the future)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from contracts.events import StaffId
from services.kit.inputs import Instant, MultiLineText

# How far ahead of our clock a partner's clock may be before "recorded at" is refused.
CLOCK_SKEW = timedelta(minutes=10)

Reason = Annotated[
    MultiLineText, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)
]


class BestInterestDecision(BaseModel):
    """A documented best-interest decision: who took it, when, and why. It stays in
    the service that records it and never travels on a topic."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    decided_by: StaffId
    decided_at: Instant
    reason: Reason


def moment_problem(moment: datetime, now: datetime) -> str | None:
    """Why a recorded moment cannot be accepted, or None when it can."""
    if moment.tzinfo is None:
        return "needs a time zone offset (e.g. 2026-11-23T10:00:00-05:00)"
    if moment > now + CLOCK_SKEW:
        return "is in the future"
    return None
