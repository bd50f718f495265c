"""`make faults`: start a private stack, register cases at a steady rate while the
faults are applied one after another, wait for the pipeline to drain, check what
every case produced, report, tear everything down. Exit 1 when a must-show criterion
fails (the report says which and why).

    python -m faults.run --cases 10000 [--nodes 1|3] [--faults broker-kill,pg-restart,...]

The report (report.txt, report.json) is written to .local/faults-runs/<run>/; the
logs of every process are kept there when the run fails (or with --keep-logs).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from faults import checker, expect, report, timeline, truth
from faults.inject import KINDS, Injector, spread
from faults.load import Load, plan_rate
from faults.observe import Sample, Sampler
from faults.stack import LOCAL, SERVICES, Stack

FULL = [
    "broker-kill",
    "pg-restart",
    "service-kill:intake",
    "broker-pause",
    "pg-kill",
    "service-kill:referral",
    "poison",
    "service-kill:followup",
    "service-kill:notifications",
]


@dataclass
class Options:
    cases: int = 10_000
    nodes: int = 1
    rate: float = 25.0  # cases per second at most
    concurrency: int = 32
    faults: list[str] = field(default_factory=lambda: list(FULL))
    downs: dict[str, float] = field(
        default_factory=lambda: {
            "broker-kill": 20.0,
            "broker-pause": 10.0,
            "pg-kill": 10.0,
            "service-kill": 2.0,
        }
    )
    slot_s: float = 40.0  # load time planned per fault (the rate slows to fit them)
    lead_s: float = 10.0  # load before the first fault
    gap_s: float = 5.0  # at least this long between a fault's end and the next
    drain_s: float = 300.0
    name: str = "faults"
    out: Path | None = None
    keep_logs: bool = False


async def run(options: Options) -> dict[str, Any]:
    for kind in options.faults:
        if kind not in KINDS:
            raise SystemExit(f"unknown fault {kind!r}; expected one of {', '.join(KINDS)}")
    # The sampler's own Kafka clients meet a dead broker on purpose: no log flood.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL + 1)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = options.out or LOCAL / "faults-runs" / f"{stamp}-{options.name}-{options.nodes}n"
    templates = expect.templates()
    stack = Stack(options.name, options.nodes)
    rate = plan_rate(
        options.cases, options.rate, len(options.faults), options.slot_s, options.lead_s
    )
    failed = True
    began = time.monotonic()
    try:
        print(f"starting the private stack ({options.nodes} Kafka node(s))...", flush=True)
        await stack.start()
        print(
            f"stack up in {time.monotonic() - began:.0f} s; {options.cases} cases at {rate:.1f}/s",
            flush=True,
        )
        result = await _exercise(stack, options, templates, rate, out)
        result["elapsed_s"] = time.monotonic() - began
        result["log_errors"] = log_errors(stack)
        result["criteria"] = report.criteria(result)
        failed = not all(c["met"] for c in result["criteria"])
        path = report.write(result, out)
        print(report.table(result), flush=True)
        print(f"\nreport: {path}", flush=True)
        return result
    finally:
        keep = out / "logs" if failed or options.keep_logs else None
        stopping = time.monotonic()
        await asyncio.to_thread(stack.stop, keep)
        print(f"stack stopped in {time.monotonic() - stopping:.0f} s", flush=True)
        if keep is not None:
            print(f"logs kept in {keep}", flush=True)


async def _exercise(
    stack: Stack, options: Options, templates: dict[str, expect.Template], rate: float, out: Path
) -> dict[str, Any]:
    t0 = time.monotonic()
    duration = options.cases / rate
    schedule = spread(options.faults, duration=duration, lead=options.lead_s, downs=options.downs)
    load = Load(
        stack.url("intake"),
        templates,
        cases=options.cases,
        rate=rate,
        concurrency=options.concurrency,
        t0=t0,
    )
    sampler = Sampler(stack, load, t0)
    injector = Injector(stack, schedule, t0=t0, gap_s=options.gap_s)
    stop = asyncio.Event()
    sampling = asyncio.create_task(sampler.run(stop))
    try:
        cases, faults = await asyncio.gather(load.run(), injector.run())
        print(f"load done at {load.now():.0f} s; draining...", flush=True)
        drained = await checker.drain(sampler, deadline_s=options.drain_s)
    finally:
        stop.set()
        await sampling
    read = await truth.topics(stack)
    delivered = truth.sms(stack.sms_log) + truth.mails(stack.maildir)
    readers = await truth.readers(stack)
    samples = sampler.samples
    await asyncio.to_thread(_dump, samples, out / "samples.jsonl")
    return {
        "nodes": options.nodes,
        "rate": rate,
        "templates": {
            name: {
                "agency": t.agency_id,
                "referrals": t.referrals,
                "unmet": t.unmet,
                "messages": [(m.channel, m.recipient_id, m.event_type) for m in t.messages],
            }
            for name, t in templates.items()
        },
        "callers": checker.caller_errors(cases, faults),
        "drain": {"drained": drained.drained, "waited_s": drained.waited_s, "why": drained.why},
        "delivered": {
            "sms": sum(d.channel == "sms" for d in delivered),
            "email": sum(d.channel == "email" for d in delivered),
        },
        "lost": checker.lost(cases, templates, read, delivered).as_dict(),
        "duplicates": checker.duplicates(read, delivered).as_dict(),
        "faults": timeline.per_fault(samples, faults, options.nodes),
        "fault_log": [f.as_dict() for f in faults],
        "outside_faults": timeline.outside_faults(samples, faults),
        "readiness": timeline.readiness(samples),
        "poison": checker.poison(faults, read, readers),
        "samples": len(samples),
    }


def _dump(samples: list[Sample], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as dump:
        for sample in samples:
            dump.write(json.dumps(dataclasses.asdict(sample)) + "\n")


def log_errors(stack: Stack) -> dict[str, dict[str, int]]:
    """Per service: error-level records and tracebacks, by level and event (the
    exception's class when there is one; never its message)."""
    found: dict[str, dict[str, int]] = {}
    for service in (*SERVICES, "sms", "smtp"):
        log = stack.state / "logs" / f"{service}.log"
        if not log.exists():
            continue
        counted: Counter[str] = Counter()
        for line in log.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                if "Traceback (most recent call last)" in line:
                    counted["traceback"] += 1
                continue
            if not isinstance(record, dict):
                continue
            level = str(record.get("level", "")).lower()
            if level not in ("error", "critical", "exception") and "exception" not in record:
                continue
            cause = str(record.get("exception", "")).strip().splitlines()
            kind = cause[-1].split(":")[0] if cause else ""
            counted[
                f"{level}: {str(record.get('event', ''))[:80]}{' [' + kind + ']' if kind else ''}"
            ] += 1
        if counted:
            found[service] = dict(counted)
    return found


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument(
        "--nodes", type=int, choices=(1, 3), default=int(os.environ.get("ENLACE_KAFKA_NODES", "1"))
    )
    parser.add_argument("--rate", type=float, default=25.0, help="cases per second at most")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--faults", default=",".join(FULL), help=f"comma-separated, of: {', '.join(KINDS)}"
    )
    parser.add_argument("--broker-down", type=float, default=20.0)
    parser.add_argument("--pause", type=float, default=10.0)
    parser.add_argument("--pg-down", type=float, default=10.0)
    parser.add_argument("--service-down", type=float, default=2.0)
    parser.add_argument("--slot", type=float, default=40.0, help="load seconds planned per fault")
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument("--name", default="faults")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    return Options(
        cases=args.cases,
        nodes=args.nodes,
        rate=args.rate,
        concurrency=args.concurrency,
        faults=[f.strip() for f in args.faults.split(",") if f.strip()],
        downs={
            "broker-kill": args.broker_down,
            "broker-pause": args.pause,
            "pg-kill": args.pg_down,
            "service-kill": args.service_down,
        },
        slot_s=args.slot,
        drain_s=args.drain_timeout,
        name=args.name,
        out=args.out,
        keep_logs=args.keep_logs,
    )


def main() -> None:
    options = parse(sys.argv[1:])
    os.environ["ENLACE_ENV"] = "local"  # the demo agencies and keys of deploy/local
    result = asyncio.run(run(options))
    sys.exit(0 if all(c["met"] for c in result["criteria"]) else 1)


if __name__ == "__main__":
    main()
