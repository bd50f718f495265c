"""The verdict (each must-show criterion, met or not, and why), a readable table, and
the JSON document holding every figure."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from faults.stack import SERVICES


def criteria(report: dict[str, Any]) -> list[dict[str, Any]]:
    lost, dup = report["lost"]["counts"], report["duplicates"]["counts"]
    rows, readiness = report["faults"], report["readiness"]
    out: list[dict[str, Any]] = []

    def add(name: str, met: bool, detail: str) -> None:
        out.append({"criterion": name, "met": met, "detail": detail})

    add(
        "every fault applied",
        all(not r.get("error") for r in rows),
        "; ".join(f"{r['fault']}: {r['error']}" for r in rows if r.get("error")) or "all applied",
    )
    callers = report["callers"]
    add(
        "every case registered (callers retry with their Idempotency-Key)",
        callers["never_registered"] == 0,
        f"{callers['never_registered']} of {callers['cases']} never registered",
    )
    add(
        "pipeline drained",
        report["drain"]["drained"],
        report["drain"]["why"],
    )
    add("0 lost", sum(lost.values()) == 0, _counts(lost))
    sms, mail = dup.get("sms to the same recipient", 0), dup.get("email to the same recipient", 0)
    add("0 duplicate SMS or e-mail", sms == 0 and mail == 0, f"SMS {sms}, e-mail {mail}")
    logical = {k: v for k, v in dup.items() if k.startswith("logical:")}
    add("0 duplicate logical events", sum(logical.values()) == 0, _counts(logical))
    late = [
        f"{r['fault']} {r['stall_s']} s > {r['stall_limit_s']} s"
        for r in rows
        if r.get("stall_ok") is False
    ]
    outside = report["outside_faults"]
    if not outside["stall_ok"]:
        late.append(f"outside any fault {outside['stall_s']} s")
    add("no stall longer than the fault + 15 s", not late, "; ".join(late) or "none")
    slow = [
        f"{r['fault']}: {r['lag_zero_max_s'] if r['lag_zero_max_s'] is not None else 'never'}"
        for r in rows
        if r.get("lag_ok") is False
    ]
    add("consumer lag zero within 15 s of the broker answering", not slow, "; ".join(slow) or "yes")
    checked = [r for r in rows if r.get("readiness", {}).get("checked")]
    lies = [
        f"{r['fault']}: {s} answered 200 {v['ready_200']}x while down"
        for r in checked
        for s, v in r["readiness"]["services"].items()
        if v["ready_200"]
    ]
    lies += [
        f"{r['fault']}: no /readyz sample while down (the sampler was held up)"
        for r in checked
        if not any(v["samples"] for v in r["readiness"]["services"].values())
    ]
    for service, v in readiness.items():
        if v["ready_200_while_stuck"]:
            lies.append(f"{service}: 200 {v['ready_200_while_stuck']}x while stuck")
        if v["ready_200_saying_not_ready"]:
            lies.append(
                f"{service}: 200 {v['ready_200_saying_not_ready']}x with a needed part down"
            )
    add(
        "/readyz 503 whenever a needed dependency or loop is down",
        not lies,
        "; ".join(lies) or "yes",
    )
    poison = report["poison"]
    if poison:
        bad = [p["record"] for p in poison if p.get("once_per_group") is False]
        bad += [p["record"] for p in poison if p.get("referral_events")]
        add(
            "poison dead-lettered once per consumer group, a forged event has no effect",
            not bad,
            ", ".join(bad) or "yes",
        )
    if report["nodes"] > 1:
        errors = [
            f"{k}: {v}"
            for k, v in callers["errors_by_fault"].items()
            if k.split()[-1] == "broker-kill"
        ]
        add(
            "three nodes: a broker's kill gives intake's callers no error",
            not errors,
            "; ".join(errors) or "all 201",
        )
    return out


def _counts(counts: dict[str, int]) -> str:
    shown = [f"{k.removeprefix('logical: ')} {v}" for k, v in counts.items() if v]
    return ", ".join(shown) or "none"


def table(report: dict[str, Any]) -> str:
    callers, lines = report["callers"], []
    lines.append(
        f"Enlace fault suite: {callers['cases']} cases, {report['nodes']} Kafka node(s), "
        f"{report['rate']:.1f} cases/s, {report['elapsed_s']:.0f} s"
    )
    lines.append(
        f"callers: {callers['registered']} registered, {callers['first_attempt_not_201']} not 201 "
        f"at first, {callers['replayed_200']} replayed; "
        f"errors {callers['errors_by_status'] or 'none'}; latency {callers['latency_s']}"
    )
    lines.append(f"drain: {report['drain']['why']} ({report['drain']['waited_s']:.1f} s)")
    lines.append(f"lost: {_counts(report['lost']['counts'])}")
    lines.append(f"duplicates: {_counts(report['duplicates']['counts'])}")
    lines.append("")
    lines.append(
        f"{'fault':<32}{'target':<34}{'start':>7}{'dur':>7}{'errors':>8}{'stall/limit':>14}"
        f"{'resume':>8}{'lag0':>7}  readyz not-ready/samples while down"
    )
    errors_by_fault = callers["errors_by_fault"]
    for r in report["faults"]:
        if "stall_s" not in r:
            lines.append(f"{r['fault']:<32}not applied: {r.get('error')}")
            continue
        errors = sum(errors_by_fault.get(r["fault"], {}).values())
        lag = r["lag_zero_max_s"]
        ready = r.get("readiness")
        if ready is None:
            shown = "-"
        elif not ready["checked"]:
            shown = ready["why"]
        else:
            shown = " ".join(
                f"{s[:5]} {v['not_ready']}/{v['samples']}" for s, v in ready["services"].items()
            )
        flag = "" if r["stall_ok"] else " !"
        lines.append(
            f"{r['fault']:<32}{r['target'][:33]:<34}{r['started_at']:>7.1f}{r['duration_s']:>7.1f}"
            f"{errors:>8}{r['stall_s']:>7.1f}/{r['stall_limit_s']:<5.1f}{flag:<2}"
            f"{_num(r['resume_s']):>8}{_num(lag):>7}  {shown}"
        )
    outside = report["outside_faults"]["stall_s"]
    lines.append(f"{'outside any fault':<32}{'':<56}{outside:>7.1f}")
    lines.append("")
    lines.append("readiness: service  stuck-at-200 s  200-while-stuck  200-saying-not-ready")
    for service in SERVICES:
        v = report["readiness"][service]
        lines.append(
            f"  {service:<15}{v['stuck_s']:>15.1f}{v['ready_200_while_stuck']:>17}"
            f"{v['ready_200_saying_not_ready']:>22}"
        )
    for p in report["poison"]:
        lines.append(
            f"poison {p['record']}: {json.dumps({k: v for k, v in p.items() if k != 'record'})}"
        )
    errors = report.get("log_errors", {})
    if errors:
        lines.append("error lines in the services' logs (level/event: count):")
        for service, counted in errors.items():
            top = Counter(counted).most_common(6)
            lines.append(f"  {service}: " + "; ".join(f"{k} x{n}" for k, n in top))
    lines.append("")
    for c in report["criteria"]:
        lines.append(f"[{'met' if c['met'] else 'FAILED':>6}] {c['criterion']}: {c['detail']}")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}"


def write(report: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "report.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    (directory / "report.txt").write_text(table(report) + "\n")
    return path
