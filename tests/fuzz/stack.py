"""The four services as `make run` runs them: one process each (`python -m
services.<name>`, uvicorn through services/kit/runtime.serve), configured through the
environment alone, on free loopback ports, beside the local SMTP and SMS providers
notifications sends through. Each process writes its log to a file that `LogWatch`
reads: a traceback or an error-level line there is a failure of the run.

Processes, not apps in the test's event loop: schemathesis' pytest integration is
synchronous and would block the loop the services ran in."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import AliasChoices, SecretStr

from services.followup.app import FollowupSettings
from services.intake.app import IntakeSettings
from services.kit.settings import ServiceSettings
from services.notifications.app import NotificationsSettings
from services.referral.app import ReferralSettings
from tests.helpers import poll_until

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("intake", "referral", "followup", "notifications")
SETTINGS: dict[str, type[ServiceSettings]] = {
    "intake": IntakeSettings,
    "referral": ReferralSettings,
    "followup": FollowupSettings,
    "notifications": NotificationsSettings,
}
# Variables a developer's shell may hold for `make run`: never inherited by the stack.
_OWN_PREFIXES = ("ENLACE_", "KAFKA_", "DATABASE_URL")
_ERROR_LEVELS = {"error", "critical", "fatal", "exception"}


def settings_env(settings: ServiceSettings) -> dict[str, str]:
    """The environment variables that give a service process these settings: every
    setting chosen explicitly, under the name pydantic-settings reads it from."""
    dumped = settings.model_dump(mode="json")
    env: dict[str, str] = {}
    for name in sorted(settings.model_fields_set):
        alias = type(settings).model_fields[name].validation_alias
        if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
            key = alias.choices[0]
        elif isinstance(alias, str):
            key = alias
        else:
            key = f"ENLACE_{name.upper()}"
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            env[key] = value.get_secret_value()
        else:
            plain = dumped[name]
            env[key] = plain if isinstance(plain, str) else json.dumps(plain)
    return env


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
    return {**inherited, "PYTHONUNBUFFERED": "1", **extra}


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Stack:
    """Processes started by this run (stopped by their pid, nothing else)."""

    root: Path
    processes: dict[str, Process] = field(default_factory=dict)
    watch: LogWatch | None = None  # the services' logs, once they started

    def start(self, name: str, argv: list[str], env: Mapping[str, str], port: int) -> Process:
        log = self.root / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [sys.executable, *argv],
                cwd=REPO,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        process = Process(name, popen, log, port)
        self.processes[name] = process
        return process

    def url(self, name: str) -> str:
        return self.processes[name].url

    async def wait_ready(self, name: str, *, timeout: float = 90.0) -> None:
        """Until /readyz says ready (a provider: until its port answers)."""
        process = self.processes[name]

        async def ready() -> bool | str:
            if process.popen.poll() is not None:
                return f"exited with {process.popen.returncode}"
            if name not in SERVICES:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", process.port), timeout=1),
                ):
                    return True
                return False
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    answer = await client.get(f"{process.url}/readyz")
            except httpx.HTTPError:
                return False
            return answer.status_code == 200

        state = await poll_until(
            ready,
            lambda s: s is True or isinstance(s, str),
            timeout=timeout,
            interval=0.2,
            what=f"{name} ready ({process.log})",
        )
        if state is not True:
            raise AssertionError(f"{name} {state}:\n{tail(process.log)}")

    def stop(self, *, grace: float = 30.0) -> None:
        """SIGTERM every process of this stack (services first), then wait; SIGKILL
        what outlives the grace period."""
        for process in reversed(list(self.processes.values())):
            if process.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.popen.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait(timeout=10)


def tail(log: Path, lines: int = 40) -> str:
    if not log.exists():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def is_error_line(line: str) -> bool:
    """A traceback, or a log record at error level or above."""
    if "Traceback (most recent call last)" in line:
        return True
    try:
        record: Any = json.loads(line)
    except ValueError:
        return "error" in line.lower()
    if not isinstance(record, dict):
        return False
    level = str(record.get("level", "")).lower()
    return level in _ERROR_LEVELS or "exception" in record


class LogWatch:
    """Error lines of the services' logs, read from where the last call stopped."""

    def __init__(self, logs: Mapping[str, Path]) -> None:
        self.logs = dict(logs)
        self.offsets = dict.fromkeys(self.logs, 0)

    def new_errors(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for name, log in self.logs.items():
            if not log.exists():
                continue
            with log.open("rb") as handle:
                handle.seek(self.offsets[name])
                chunk = handle.read()
            # Only whole lines: a record being written is read next time.
            whole = chunk[: chunk.rfind(b"\n") + 1]
            self.offsets[name] += len(whole)
            lines = whole.decode(errors="replace").splitlines()
            bad = [line for line in lines if line.strip() and is_error_line(line)]
            if bad:
                found[name] = bad
        return found


def format_errors(found: Mapping[str, list[str]], limit: int = 20) -> str:
    parts = []
    for name, lines in found.items():
        shown = "\n  ".join(line[:2000] for line in lines[:limit])
        more = f"\n  ... and {len(lines) - limit} more" if len(lines) > limit else ""
        parts.append(f"{name}: {len(lines)} error line(s)\n  {shown}{more}")
    return "\n".join(parts)
