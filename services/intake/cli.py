"""Intake's command line, for operators on the server (settings from the environment,
as the service reads them):

    python -m services.intake                       run the service
    python -m services.intake keys status           KEK versions and data keys per version
    python -m services.intake keys rotate           new KEK; re-wrap every data key under it
    python -m services.intake keys rotate --rewrap-only
    python -m services.intake keys retire KEK       destroy a KEK no data key needs ("file:1")
    python -m services.intake retention --dry-run   the cases retention would erase now
    python -m services.intake retention             erase them now

Each prints JSON and exits 0, or prints the refusal and exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from services.intake import commands
from services.intake.app import IntakeSettings, build_vault, main
from services.intake.commands import keys
from services.kit.clock import SystemClock
from services.kit.db import create_pool
from services.kit.errors import DomainError
from services.kit.logging import configure_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.intake")
    sub = parser.add_subparsers(dest="command")
    key = sub.add_parser("keys", help="key-encryption keys").add_subparsers(
        dest="action", required=True
    )
    key.add_parser("status")
    rotate = key.add_parser("rotate")
    rotate.add_argument("--rewrap-only", action="store_true")
    key.add_parser("retire").add_argument("kek", help='a KEK version, e.g. "file:1"')
    retention = sub.add_parser("retention", help="erase cases past their retention")
    retention.add_argument("--dry-run", action="store_true")
    retention.add_argument("--limit", type=int, default=1000, help="dry run: at most this many")
    return parser


async def _run(args: argparse.Namespace) -> Any:
    settings = IntakeSettings()
    vault = build_vault(settings)
    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        if args.command == "keys":
            if args.action == "status":
                return await keys.key_status(pool, vault)
            if args.action == "rotate":
                return await keys.rotate(pool, vault, rewrap_only=args.rewrap_only)
            return await keys.retire(pool, vault, args.kek)
        clock = SystemClock()
        if args.dry_run:
            async with pool.acquire() as conn:
                due = await commands.retention_due(
                    conn, now=clock.now(), months=settings.retention_months, limit=args.limit
                )
            return {"retention_months": settings.retention_months, "would_erase": due}
        erased = await commands.apply_retention(
            pool, clock=clock, source=settings.event_source, months=settings.retention_months
        )
        return {"retention_months": settings.retention_months, "erased": erased}
    finally:
        await pool.close()


def run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        main()
        return 0
    configure_logging(stream=sys.stderr)  # standard output is for the result
    try:
        result = asyncio.run(_run(args))
    except DomainError as refused:
        print(f"{refused.title}: {refused.detail}", file=sys.stderr)
        return 2
    # asyncpg's UUIDs are not uuid.UUID: orjson is told to print them as text.
    sys.stdout.write(orjson.dumps(result, default=str, option=orjson.OPT_INDENT_2).decode())
    sys.stdout.write("\n")
    return 0
