"""Wait until a Kafka broker really answers: an admin client gets cluster metadata back.

An open port is not readiness (the socket server accepts connections before the
broker has caught up with the metadata log), and a fixed sleep is either too short
or too long. Exit 0 when ready, 1 with a message on stderr when the deadline passes
or the broker process (``--pid``) dies first.

Usage: kafka_ready.py --bootstrap 127.0.0.1:19092 --timeout 60 [--admin] [--pid N ...]
       [--brokers N | --broker-id ID] [--topic T ...]

``--brokers N``: at least N brokers registered (every node of a cluster). ``--broker-id
ID``: that broker registered (one node started again).

It connects with the KAFKA_* settings of the environment, or as the local admin with
``--admin`` (the scripts).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

from services.kit.kafka import KafkaClient, admin_client
from services.kit.local_secrets import kafka_client


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@dataclass(frozen=True)
class Want:
    """What ready means: brokers registered (and topics there)."""

    brokers: int = 1
    broker_id: int | None = None
    topics: tuple[str, ...] = ()


def _missing_brokers(cluster: dict[str, Any], want: Want) -> str | None:
    ids = sorted(int(b["node_id"]) for b in cluster.get("brokers") or [])
    if len(ids) < want.brokers:
        return f"{len(ids)} of {want.brokers} brokers registered ({ids})"
    if want.broker_id is not None and want.broker_id not in ids:
        return f"broker {want.broker_id} not registered yet (registered: {ids})"
    return None


async def _probe(client: KafkaClient, want: Want, attempt_timeout: float) -> str | None:
    """One attempt. Returns None when ready, else a short reason."""
    admin = admin_client(client, "enlace-kafka-ready")
    try:
        await asyncio.wait_for(admin.start(), attempt_timeout)
        cluster = await asyncio.wait_for(admin.describe_cluster(), attempt_timeout)
        missing = _missing_brokers(cluster, want)
        if missing:
            return missing
        # Best effort: have the broker create __consumer_offsets now rather than
        # during the first consumer group join of a test.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.find_coordinator("enlace-kafka-ready"), attempt_timeout)
        if want.topics:
            existing = set(await asyncio.wait_for(admin.list_topics(), attempt_timeout))
            absent = sorted(set(want.topics) - existing)
            if absent:
                return f"topics not there yet: {', '.join(absent)}"
        return None
    except Exception as exc:  # any failure just means "not ready yet"
        clear = client.explain(exc)
        return f"{type(exc).__name__}: {exc}" + (f" ({clear})" if clear else "")
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), 5)


async def wait_ready(client: KafkaClient, timeout_s: float, pids: list[int], want: Want) -> int:
    bootstrap = client.bootstrap
    deadline = time.monotonic() + timeout_s
    reason = "no attempt made"
    while True:
        dead = [pid for pid in pids if not _alive(pid)]
        if dead:
            print(f"kafka_ready: broker process {dead[0]} exited while starting", file=sys.stderr)
            return 1
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            print(
                f"kafka_ready: {bootstrap} not ready after {timeout_s:.0f}s; last error: {reason}",
                file=sys.stderr,
            )
            return 1
        reason_or_none = await _probe(client, want, max(1.0, min(10.0, remaining)))
        if reason_or_none is None:
            return 0
        reason = reason_or_none
        await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--admin", action="store_true", help="connect as the local admin")
    parser.add_argument("--plaintext", action="store_true", help="the bench's baseline broker")
    parser.add_argument(
        "--pid", type=int, action="append", default=[], help="give up early if this pid dies"
    )
    parser.add_argument("--brokers", type=int, default=1, help="at least this many brokers")
    parser.add_argument("--broker-id", type=int, default=None, help="this broker registered")
    parser.add_argument("--topic", action="append", default=[], help="also require this topic")
    args = parser.parse_args()
    # aiokafka logs every refused connection at ERROR while the broker boots: noise here.
    logging.basicConfig(level=logging.CRITICAL)
    if args.plaintext:
        client = KafkaClient(args.bootstrap, "PLAINTEXT")
    elif args.admin:
        client = kafka_client("admin", args.bootstrap)
    else:
        client = replace(KafkaClient.from_env(), bootstrap=args.bootstrap)
    want = Want(args.brokers, args.broker_id, tuple(args.topic))
    return asyncio.run(wait_ready(client, args.timeout, args.pid, want))


if __name__ == "__main__":
    sys.exit(main())
