"""An idempotent consumer subscribed on FastStream's Kafka broker: batch polls that
return as soon as records arrive, records decoded by the kit (not FastStream), and
each batch's offsets committed after its database commit (manual ack)."""

from __future__ import annotations

from typing import Any, Literal, cast

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from services.kit.consumer import EventConsumer
from services.kit.dead_letter import StoppingWithUnappliedRecord
from services.kit.logging import get_logger

log = get_logger(__name__)


async def _undecoded(message: Any) -> None:
    """FastStream would parse every value as JSON before our handler runs, and a
    non-JSON poison record would then fail outside our dead-letter path. The kit
    decodes the raw records itself."""
    return None


def register(
    broker: KafkaBroker,
    consumer: EventConsumer,
    *,
    batch_size: int,
    auto_offset_reset: str,
    poll_seconds: float = 0.1,
) -> None:
    """Subscribe `consumer` on the broker: batch polls, manual commit after the DB commit."""
    timeout_ms = max(1, round(poll_seconds * 1000))

    async def on_batch(message: KafkaMessage) -> None:
        raw = message.raw_message
        records = raw if isinstance(raw, tuple) else (raw,)
        try:
            await consumer.handle_batch(records)
        except StoppingWithUnappliedRecord:
            # Shutting down mid-retry: rewind, commit nothing; redelivered after restart.
            await message.nack()
            log.warning("stopping with an unapplied record; it will be redelivered")
            return
        except BaseException:
            # The consumer's position is already past this batch: rewind it, or the
            # next commit would skip records that were never applied.
            await message.nack()
            raise
        await message.ack()  # the offsets, after the database commit

    subscriber = broker.subscriber(
        consumer.physical_topic,
        decoder=_undecoded,
        group_id=consumer.group_id,
        batch=True,
        max_records=batch_size,
        batch_timeout_ms=timeout_ms,  # FastStream's own poll, replaced by never_deaf
        auto_offset_reset=cast(Literal["latest", "earliest", "none"], auto_offset_reset),
        ack_policy=AckPolicy.MANUAL,
    )
    subscriber(on_batch)
    never_deaf(subscriber, timeout_ms=timeout_ms, max_records=batch_size)


def never_deaf(subscriber: Any, *, timeout_ms: int, max_records: int) -> None:
    """FastStream's batch subscriber (0.7) sleeps as long as its poll timeout after an
    empty poll, deaf meanwhile: a record arriving in a quiet moment waited up to that
    long per hop, and a short timeout to bound it cost every idle consumer a wake-up
    every few milliseconds. Polled this way, a poll returns as soon as records arrive
    and an empty one is followed by the next poll at once."""

    async def get_msg(kafka_consumer: AIOKafkaConsumer) -> tuple[ConsumerRecord[Any, Any], ...]:
        batches = await kafka_consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return tuple(record for records in batches.values() for record in records)

    vars(subscriber)["get_msg"] = get_msg
