"""What the fuzzing saw: per operation the status codes answered, the 2xx writes, and
each conformance failure with the shape of the request that caused it (names, types
and where ids came from: never values, which may carry a child's details)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

LIFECYCLE_ACTIONS = ("confirm", "acknowledge", "accept", "reject", "start", "close", "cancel")
READ_METHODS = {"GET", "HEAD", "OPTIONS"}


@dataclass
class Failure:
    service: str
    operation: str
    status: int
    check: str  # schemathesis' failure title
    detail: str  # its first line
    shape: str  # the first request that caused it
    count: int = 1


@dataclass
class Tally:
    statuses: dict[str, dict[str, Counter[int]]] = field(default_factory=dict)
    failures: dict[tuple[str, str, int, str, str], Failure] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    # 2xx writes by operation and by where their ids or body came from: "generated",
    # "seeded" (pointed at a seeded object) or "linked" (a stateful scenario's link).
    write_origins: dict[str, Counter[str]] = field(default_factory=dict)
    phases: Counter[str] = field(default_factory=Counter)  # examples | fuzzing | stateful
    notes: list[str] = field(default_factory=list)
    _started: dict[str, float] = field(default_factory=dict)

    @property
    def examples(self) -> int:
        return sum(sum(c.values()) for ops in self.statuses.values() for c in ops.values())

    def calls(self, service: str, operation: str) -> int:
        return sum(self.statuses.get(service, {}).get(operation, Counter()).values())

    def record(self, service: str, operation: str, status: int, *, origin: str, phase: str) -> None:
        self.statuses.setdefault(service, {}).setdefault(operation, Counter())[status] += 1
        self.phases[phase] += 1
        if 200 <= status < 300 and operation.split()[0] not in READ_METHODS:
            self.write_origins.setdefault(operation, Counter())[origin] += 1

    def fail(
        self, service: str, operation: str, status: int, check: str, detail: str, shape: str
    ) -> None:
        key = (service, operation, status, check, detail)
        if key in self.failures:
            self.failures[key].count += 1
        else:
            self.failures[key] = Failure(service, operation, status, check, detail, shape)

    def failures_of(self, service: str) -> list[Failure]:
        return [f for f in self.failures.values() if f.service == service]

    def writes(self) -> Counter[str]:
        """2xx answers to writes, by operation ("POST /v1/cases")."""
        done: Counter[str] = Counter()
        for ops in self.statuses.values():
            for operation, statuses in ops.items():
                if operation.split()[0] in READ_METHODS:
                    continue
                done[operation] += sum(n for s, n in statuses.items() if 200 <= s < 300)
        return done

    def transitions(self) -> dict[str, int]:
        """2xx lifecycle steps, by action."""
        writes = self.writes()
        return {
            action: writes[f"POST /v1/referrals/{{referral_id}}/{action}"]
            for action in LIFECYCLE_ACTIONS
            if writes[f"POST /v1/referrals/{{referral_id}}/{action}"]
        }

    def summary_lines(self) -> list[str]:
        lines = []
        parts = []
        for service, ops in self.statuses.items():
            count = sum(sum(c.values()) for c in ops.values())
            took = f", {self.seconds[service]:.0f} s" if service in self.seconds else ""
            parts.append(f"{service} {len(ops)} operations, {count} examples{took}")
        took = f" in {sum(self.seconds.values()):.0f} s" if self.seconds else ""
        lines.append(f"fuzz: {'; '.join(parts)}; total {self.examples} examples{took}")
        lines.append(
            "fuzz: requests by phase: "
            + ", ".join(f"{phase} {n}" for phase, n in sorted(self.phases.items()))
        )
        lines += [f"fuzz: {note}" for note in self.notes]
        lines.append("fuzz: 2xx writes (ids or body generated / seeded / linked):")
        for op, origins in sorted(self.write_origins.items()):
            split = " / ".join(str(origins[o]) for o in ("generated", "seeded", "linked"))
            lines.append(f"    {op} x{sum(origins.values())} ({split})")
        width = max(len(op) for ops in self.statuses.values() for op in ops)
        for service, ops in self.statuses.items():
            lines.append(f"  {service}")
            for operation, statuses in ops.items():
                codes = "  ".join(f"{s}:{n}" for s, n in sorted(statuses.items()))
                lines.append(f"    {operation:<{width}}  {codes}")
        if self.failures:
            total = sum(f.count for f in self.failures.values())
            lines.append(
                f"fuzz: {len(self.failures)} distinct conformance failures ({total} in all)"
            )
            for f in self.failures.values():
                lines.append(f"  {f.service} {f.operation} -> {f.status}: {f.check} x{f.count}")
        return lines


def describe(failures: list[Failure]) -> str:
    """The conformance failures of one service, grouped by operation, for the test."""
    lines = []
    for f in sorted(failures, key=lambda f: (f.operation, f.status, f.check)):
        lines.append(f"{f.operation} -> {f.status}: {f.check} (x{f.count})")
        lines.append(f"    {f.detail}")
        lines.append(f"    first request: {f.shape}")
    return "\n".join(lines)


TALLY = Tally()
