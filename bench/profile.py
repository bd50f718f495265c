"""Where the time goes: the whole pipeline at one rate, with CPU per case per process,
statements per case per database, and (with py-spy) a profile of each service.

    make profile                      # 30 cases/s for 30 s
    make profile PROFILE_ARGS="--rate 40 --seconds 20 --py-spy"

It starts a private stack as `make bench` does (`faults.stack`), warms it up, then
posts cases at the rate while reading each process's CPU time from /proc, PostgreSQL's
`pg_stat_statements` (statements by calls and time, normalised: no parameter values)
and, with `--py-spy`, samples each service with py-spy into
`.local/profile/<service>.txt` (collapsed stacks: one line per stack and its count,
for flame graph tools), summarised here by the frames that take the most samples.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import asyncpg

from faults import expect
from faults.load import Load
from faults.stack import PROVIDERS, SERVICES, Stack
from services.kit.settings import REPO_ROOT

OUT = REPO_ROOT / ".local" / "profile"
TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICKS


def _pids(stack: Stack) -> dict[str, list[int]]:
    pids = {name: [pid] for name in (*SERVICES, *PROVIDERS) if (pid := stack.service_pid(name))}
    nodes = range(1, stack.nodes + 1)
    pids["kafka"] = [pid for node in nodes if (pid := stack.kafka_pid(node)) is not None]
    postmaster = int(stack.pg("pid").strip().splitlines()[-1])
    pids["postgresql"] = [postmaster, *map(int, _children(postmaster))]
    pids["load (this process)"] = [os.getpid()]
    return pids


def _children(pid: int) -> list[str]:
    """The postmaster's backends and workers (those alive now: the services' pools)."""
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return found.stdout.split()


async def _statements(stack: Stack, reset: bool) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(stack.admin_dsn())
    try:
        if reset:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            await conn.execute("SELECT pg_stat_statements_reset()")
            return []
        return list(
            await conn.fetch(
                """SELECT d.datname, s.calls, s.total_exec_time,
                          left(regexp_replace(s.query, '\\s+', ' ', 'g'), 100) AS query
                   FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
                   WHERE d.datname LIKE 'enlace_%' ORDER BY s.calls DESC"""
            )
        )
    finally:
        await conn.close()


def _spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    command = ["py-spy", "record", "--rate", "50", "--duration", str(int(seconds))]
    command += ["--format", "raw", "--output", str(out), "--pid", str(pid)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _hot_frames(collapsed: Path, count: int = 12) -> list[tuple[int, str]]:
    """Frames by inclusive samples, from py-spy's collapsed stacks (main thread)."""
    inclusive: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or stack.startswith(("Thread", "_bootstrap")):
            continue
        for frame in set(stack.split(";")):
            if "services/" in frame:
                inclusive[frame] += int(samples)
    return [(n, frame) for frame, n in inclusive.most_common(count)]


async def profile(rate: float, seconds: float, py_spy: bool) -> None:
    stack = Stack(f"profile-{uuid.uuid4().hex[:6]}", 1)
    try:
        await stack.start()
        warm = Load(
            stack.url("intake"), expect.templates(), cases=150, rate=10, t0=time.monotonic()
        )
        await warm.run()
        pids = _pids(stack)
        await _statements(stack, reset=True)
        before = {name: _cpu_seconds(p) for name, p in pids.items()}
        spies = {}
        if py_spy:
            OUT.mkdir(parents=True, exist_ok=True)
            spies = {s: _spy(pids[s][0], seconds, OUT / f"{s}.txt") for s in SERVICES}
        cases = round(rate * seconds)
        load = Load(
            stack.url("intake"),
            expect.templates(),
            cases=cases,
            rate=rate,
            concurrency=max(32, int(rate)),
            t0=time.monotonic(),
        )
        await load.run()
        for spy in spies.values():
            await asyncio.to_thread(spy.wait)
        after = {name: _cpu_seconds(p) for name, p in pids.items()}
        statements = await _statements(stack, reset=False)
    finally:
        await asyncio.to_thread(stack.stop, None)
    print(f"{cases} cases at {rate:g}/s on {os.cpu_count()} cores\n\nCPU per case:")
    total = 0.0
    for name in pids:
        per_case = (after[name] - before[name]) * 1000 / cases
        total += per_case
        print(f"  {name:<22} {per_case:6.1f} ms")
    print(f"  {'total':<22} {total:6.1f} ms\n\nStatements per case:")
    by_db: collections.Counter[str] = collections.Counter()
    for row in statements:
        by_db[row["datname"]] += row["calls"]
    for db, calls in by_db.most_common():
        print(f"  {db:<22} {calls / cases:6.1f}")
    print("\nMost frequent statements (per case, mean ms in PostgreSQL):")
    for row in statements[:20]:
        mean = row["total_exec_time"] / max(1, row["calls"])
        db = row["datname"].removeprefix("enlace_")
        print(f"  {db:<14} {row['calls'] / cases:5.2f} {mean:6.3f}  {row['query']}")
    for service in spies:
        print(f"\n{service}: frames of the product taking the most samples (inclusive)")
        for samples, frame in _hot_frames(OUT / f"{service}.txt"):
            print(f"  {samples:6d}  {frame[:110]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=30.0, help="cases per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the load")
    parser.add_argument("--py-spy", action="store_true", help="sample each service")
    args = parser.parse_args()
    if args.py_spy and shutil.which("py-spy") is None:
        parser.error("py-spy is not installed (pip install py-spy: a dev dependency)")
    asyncio.run(profile(args.rate, args.seconds, args.py_spy))


if __name__ == "__main__":
    main()
