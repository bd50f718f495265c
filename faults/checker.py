"""What the run produced against what every case must produce: lost and duplicated
events and messages, the callers' errors, and what became of the poison records.

- lost: an accepted case without its case.created, one of its referral events, or
  one of its messages at the providers;
- duplicates: the same event id twice on a topic (harmless to idempotent consumers,
  reported), the same logical event under two ids (two case.created for one case,
  two first referral events for one case and service, two notification.sent for one
  event, recipient and channel), and the same message twice at a provider (same
  case reference, recipient and kind).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from contracts.topics import DLQ_SUFFIX, Topic, dead_letter_topic
from faults.expect import Template
from faults.inject import Fault
from faults.load import Case
from faults.observe import Sampler
from faults.truth import Delivered, Topics

FIRST_REFERRAL_EVENTS = ("referral.sent", "referral.proposed")
EXAMPLES = 10
# An error this long after a fault ended still counts as the fault's.
SETTLE_S = 15.0


@dataclass
class Drain:
    drained: bool
    waited_s: float
    why: str


async def drain(sampler: Sampler, *, deadline_s: float, quiet_s: float = 3.0) -> Drain:
    """Poll the samples until every expected message is at a provider and nothing waits
    in an outbox, a consumer group or the delivery queue, for `quiet_s`; or until it
    is all idle and nothing moves for 20 s (something was lost); or the deadline."""
    started = time.monotonic()
    while True:
        waited = time.monotonic() - started
        recent = [s for s in sampler.samples if s.t >= sampler.now() - quiet_s]
        still = [s for s in sampler.samples if s.t >= sampler.now() - 20.0]
        if recent and waited >= quiet_s:
            last = recent[-1]
            complete = all(last.count(c) >= n for c, n in last.expected.items())
            if complete and all(s.idle for s in recent):
                return Drain(True, waited, "drained")
            moving = len({s.delivered for s in still}) > 1
            if waited >= 20.0 and all(s.idle for s in still) and not moving:
                return Drain(True, waited, "idle with messages missing")
        if waited > deadline_s:
            last = sampler.samples[-1]
            return Drain(
                False,
                waited,
                f"not drained after {deadline_s:.0f} s: outbox {last.outbox}, lag {last.lag}, "
                f"open deliveries {last.open_deliveries}, delivered {last.sms} SMS and "
                f"{last.mails} e-mails of {last.expected}",
            )
        await asyncio.sleep(0.5)  # polling the sampler's samples


@dataclass
class Findings:
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, what: str, example: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n
        shown = self.examples.setdefault(what, [])
        if len(shown) < EXAMPLES:
            shown.append(example)

    def total(self, *prefixes: str) -> int:
        return sum(n for k, n in self.counts.items() if not prefixes or k.startswith(prefixes))

    def as_dict(self) -> dict[str, Any]:
        return {"counts": self.counts, "examples": self.examples}


def lost(
    cases: list[Case], templates: dict[str, Template], topics: Topics, delivered: list[Delivered]
) -> Findings:
    found = Findings()
    for what in ("case.created", "referral events", "sms", "email"):
        found.counts[what] = 0
    created = {r.subject for r in topics.events(Topic.CASES.value, "case.created")}
    first: set[tuple[str, str, str]] = set()
    for r in topics.events(Topic.REFERRALS.value, *FIRST_REFERRAL_EVENTS):
        if isinstance(r.value, dict):
            first.add((r.subject, str(r.value.get("service_id")), r.type))
    unmet = {
        (r.subject, str(r.value.get("service_type")))
        for r in topics.events(Topic.REFERRALS.value, "referral.unmet_need")
        if isinstance(r.value, dict)
    }
    at_provider = {(d.channel, d.reference, d.to, d.kind) for d in delivered}
    for case in cases:
        if case.case_id is None:
            continue
        template = templates[case.template]
        if case.case_id not in created:
            found.add("case.created", case.case_id)
        for service_id, event_type in template.referrals:
            if (case.case_id, service_id, event_type) not in first:
                found.add("referral events", f"{case.case_id} {event_type} {service_id}")
        for service_type in template.unmet:
            if (case.case_id, service_type) not in unmet:
                found.add("referral events", f"{case.case_id} unmet_need {service_type}")
        for m in template.messages:
            if (m.channel, case.reference, m.address, m.event_type) not in at_provider:
                found.add(m.channel, f"{case.reference} {m.event_type} to {m.recipient_id}")
    return found


def _extra(groups: dict[Any, set[str]], what: str, found: Findings) -> None:
    found.counts.setdefault(what, 0)
    for key, ids in groups.items():
        if len(ids) > 1:
            found.add(what, f"{key}: {len(ids)} ids", len(ids) - 1)


def duplicates(topics: Topics, delivered: list[Delivered]) -> Findings:
    found = Findings()
    for topic, records in topics.records.items():
        if topic.endswith(DLQ_SUFFIX):
            # Every group dead-letters its own copy (same ce_id): one per group is right.
            what = "dead letter written twice by one group"
            found.counts.setdefault(what, 0)
            letters = Counter(
                (
                    r.headers.get("x-original-topic"),
                    r.headers.get("x-original-partition"),
                    r.headers.get("x-original-offset"),
                    r.headers.get("x-consumer-group") or r.headers.get("x-consumer"),
                )
                for r in records
            )
            for key, n in letters.items():
                if n > 1:
                    found.add(what, f"{key} x{n}", n - 1)
            continue
        ids = Counter(r.headers.get("ce_id", "") for r in records if r.headers.get("ce_id"))
        found.counts.setdefault(f"same event id: {topic}", 0)
        for event_id, n in ids.items():
            if n > 1:
                found.add(f"same event id: {topic}", f"{event_id} x{n}", n - 1)
    logical: dict[str, dict[Any, set[str]]] = defaultdict(lambda: defaultdict(set))
    for r in topics.events(Topic.CASES.value, "case.created"):
        logical["logical: case.created per case"][r.subject].add(r.headers["ce_id"])
    for r in topics.events(Topic.REFERRALS.value, *FIRST_REFERRAL_EVENTS):
        if isinstance(r.value, dict) and r.value.get("version") == 1:
            referral = (r.subject, r.value.get("service_id"))
            logical["logical: first referral event per (case, service)"][referral].add(
                r.headers["ce_id"]
            )
    for r in topics.events(Topic.REFERRALS.value, "referral.unmet_need"):
        if isinstance(r.value, dict):
            need = (r.subject, r.value.get("service_type"))
            logical["logical: unmet_need per (case, service type)"][need].add(r.headers["ce_id"])
    for r in topics.events(Topic.NOTIFICATIONS.value, "notification.sent"):
        if isinstance(r.value, dict):
            v = r.value
            sent = (v.get("source_event_id"), v.get("recipient_id"), v.get("channel"))
            logical["logical: notification.sent per (event, recipient, channel)"][sent].add(
                r.headers["ce_id"]
            )
    for what in (
        "logical: case.created per case",
        "logical: first referral event per (case, service)",
        "logical: unmet_need per (case, service type)",
        "logical: notification.sent per (event, recipient, channel)",
    ):
        _extra(logical[what], what, found)
    for channel in ("sms", "email"):
        mine = [d for d in delivered if d.channel == channel]
        same = Counter((d.reference, d.to, d.kind) for d in mine)
        found.counts.setdefault(f"{channel} to the same recipient", 0)
        for (reference, to, kind), n in same.items():
            if n > 1:
                shown = f"{reference} {kind} to {_mask(to)} x{n}"
                found.add(f"{channel} to the same recipient", shown, n - 1)
        ids = Counter(d.provider_id for d in mine)
        found.counts[f"{channel} sharing a provider id"] = sum(n - 1 for n in ids.values() if n > 1)
        refs = Counter(d.client_reference for d in mine if d.client_reference)
        found.counts[f"{channel} sharing a client reference"] = sum(
            n - 1 for n in refs.values() if n > 1
        )
        unattributed = sum(1 for d in mine if d.reference is None or d.kind == "unknown")
        found.counts[f"{channel} about no known case or event"] = unattributed
    return found


def _mask(address: str) -> str:
    """Enough of a desk's address to tell which one, for a report."""
    return address[:4] + "…" + address[-4:] if len(address) > 10 else address


def caller_errors(cases: list[Case], faults: list[Fault]) -> dict[str, Any]:
    """Every non-201 answer (or no answer) to intake's callers, by status and by the
    fault whose window (start to end + SETTLE_S) it fell in."""
    by_status: Counter[str] = Counter()
    by_fault: dict[str, Counter[str]] = defaultdict(Counter)
    for case in cases:
        for attempt in case.attempts:
            if attempt.status in (200, 201):
                continue
            status = f"{attempt.status or 'no answer'} {attempt.error or ''}".strip()
            by_status[status] += 1
            by_fault[_window_of(attempt.started, faults)][status] += 1
    latencies = sorted(c.latency for c in cases if c.latency is not None)
    first_ok = [
        a.ended - a.started for c in cases for a in c.attempts[:1] if a.status in (200, 201)
    ]
    return {
        "cases": len(cases),
        "registered": sum(c.accepted for c in cases),
        "never_registered": sum(not c.accepted for c in cases),
        "first_attempt_not_201": sum(c.first_status != 201 for c in cases),
        "replayed_200": sum(any(a.status == 200 for a in c.attempts) for c in cases),
        "errors_by_status": dict(by_status),
        "errors_by_fault": {k: dict(v) for k, v in by_fault.items()},
        "latency_s": _quantiles(first_ok),
        "latency_with_retries_s": _quantiles(latencies),
    }


def _window_of(t: float, faults: list[Fault]) -> str:
    """The latest fault started by `t` whose window (to its end + SETTLE_S) holds it."""
    index = owner(t, faults)
    return "outside any fault" if index is None else label(faults[index], index)


def owner(t: float, faults: list[Fault], early: float = 0.0) -> int | None:
    """Index of the latest fault started by `t` + `early` and ended no more than
    SETTLE_S before `t`; None when no fault explains `t`."""
    found = None
    for index, fault in enumerate(faults):
        if fault.started_at is None or fault.started_at > t + early:
            continue
        if t <= (fault.ended_at or fault.started_at) + SETTLE_S:
            found = index
    return found


def label(fault: Fault, index: int) -> str:
    return f"#{index + 1} {fault.kind}"


def _quantiles(values: Iterable[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1)))], 3)

    return {"p50": at(0.5), "p99": at(0.99), "max": round(ordered[-1], 3)}


def poison(
    faults: list[Fault], topics: Topics, readers: dict[str, set[str]]
) -> list[dict[str, Any]]:
    """Per poison record: its dead-letter copies per consumer group (exactly one per
    group reading the topic is right), and for the forged case, any referral made."""
    dlq = topics.of(dead_letter_topic(Topic.CASES.value))
    groups = sorted(readers.get(Topic.CASES.value, set()))
    out: list[dict[str, Any]] = []
    for fault in faults:
        if fault.kind != "poison" or not fault.detail:
            continue
        forged = fault.detail.get("forged_case_id")
        for record in fault.detail.get("records", []):
            copies = [
                r
                for r in dlq
                if r.headers.get("x-original-partition") == str(record["partition"])
                and r.headers.get("x-original-offset") == str(record["offset"])
            ]
            per_group = Counter(
                r.headers.get("x-consumer-group") or r.headers.get("x-consumer") or "?"
                for r in copies
            )
            out.append(
                {
                    "record": record["name"],
                    "dead_letters": dict(per_group),
                    "groups_reading_the_topic": groups,
                    "once_per_group": bool(groups)
                    and all(per_group.get(g) == 1 for g in groups)
                    and sum(per_group.values()) == len(groups),
                }
            )
        referrals = [r for r in topics.of(Topic.REFERRALS.value) if r.subject == forged]
        out.append({"record": "forged-source effects", "referral_events": len(referrals)})
    return out
