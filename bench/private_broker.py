"""A private, unauthenticated broker for the bench's PLAINTEXT baseline alone.

The shared local broker has no PLAINTEXT listener (issue 9): to show what TLS and
SCRAM cost, `make bench` starts a broker of its own with `deploy/local/kafka.sh`
(instance `bench-plaintext`, which kafka.sh allows to be PLAINTEXT because its name
starts with `bench-`), on free ports, holds no data but the bench's synthetic events,
and stops and deletes it as soon as the baseline is measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

from services.kit.kafka import KafkaClient
from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[1]
INSTANCE = "bench-plaintext"
INSTANCE_DIR = REPO / ".local" / INSTANCE
RUN_DIR = REPO / ".local" / "run"


def _kafka_sh(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [str(REPO / "deploy" / "local" / "kafka.sh"), *args],
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"kafka.sh {' '.join(args)} ({INSTANCE}):\n{done.stdout}{done.stderr}")


def _remove() -> None:
    shutil.rmtree(INSTANCE_DIR, ignore_errors=True)
    for leftover in (RUN_DIR / f"{INSTANCE}.pid", RUN_DIR / f"{INSTANCE}.lock"):
        leftover.unlink(missing_ok=True)


@contextlib.asynccontextmanager
async def plaintext_broker() -> AsyncIterator[KafkaClient]:
    """Start the private PLAINTEXT broker; yield a client of it; stop and delete it."""
    port = free_port()
    controller_port = free_port()
    while controller_port == port:
        controller_port = free_port()
    env = {
        **os.environ,
        "ENLACE_KAFKA_INSTANCE": INSTANCE,
        "ENLACE_KAFKA_PLAINTEXT_BASELINE": "1",
        "ENLACE_KAFKA_PORT": str(port),
        "ENLACE_KAFKA_CONTROLLER_PORT": str(controller_port),
    }
    # A previous run killed before its cleanup: its broker (found by its config
    # path, whatever its ports) is stopped and its files go.
    await asyncio.to_thread(_kafka_sh, env, "stop")
    await asyncio.to_thread(_remove)
    try:
        await asyncio.to_thread(_kafka_sh, env, "start")
        yield KafkaClient(f"127.0.0.1:{port}", "PLAINTEXT")
    finally:
        try:
            await asyncio.to_thread(_kafka_sh, env, "stop")
        finally:
            await asyncio.to_thread(_remove)
