"""A private stack of the four services for the end-to-end tests, as `make run` runs
them: separate processes started by deploy/local/services.sh, the local SMTP server
keeping a Maildir and the local SMS provider keeping a JSONL log. Its own ports,
databases, topics, consumer groups and state directory, so it runs beside a
developer's `make run`."""

from __future__ import annotations

import asyncio
import contextlib
import email
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.helpers import auth, free_port, poll_until
from tests.infra import Infra, create_database, drop_database

REPO = Path(__file__).resolve().parents[2]
SERVICES_SH = REPO / "deploy" / "local" / "services.sh"
SERVICES = ("intake", "referral", "followup", "notifications")
# What services.sh starts: the four and the operations service.
STACK_SERVICES = (*SERVICES, "ops")
# The receiving desks of a Piura case in deploy/directory.yaml (mandatory pathways).
UPE_DESK = ("upe-piura", "upe-piura-proteccion", "ct-upe-piura-mesa", "+51911000603")
CEM_DESK = ("cem-piura", "cem-piura-atencion", "ct-cem-piura-admision", "+51911000703")
DONE = {"sent", "delivered"}


@dataclass(frozen=True)
class Stack:
    env: dict[str, str]
    urls: dict[str, str]
    state: Path
    databases: dict[str, str]  # service -> its database

    def stop(self) -> None:
        """Stop every process (idempotent): their logs are complete afterwards."""
        services_sh("stop", self.env)

    def sms(self) -> list[dict[str, Any]]:
        log = self.state / "sms" / "messages.jsonl"
        if not log.exists():
            return []
        return [orjson.loads(line) for line in log.read_bytes().splitlines() if line.strip()]

    def mails(self) -> list[Message]:
        new = self.state / "mail" / "new"
        if not new.exists():
            return []
        return [email.message_from_bytes(p.read_bytes()) for p in sorted(new.iterdir())]

    def texts_about(self, reference: str, to: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.sms() if reference in m["body"] and (to is None or m["to"] == to)]

    def mails_about(self, reference: str, to: str | None = None) -> list[Message]:
        return [
            m
            for m in self.mails()
            if reference in str(m["Subject"]) and (to is None or str(m["To"]) == to)
        ]


def services_sh(command: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", str(SERVICES_SH), command],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"services.sh {command} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@contextlib.asynccontextmanager
async def private_stack(infra: Infra, namespace: str, name: str) -> AsyncIterator[Stack]:
    """The four services and the local providers, started; stopped and removed after.
    `name` ([a-z0-9-]) names the stack, its state directory and its databases."""
    prefix = f"{name.replace('-', '_')}_"
    for service in STACK_SERVICES:
        await create_database(infra, f"{prefix}{service}", service)
    ports = {n: str(free_port()) for n in (*STACK_SERVICES, "smtp", "smtp_api", "sms")}
    env = {
        **os.environ,
        "ENLACE_STACK": name,
        "ENLACE_DB_PREFIX": prefix,
        "ENLACE_TOPIC_NAMESPACE": namespace,
        "ENLACE_QUIET_HOURS_CHANNELS": "[]",  # the test must not depend on Lima's clock
        **{f"ENLACE_{n.upper()}_PORT": port for n, port in ports.items()},
    }
    state = REPO / ".local" / "stacks" / name
    try:
        await asyncio.to_thread(services_sh, "start", env)
        yield Stack(
            env=env,
            urls={n: f"http://127.0.0.1:{ports[n]}" for n in STACK_SERVICES},
            state=state,
            databases={s: f"{prefix}{s}" for s in STACK_SERVICES},
        )
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(services_sh, "stop", env)
        for service in STACK_SERVICES:
            with contextlib.suppress(Exception):
                await drop_database(infra, f"{prefix}{service}")
        shutil.rmtree(state, ignore_errors=True)


async def deliveries_done(
    stack: Stack, http: httpx.AsyncClient, case_id: str, count: int
) -> list[dict[str, Any]]:
    """The case's delivery log once `count` deliveries are accepted by the providers."""

    async def log() -> list[dict[str, Any]]:
        answer = await http.get(
            f"{stack.urls['notifications']}/v1/notifications",
            params={"case_id": case_id},
            headers=auth("ong-amanecer"),
        )
        if answer.status_code == 404:  # notifications has not seen the case yet
            return []
        assert answer.status_code == 200, answer.text
        rows: list[dict[str, Any]] = answer.json()["notifications"]
        return rows

    return await poll_until(
        log,
        lambda rows: len(rows) >= count and all(r["status"] in DONE for r in rows),
        timeout=60,
        interval=0.2,
        what=f"{count} deliveries of case {case_id} accepted by the providers",
    )
