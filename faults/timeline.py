"""Figures read off the sampler's timeline, per fault:

- stall: a period in which messages were owed (accepted cases' messages not yet at a
  provider) and none arrived, per channel (2 s or more; less is the pipeline's own
  latency). It belongs to the latest fault started by then (and ended at most 15 s
  before), and is compared with that fault's duration + 15 s, or, when it runs into
  the next fault too, with the time from the first one's start to the last one's end
  + 15 s. A stall no fault explains is compared with 15 s;
- resume: from the fault's end (the component answering again) to the next message
  delivered, when messages were owed;
- lag: from the fault's end until each consumer group's lag is zero;
- readiness: while a dependency every service needs was down (past a grace for
  noticing), each /readyz answer: 503 (or none) is the truth, 200 a lie; and at any
  time, a 200 from a service that was stuck (answering 200 for 10 s with work waiting
  and no progress), or a 200 whose own body says a check or a needed loop is not
  working.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contracts.topics import Topic
from faults.checker import label, owner
from faults.inject import DEPENDENCY_FAULTS, Fault
from faults.observe import PROBE_TIMEOUT_S, Sample
from faults.stack import SERVICES

LIMIT_S = 15.0  # the must-show margin: fault + 15 s, lag zero within 15 s
STALL_MIN_S = 2.0  # shorter gaps are the pipeline's own latency
STUCK_S = 10.0  # work waiting this long without progress: the service is stuck
GRACE_S = 5.0  # time /readyz has to notice a dependency gone
# In /readyz's body but not a readiness condition: one replica of several leads the relay.
INFORMATIVE = ("check:outbox_relay_leader",)
PRODUCES = {
    "intake": Topic.CASES.value,
    "referral": Topic.REFERRALS.value,
    "followup": Topic.FOLLOWUPS.value,
    "notifications": Topic.NOTIFICATIONS.value,
}


@dataclass(frozen=True)
class Interval:
    start: float
    end: float

    @property
    def length(self) -> float:
        return self.end - self.start

    def overlaps(self, start: float, end: float) -> bool:
        return self.start <= end and self.end >= start

    def as_list(self) -> list[float]:
        return [round(self.start, 1), round(self.end, 1)]


def stalls(samples: list[Sample], channel: str) -> list[Interval]:
    out: list[Interval] = []
    since: float | None = None
    last: int | None = None

    def close(t: float) -> None:
        if since is not None and t - since >= STALL_MIN_S:
            out.append(Interval(since, t))

    for s in samples:
        value = s.count(channel)
        owed = s.expected.get(channel, 0) > value
        if last is not None and value > last:
            close(s.t)
            since = s.t if owed else None
        elif not owed:
            close(s.t)
            since = None
        elif since is None:
            since = s.t
        last = value
    if samples:
        close(samples[-1].t)
    return out


def _stuck(
    samples: list[Sample],
    service: str,
    work: Callable[[Sample], bool | None],
    progress: Callable[[Sample], int | None],
) -> list[Interval]:
    """Where work waited and `progress` did not move for more than STUCK_S (from the
    moment STUCK_S had passed) while the service answered /readyz 200 and the probes
    answered: the clock starts again after a gap in either. A service saying 503 is
    telling the truth about being stuck; one back from an outage gets STUCK_S to
    show progress."""
    out: list[Interval] = []
    since: float | None = None
    last: int | None = None
    t = 0.0

    def close(at: float) -> None:
        if since is not None and at - since > STUCK_S:
            out.append(Interval(since + STUCK_S, at))

    for s in samples:
        if s.ready.get(service) != 200:
            close(t)
            since, last = None, None
            continue
        waiting, moved = work(s), progress(s)
        if waiting is None or moved is None:
            # The probe did not answer: no judgement across the gap.
            close(t)
            since, last = None, None
            continue
        t = s.t
        if not waiting:
            close(s.t)
            since = None
        elif last is not None and moved != last:
            close(s.t)
            since = s.t
        elif since is None:
            since = s.t
        last = moved
    close(t)
    return out


def group_service(group: str) -> str:
    return group.split(".")[0].removeprefix("enlace-")


def stuck(samples: list[Sample], service: str) -> list[Interval]:
    topic = PRODUCES[service]
    signals: list[tuple[Callable[[Sample], bool | None], Callable[[Sample], int | None]]] = [
        (
            lambda s: None if s.outbox is None else s.outbox.get(service, 0) > 0,
            lambda s: None if s.ends is None else s.ends.get(topic),
        )
    ]
    groups = {g for s in samples if s.lag for g in s.lag if group_service(g) == service}
    for group in sorted(groups):
        signals.append(
            (
                lambda s, g=group: None if s.lag is None else s.lag.get(g, 0) > 0,  # type: ignore[misc]
                lambda s, g=group: None if s.committed is None else s.committed.get(g),  # type: ignore[misc]
            )
        )
    if service == "notifications":
        signals.append(
            (
                lambda s: None if s.due_deliveries is None else s.due_deliveries > 0,
                lambda s: s.delivered,
            )
        )
    found = [i for work, progress in signals for i in _stuck(samples, service, work, progress)]
    return _union(found)


def _union(intervals: list[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for i in sorted(intervals, key=lambda i: i.start):
        if merged and i.start <= merged[-1].end:
            merged[-1] = Interval(merged[-1].start, max(merged[-1].end, i.end))
        else:
            merged.append(i)
    return merged


@dataclass(frozen=True)
class Stall:
    length: float
    limit: float  # the faults it spans, first start to last end, + LIMIT_S

    @property
    def ok(self) -> bool:
        return self.length <= self.limit


def _owned(samples: list[Sample], faults: list[Fault]) -> dict[int | None, dict[str, Stall]]:
    """Per fault that explains a stall (None: no fault does), each channel's stall that
    most exceeds its limit. A stall that runs into the next fault is measured against
    both: from the first one's start to the last one's end, + LIMIT_S."""
    worst: dict[int | None, dict[str, Stall]] = {}
    for channel in ("sms", "email"):
        for i in stalls(samples, channel):
            index = owner(i.start, faults, early=STALL_MIN_S)
            limit = LIMIT_S
            if index is not None:
                spanned = [
                    f
                    for j, f in enumerate(faults)
                    if f.started_at is not None and (j == index or i.start <= f.started_at <= i.end)
                ]
                first = min(f.started_at or 0.0 for f in spanned)
                last = max(f.ended_at or f.started_at or 0.0 for f in spanned)
                limit = last - first + LIMIT_S
            stall = Stall(i.length, limit)
            per = worst.setdefault(index, {})
            known = per.get(channel)
            if known is None or stall.length - stall.limit > known.length - known.limit:
                per[channel] = stall
    return worst


def per_fault(samples: list[Sample], faults: list[Fault], nodes: int) -> list[dict[str, Any]]:
    owned = _owned(samples, faults)
    groups = sorted({g for s in samples if s.lag for g in s.lag})
    rows = []
    for index, fault in enumerate(faults):
        if fault.started_at is None or fault.ended_at is None:
            rows.append({"fault": label(fault, index), "error": fault.error})
            continue
        start, end = fault.started_at, fault.ended_at
        row: dict[str, Any] = {
            "fault": label(fault, index),
            "target": fault.target,
            "started_at": round(start, 1),
            "duration_s": round(fault.duration, 1),
            "error": fault.error,
        }
        mine = owned.get(index, {})
        for channel in ("sms", "email"):
            stall = mine.get(channel)
            row[f"stall_{channel}_s"] = round(stall.length, 1) if stall else 0.0
        worst = max(mine.values(), key=lambda s: s.length - s.limit, default=None)
        row["stall_s"] = round(worst.length, 1) if worst else 0.0
        row["stall_limit_s"] = round(worst.limit if worst else fault.duration + LIMIT_S, 1)
        row["stall_ok"] = all(s.ok for s in mine.values())
        row["resume_s"] = _resume(samples, end)
        lags = {g: _lag_zero(samples, end, g) for g in groups}
        row["lag_zero_s"] = lags
        known = [v for v in lags.values() if v is not None]
        row["lag_zero_max_s"] = None if len(known) < len(lags) else max(known, default=0.0)
        if fault.kind.startswith("broker"):
            row["lag_ok"] = row["lag_zero_max_s"] is not None and row["lag_zero_max_s"] <= LIMIT_S
        if fault.kind in DEPENDENCY_FAULTS:
            # Killed or paused: down until restarted or resumed (what follows is a start).
            down_until = end if fault.kind == "pg-restart" else (fault.undone_at or end)
            # A sample is stamped when its probes leave: its answer may come up to
            # PROBE_TIMEOUT_S later, after the dependency is back.
            seen = _while_down(samples, start + GRACE_S, down_until - PROBE_TIMEOUT_S)
            if fault.kind.startswith("broker") and nodes > 1 and seen["checked"]:
                # The cluster still serves: readiness may stay 200; shown, not judged.
                counts = " ".join(
                    f"{s[:5]} {v['not_ready']}/{v['samples']}" for s, v in seen["services"].items()
                )
                seen = {"checked": False, "why": f"cluster up; not ready: {counts}"}
            row["readiness"] = seen
        rows.append(row)
    return rows


def outside_faults(samples: list[Sample], faults: list[Fault]) -> dict[str, Any]:
    """The longest stall no fault explains: the pipeline's own."""
    worst = max((s.length for s in _owned(samples, faults).get(None, {}).values()), default=0.0)
    return {"stall_s": round(worst, 1), "stall_ok": worst <= LIMIT_S}


def _resume(samples: list[Sample], end: float) -> float | None:
    after = [s for s in samples if s.t >= end]
    if not after:
        return None
    first = after[0]
    if all(first.count(c) >= n for c, n in first.expected.items()):
        return 0.0
    for s in after[1:]:
        if s.delivered > first.delivered:
            return round(s.t - end, 1)
    return None


def _lag_zero(samples: list[Sample], end: float, group: str) -> float | None:
    for s in samples:
        if s.t >= end and s.lag is not None and s.lag.get(group, 0) == 0:
            return round(s.t - end, 1)
    return None


def _while_down(samples: list[Sample], start: float, end: float) -> dict[str, Any]:
    if end <= start:
        return {"checked": False, "why": f"down less than the {GRACE_S:.0f} s grace"}
    seen = [s for s in samples if start <= s.t <= end]
    per_service = {}
    for service in SERVICES:
        answers = [s.ready.get(service) for s in seen]
        per_service[service] = {
            "samples": len(answers),
            "not_ready": sum(a != 200 for a in answers),
            "ready_200": sum(a == 200 for a in answers),
        }
    return {
        "checked": True,
        "window": [round(start, 1), round(end, 1)],
        "services": per_service,
        "truthful": all(v["ready_200"] == 0 for v in per_service.values()),
    }


def readiness(samples: list[Sample]) -> dict[str, Any]:
    """Per service: stuck periods, 200s while stuck, 200s whose body says something
    needed is down."""
    out: dict[str, Any] = {}
    for service in SERVICES:
        periods = stuck(samples, service)
        lies = [
            s.t
            for s in samples
            # Half open: the sample that saw progress ends the period, it is not in it.
            if s.ready.get(service) == 200 and any(i.start <= s.t < i.end for i in periods)
        ]
        contradictions = [
            s.t
            for s in samples
            if s.ready.get(service) == 200
            and any(r not in INFORMATIVE for r in s.unready.get(service, ()))
        ]
        reasons = sorted(
            {r for s in samples for r in s.unready.get(service, ()) if r != "no answer"}
        )
        out[service] = {
            "stuck_s": round(sum(i.length for i in periods), 1),
            "stuck_periods": [i.as_list() for i in periods[:10]],
            "ready_200_while_stuck": len(lies),
            "first_200_while_stuck_at": round(lies[0], 1) if lies else None,
            "ready_200_saying_not_ready": len(contradictions),
            "reasons_given_when_not_ready": reasons[:20],
        }
    return out
