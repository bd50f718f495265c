"""Operations' command line, for a server without a browser (settings from the
environment, as the service reads them: DATABASE_URL of the ops database, the
KAFKA_* settings of svc-ops, ENLACE_TOPIC_NAMESPACE):

    python -m services.ops                                  run the service
    python -m services.ops dlq list [--topic T] [--error-type E] [--service S]
                                    [--event-type X] [--status open|redriven|discarded]
    python -m services.ops dlq show TOPIC:PARTITION:OFFSET
    python -m services.ops dlq redrive REF... [--reason R] [--force] [--who NAME]
    python -m services.ops dlq discard REF... --reason R [--force] [--who NAME]
    python -m services.ops lag [--group G] [--topic T]
    python -m services.ops audit [--limit N]

REF is TOPIC:PARTITION:OFFSET of a dead letter (its .dlq topic). The audit names who
acted: --who, else ENLACE_OPS_WHO, else "cli:<login name>". `--json` prints JSON
(show, redrive and discard always do); otherwise a table. Exit 0, or 2 with the
refusal on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from services.kit.db import create_pool, migrate
from services.kit.errors import DomainError
from services.kit.kafka import make_producer, start_producer
from services.kit.logging import configure_logging
from services.ops.app import MIGRATIONS, OpsSettings, main
from services.ops.commands import Operations
from services.ops.domain import STATUSES, DeadLetterFilter, RecordRef
from services.ops.kafka_view import KafkaView


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.ops")
    sub = parser.add_subparsers(dest="command")
    dlq = sub.add_parser("dlq", help="dead letters").add_subparsers(dest="action", required=True)
    listing = dlq.add_parser("list")
    listing.add_argument("--topic")
    listing.add_argument("--error-type")
    listing.add_argument("--service", help="the refusing service")
    listing.add_argument("--event-type")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--limit", type=int, default=200)
    listing.add_argument("--json", action="store_true")
    dlq.add_parser("show").add_argument("ref", help="TOPIC:PARTITION:OFFSET")
    for name in ("redrive", "discard"):
        action = dlq.add_parser(name)
        action.add_argument("refs", nargs="+", metavar="REF", help="TOPIC:PARTITION:OFFSET")
        action.add_argument("--reason", required=name == "discard", default="")
        action.add_argument("--force", action="store_true")
        action.add_argument("--who", default=None)
    lag = sub.add_parser("lag", help="consumer lag now")
    lag.add_argument("--group")
    lag.add_argument("--topic")
    lag.add_argument("--json", action="store_true")
    audit = sub.add_parser("audit", help="redrives and discards")
    audit.add_argument("--limit", type=int, default=50)
    return parser


def who_acts(flag: str | None) -> str:
    return flag or os.environ.get("ENLACE_OPS_WHO") or f"cli:{getpass.getuser()}"


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[str(r.get(c, "")) if r.get(c) is not None else "-" for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _dump(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, list):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


async def _run(args: argparse.Namespace) -> str:
    settings = OpsSettings()
    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    producer: AIOKafkaProducer | None = None

    async def get_producer() -> AIOKafkaProducer:
        nonlocal producer
        if producer is None:
            producer = await start_producer(
                make_producer(settings.kafka, "enlace-ops-cli"), settings.kafka
            )
        return producer

    kafka = KafkaView(
        settings.kafka, namespace=settings.topic_namespace, group_filter=settings.lag_group_filter
    )
    http = httpx.AsyncClient()
    ops = Operations(
        pool=lambda: pool,
        kafka=kafka,
        producer=get_producer,
        namespace=settings.topic_namespace,
        services=settings.watched,
        http=http,
    )
    try:
        await migrate(pool, MIGRATIONS, settings.service_name)
        return await _dispatch(ops, args)
    finally:
        await kafka.close()
        await http.aclose()
        if producer is not None:
            await producer.stop()
        await pool.close()


async def _dispatch(ops: Operations, args: argparse.Namespace) -> str:
    if args.command == "lag":
        groups = await ops.lag_now(args.group, args.topic)
        if args.json:
            return _dump(groups)
        rows = [p.model_dump() for g in groups for p in g.partitions]
        return _table(rows, ["group", "topic", "partition", "committed", "end", "lag"])
    if args.command == "audit":
        return _dump(await ops.audit(args.limit))
    if args.action == "list":
        filters = DeadLetterFilter(
            topic=args.topic,
            error_type=args.error_type,
            service=args.service,
            event_type=args.event_type,
            status=args.status,
            limit=args.limit,
        )
        letters = await ops.list_dead_letters(filters)
        if args.json:
            return _dump(letters)
        return _table(
            [{**d.model_dump(), "ref": f"{d.topic}:{d.partition}:{d.offset}"} for d in letters],
            [
                "ref",
                "status",
                "received_at",
                "consumer_service",
                "event_type",
                "error_type",
                "case_reference",
                "attempts",
            ],
        )
    if args.action == "show":
        return _dump(await ops.show_dead_letter(RecordRef.parse(args.ref, "ref")))
    refs = [RecordRef.parse(r, "refs") for r in args.refs]
    if args.action == "redrive":
        return _dump(
            await ops.redrive(refs, who=who_acts(args.who), reason=args.reason, force=args.force)
        )
    return _dump(
        await ops.discard(refs, who=who_acts(args.who), reason=args.reason, force=args.force)
    )


def run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        main()
        return 0
    configure_logging("WARNING", stream=sys.stderr)
    try:
        print(asyncio.run(_run(args)))
    except DomainError as exc:
        print(f"refused: {exc.title}: {exc.detail}", file=sys.stderr)
        return 2
    return 0
