"""The kit's subscriber polls without FastStream's deaf sleep: an empty poll is
followed by the next poll at once, and a poll hands over what arrived."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from aiokafka import ConsumerRecord, TopicPartition
from faststream.kafka import KafkaBroker

from services.kit.subscriber import never_deaf


class Polls:
    """A consumer whose polls return what the test queued, recording each call."""

    def __init__(self, *answers: dict[TopicPartition, list[Any]]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[int, int | None]] = []

    async def getmany(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Any]]:
        self.calls.append((timeout_ms, max_records))
        return self.answers.pop(0) if self.answers else {}


def _record(partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t", partition, offset, 0, 0, b"k", b"v", None, 1, 1, [])


async def test_an_empty_poll_is_not_followed_by_a_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    async def deaf(_: float) -> None:
        raise AssertionError("slept after an empty poll")

    monkeypatch.setattr(anyio, "sleep", deaf)  # what FastStream's poll sleeps with
    broker = KafkaBroker("127.0.0.1:1")
    subscriber = broker.subscriber("t", batch=True, group_id="g")
    never_deaf(subscriber, timeout_ms=100, max_records=500)
    first, second = _record(0, 7), _record(1, 3)
    polls = Polls({}, {TopicPartition("t", 0): [first], TopicPartition("t", 1): [second]})
    assert await subscriber.get_msg(polls) == ()
    assert await subscriber.get_msg(polls) == (first, second)
    assert polls.calls == [(100, 500), (100, 500)]
