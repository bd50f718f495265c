"""A partner agency's Kafka consumer for its Enlace feed topic: a minimal example.

Each agency with a Kafka feed has one topic, `protection.partner.<agency id>.v1`,
carrying exactly the events that concern it (its own cases, referrals it sent or
received, follow-ups addressed to it). Only the agency's principal may read it:
SASL_SSL with SCRAM-SHA-512, the username being the agency id, the password issued by
Enlace's operations, consumer groups named `<agency id>.<anything>`.

Records are CloudEvents in the Kafka binding's binary mode: the value is the event's
data (JSON), the attributes are headers (`ce_id`, `ce_type`, `ce_source`, `ce_time`,
`ce_subject`, `ce_specversion`, `ce_dataschema`, `content-type`, `traceparent`), and
the key is the case id, so everything about one case is in one partition, in order.

This consumer decodes each record, skips an event already handled (same `ce_id`: a
record may arrive twice after a rebalance or a redelivery), hands it to a function,
and commits the offset only after that function returned (at-least-once).

Run it (needs only aiokafka, see requirements.txt):

    KAFKA_SASL_PASSWORD="$(cat .local/secrets/kafka/red-reencuentro.password)" \
    python examples/partner/kafka_consumer.py --username red-reencuentro \
        --cafile .local/secrets/kafka-tls/ca.crt --group red-reencuentro.case-system
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import signal
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.helpers import create_ssl_context


def feed_topic(agency_id: str) -> str:
    return f"protection.partner.{agency_id}.v1"


@dataclass(frozen=True)
class FeedConfig:
    bootstrap: str  # host:port[,host:port...]
    username: str  # your agency id: the SCRAM principal
    password: str = field(repr=False)
    cafile: str = ""  # the CA of the brokers' certificates; empty: the system's
    topic: str = ""  # empty: protection.partner.<username>.v1
    group: str = ""  # empty: <username>.case-system
    security_protocol: str = "SASL_SSL"
    sasl_mechanism: str = "SCRAM-SHA-512"

    @property
    def topic_name(self) -> str:
        return self.topic or feed_topic(self.username)

    @property
    def group_id(self) -> str:
        group = self.group or f"{self.username}.case-system"
        if not group.startswith(f"{self.username}."):
            raise ValueError(f"consumer group {group!r} must start with '{self.username}.'")
        return group

    def consumer_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
            "group_id": self.group_id,
            "enable_auto_commit": False,  # committed after handling, below
            "auto_offset_reset": "earliest",  # a new group starts at the oldest record
        }
        if self.security_protocol in ("SASL_SSL", "SSL"):
            kwargs["ssl_context"] = create_ssl_context(cafile=self.cafile or None)
        if self.security_protocol.startswith("SASL_"):
            kwargs |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        return kwargs


@dataclass(frozen=True)
class Event:
    """One CloudEvent as read from the feed (binary mode)."""

    id: str
    type: str
    source: str
    subject: str  # the case id (also the record's key)
    time: str
    data: Any
    attributes: dict[str, str]  # every ce_* header without its prefix, and the others
    key: str | None
    partition: int
    offset: int


def decode(record: ConsumerRecord[bytes, bytes]) -> Event | None:
    """The record as an Event; None when it is not a CloudEvent (no ce_id/ce_type)."""
    headers = {k: v.decode() for k, v in record.headers or ()}
    attributes = {k.removeprefix("ce_"): v for k, v in headers.items()}
    if "ce_id" not in headers or "ce_type" not in headers:
        return None
    return Event(
        id=headers["ce_id"],
        type=headers["ce_type"],
        source=headers.get("ce_source", ""),
        subject=headers.get("ce_subject", ""),
        time=headers.get("ce_time", ""),
        data=json.loads(record.value) if record.value else None,
        attributes=attributes,
        key=record.key.decode() if record.key is not None else None,
        partition=record.partition,
        offset=record.offset,
    )


class SeenIds:
    """The ce_ids already handled, the most recent `capacity` of them. In memory for
    the example: a real system records them in its database in the same transaction
    as the event's effects, so a restart forgets nothing."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def add(self, event_id: str) -> None:
        self._ids[event_id] = None
        self._ids.move_to_end(event_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


# What the consumer does with each new event: a plain or an async function.
EventHandler = Callable[[Event], Awaitable[None] | None]


def print_event(event: Event) -> None:
    """The default handler: what arrived, never the event's data."""
    print(f"received {event.type} id={event.id} subject={event.subject}", flush=True)


@dataclass
class Consumed:
    handled: int = 0  # new events handed to the handler
    duplicates: int = 0  # records of a ce_id already handled
    skipped: int = 0  # records that are not CloudEvents


async def consume(
    config: FeedConfig,
    on_event: EventHandler = print_event,
    *,
    stop_after: int | None = None,
    stop: asyncio.Event | None = None,
    seen: SeenIds | None = None,
) -> Consumed:
    """Read the feed until `stop_after` new events were handled or `stop` is set.
    Records of one partition are handled one after the other (a case's events in
    order); each offset is committed once its record was handled."""
    seen = seen if seen is not None else SeenIds()
    stop = stop if stop is not None else asyncio.Event()
    counts = Consumed()
    consumer: AIOKafkaConsumer[bytes, bytes] = AIOKafkaConsumer(
        config.topic_name, **config.consumer_kwargs()
    )
    await consumer.start()
    try:
        while not stop.is_set() and (stop_after is None or counts.handled < stop_after):
            batches = await consumer.getmany(timeout_ms=500, max_records=100)
            for tp, records in batches.items():
                for record in records:
                    event = decode(record)
                    if event is None:
                        counts.skipped += 1
                    elif event.id in seen:
                        counts.duplicates += 1
                    else:
                        outcome = on_event(event)
                        if inspect.isawaitable(outcome):
                            await outcome
                        seen.add(event.id)
                        counts.handled += 1
                    # After handling: a crash before this line means the record is
                    # read again (and recognised by its ce_id), never lost.
                    await consumer.commit({tp: record.offset + 1})
                    if stop.is_set() or (stop_after is not None and counts.handled >= stop_after):
                        return counts
        return counts
    finally:
        await consumer.stop()


def main(argv: list[str] | None = None) -> None:
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--bootstrap", default=env.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    )
    parser.add_argument(
        "--username", default=env.get("KAFKA_SASL_USERNAME", ""), help="your agency id"
    )
    parser.add_argument("--cafile", default=env.get("KAFKA_SSL_CAFILE", ""))
    parser.add_argument("--topic", default="", help="[protection.partner.<username>.v1]")
    parser.add_argument("--group", default="", help="[<username>.case-system]")
    parser.add_argument(
        "--security-protocol", default=env.get("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    )
    args = parser.parse_args(argv)
    password = env.get("KAFKA_SASL_PASSWORD", "")
    if not args.username or not password:
        parser.error("give --username (your agency id) and KAFKA_SASL_PASSWORD")
    config = FeedConfig(
        bootstrap=args.bootstrap,
        username=args.username,
        password=password,
        cafile=args.cafile,
        topic=args.topic,
        group=args.group,
        security_protocol=args.security_protocol,
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        print(f"reading {config.topic_name} as {config.username}, group {config.group_id}")
        counts = await consume(config, stop=stop)
        print(f"stopped: {counts}")

    asyncio.run(run())


if __name__ == "__main__":
    main()
