"""A stopped service reaches the operations address: a private stack (services.sh with
ENLACE_STACK, its local SMTP server keeping a Maildir), a private Prometheus and
Alertmanager started by deploy/local/monitoring.sh on free ports, watching it. One
service is stopped; the "not ready" alert e-mail naming it arrives in the Maildir.

Prometheus scrapes the four business services only, not ops: the alert then rests on
`up` alone, which the stop itself turns to 0. ops' `enlace_service_ready` is the
alert's second signal (a service that answers but whose /readyz says 503), tested in
rules_test.yml; here it would only add ops' sampling delay (its first sample, taken
while the stack starts, can say "not ready" about a service that is ready by now).

Shortened for the test, through monitoring.sh's settings: scrape and evaluation every
second, Alertmanager's group wait and interval one second, and a rules file derived
from deploy/monitoring/rules.yml whose EnlaceServiceNotReady waits `for: 3s` instead of
two minutes (the expression and every other rule unchanged)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.e2e.stack import REPO, Stack, private_stack
from tests.helpers import free_port, poll_until
from tests.infra import Infra

MONITORING_SH = REPO / "deploy" / "local" / "monitoring.sh"
RULES = REPO / "deploy" / "monitoring" / "rules.yml"
NOT_READY = "EnlaceServiceNotReady"
SHORT_FOR = "3s"
OPERATIONS = "operaciones@enlace.example.org"
STOPPED = "referral"
WATCHED = ("intake", "referral", "followup", "notifications")


def monitoring_sh(command: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", str(MONITORING_SH), command],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"monitoring.sh {command} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def short_rules(path: Path) -> Path:
    """rules.yml with the not-ready alert's `for:` shortened; everything else as is."""
    document = yaml.safe_load(RULES.read_text())
    found = 0
    for group in document["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == NOT_READY:
                rule["for"] = SHORT_FOR
                found += 1
    assert found == 1, f"{NOT_READY} not in {RULES}"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@contextlib.asynccontextmanager
async def monitoring(stack: Stack, services: tuple[str, ...]) -> AsyncIterator[dict[str, str]]:
    """A private Prometheus and Alertmanager on the stack's state, stopped afterwards."""
    rules = short_rules(stack.state / "rules-short.yml")
    env = {
        **stack.env,
        "ENLACE_PROMETHEUS_PORT": str(free_port()),
        "ENLACE_ALERTMANAGER_PORT": str(free_port()),
        "ENLACE_MONITORED_SERVICES": " ".join(services),
        "ENLACE_PROMETHEUS_RULES": str(rules),
        "ENLACE_PROMETHEUS_SCRAPE_INTERVAL": "1s",
        "ENLACE_PROMETHEUS_EVALUATION_INTERVAL": "1s",
        "ENLACE_ALERTMANAGER_GROUP_WAIT": "1s",
        "ENLACE_ALERTMANAGER_GROUP_INTERVAL": "1s",
    }
    try:
        await asyncio.to_thread(monitoring_sh, "start", env)
        yield env
    finally:
        await asyncio.to_thread(monitoring_sh, "stop", env)


async def query(http: httpx.AsyncClient, env: dict[str, str], promql: str) -> list[Any]:
    answer = await http.get(
        f"http://127.0.0.1:{env['ENLACE_PROMETHEUS_PORT']}/api/v1/query", params={"query": promql}
    )
    assert answer.status_code == 200, answer.text
    result: list[Any] = answer.json()["data"]["result"]
    return result


def text_of(message: Message) -> str:
    parts = message.walk() if message.is_multipart() else iter([message])
    texts = []
    for part in parts:
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            texts.append(payload.decode(part.get_content_charset() or "utf-8"))
    return "\n".join(texts)


def not_ready_mails(stack: Stack, service: str) -> list[Message]:
    return [
        m
        for m in stack.mails()
        if NOT_READY in str(m["Subject"]) and f" {service}" in str(m["Subject"])
    ]


async def test_a_stopped_service_mails_the_not_ready_alert(infra: Infra, namespace: str) -> None:
    started = time.monotonic()
    async with (
        private_stack(infra, namespace, "mon-alert") as stack,
        monitoring(stack, WATCHED) as env,
        httpx.AsyncClient(timeout=5.0) as http,
    ):
        # Prometheus sees the service up, and no not-ready alert about it.
        await poll_until(
            lambda: query(http, env, f'up{{job="enlace-{STOPPED}"}} == 1'),
            timeout=20,
            interval=0.2,
            what=f"Prometheus scraping {STOPPED}",
        )
        alerts = f'ALERTS{{alertname="{NOT_READY}",service="{STOPPED}"}}'
        assert await query(http, env, alerts) == []
        assert not_ready_mails(stack, STOPPED) == []

        pid = int((stack.state / "run" / f"{STOPPED}.pid").read_text())
        os.kill(pid, signal.SIGTERM)
        stopped = time.monotonic()

        mails = await poll_until(
            lambda: asyncio.to_thread(not_ready_mails, stack, STOPPED),
            timeout=40,
            interval=0.2,
            what=f"the {NOT_READY} e-mail about {STOPPED} in {stack.state / 'mail' / 'new'}",
        )
        arrived = time.monotonic()
        mail = mails[0]
        assert str(mail["To"]) == OPERATIONS
        assert str(mail["From"]) == "alertas@enlace.example.org"
        assert str(mail["Subject"]).startswith("[Enlace] [FIRING:1]")
        body = text_of(mail)
        assert f"Enlace service {STOPPED} is not ready" in body
        assert f"service={STOPPED}" in body
        assert "severity=critical" in body
        # Only the stopped one: the services still running raised no such alert.
        for running in set(WATCHED) - {STOPPED}:
            assert not_ready_mails(stack, running) == [], running
        print(
            f"alert e-mail {arrived - stopped:.1f} s after the stop; "
            f"test {arrived - started:.1f} s with the stack's start"
        )
