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
from collections.abc import AsyncIterator

from services.kit.kafka import KafkaClient
from tests.infra import PrivateBroker

INSTANCE = "bench-plaintext"


@contextlib.asynccontextmanager
async def plaintext_broker() -> AsyncIterator[KafkaClient]:
    """Start the private PLAINTEXT broker; yield a client of it; stop and delete it."""
    broker = PrivateBroker(INSTANCE, plaintext=True)
    try:
        await asyncio.to_thread(broker.start)
        yield broker.client()
    finally:
        try:
            await asyncio.to_thread(broker.stop)
        finally:
            await asyncio.to_thread(broker.remove)
