"""The ground truth after a run: what the providers recorded (the local SMS provider's
`messages.jsonl`, the local SMTP server's Maildir) and every record of every topic,
read with the admin principal from the beginning to the end offsets.

Only what the checks need is kept: a message's recipient, the case reference it is
about and its kind (which event it tells of), never its text."""

from __future__ import annotations

import email.header
import email.parser
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from contracts.topics import all_topic_names
from faults.stack import Stack
from services.kit.kafka import admin_client
from tests.helpers import Record, TopicReader

REFERENCE = re.compile(r"\b[A-Z]{2}-[A-Z0-9]{1,3}-\d{4}-\d{6}\b")
# Which event a message tells of, from its first words (es and en templates of
# services/notifications/templates), after accents are stripped and case folded.
KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("referral.sent", re.compile(r"nueva derivacion|new referral")),
    ("referral.accepted", re.compile(r"aceptaron la derivacion|aceptada por|accepted")),
    ("referral.rejected", re.compile(r"rechazaron|rechazada|rejected")),
    ("referral.closed", re.compile(r"cerraron|cerrada|closed")),
    ("referral.overdue", re.compile(r"vencid|overdue|escala")),
    ("followup.due", re.compile(r"seguimiento|follow-up")),
)


def kind_of(text: str) -> str:
    folded = "".join(
        c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)
    ).lower()
    return next((kind for kind, pattern in KINDS if pattern.search(folded)), "unknown")


@dataclass(frozen=True)
class Delivered:
    """One message a provider accepted."""

    channel: str  # sms | email
    to: str
    reference: str | None
    kind: str
    provider_id: str  # SMS sid, or the e-mail's Message-ID
    client_reference: str | None = None  # what the sender gave the provider, if anything
    accepted_at: float = 0.0  # when the provider took it (epoch seconds)


def sms(log: Path) -> list[Delivered]:
    if not log.exists():
        return []
    found = []
    for line in log.read_bytes().splitlines():
        if not line.strip():
            continue
        record: dict[str, Any] = orjson.loads(line)
        body = str(record.get("body", ""))
        match = REFERENCE.search(body)
        found.append(
            Delivered(
                "sms",
                str(record.get("to")),
                match.group(0) if match else None,
                kind_of(body),
                str(record.get("sid")),
                record.get("client_reference"),
                float(record.get("accepted_at", 0.0)),
            )
        )
    return found


def mails(maildir: Path) -> list[Delivered]:
    """Every message in the Maildir; a file is written when SMTP said 250."""
    parser = email.parser.BytesHeaderParser()
    found = []
    for folder in ("new", "cur"):
        directory = maildir / folder
        if not directory.exists():
            continue
        for path in directory.iterdir():
            with path.open("rb") as handle:
                headers = parser.parse(handle)
            subject = str(
                email.header.make_header(email.header.decode_header(headers["Subject"] or ""))
            )
            match = REFERENCE.search(subject)
            found.append(
                Delivered(
                    "email",
                    str(headers["To"]),
                    match.group(0) if match else None,
                    kind_of(subject),
                    str(headers["Message-ID"]),
                    accepted_at=path.stat().st_mtime,
                )
            )
    return found


@dataclass
class Topics:
    records: dict[str, list[Record]] = field(default_factory=dict)

    def of(self, topic: str) -> list[Record]:
        return self.records.get(topic, [])

    def events(self, topic: str, *types: str) -> Iterator[Record]:
        for record in self.of(topic):
            if not types or record.type in types:
                yield record


async def topics(stack: Stack, timeout: float = 300.0) -> Topics:
    reader = TopicReader(stack.kafka(), "")
    read = Topics()
    for name in all_topic_names():
        read.records[name] = await reader.read(name, timeout=timeout)
    return read


async def readers(stack: Stack) -> dict[str, set[str]]:
    """Which consumer groups have committed offsets on which topic."""
    admin = admin_client(stack.kafka(), "enlace-faults-readers")
    await admin.start()
    try:
        found: dict[str, set[str]] = {}
        for group, *_ in await admin.list_consumer_groups():
            for tp, offset in (await admin.list_consumer_group_offsets(group)).items():
                if offset.offset >= 0:
                    found.setdefault(tp.topic, set()).add(group)
        return found
    finally:
        await admin.close()
