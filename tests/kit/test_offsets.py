"""Deferred offset commits: what was applied while a commit was on its way is
committed without waiting for another batch, a commit the broker could not take is
tried again, and one refused after a rebalance is dropped (the records come again
and are dropped by their ids). The real-broker side is in test_consumer.py."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaConnectionError

from services.kit.offsets import OffsetCommits
from tests.helpers import poll_until

TP = TopicPartition("t", 0)


class Coordinator:
    """A consumer's commit, held at a gate, failing as the test says, recording what
    it took."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.failures: list[Exception] = []
        self.committed: list[dict[TopicPartition, int]] = []
        self.asked = asyncio.Event()

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.asked.set()
        await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        self.committed.append(dict(offsets))


def _records(*offsets: int) -> list[ConsumerRecord[bytes, bytes]]:
    return [ConsumerRecord("t", 0, o, 0, 0, b"k", b"v", None, 1, 1, []) for o in offsets]


async def _committed(coordinator: Coordinator) -> list[dict[TopicPartition, int]]:
    return list(coordinator.committed)


async def test_offsets_applied_during_a_commit_go_in_the_next_without_another_batch() -> None:
    coordinator = Coordinator()
    commits = OffsetCommits(0.01, asyncio.Event())
    consumer = cast(Any, coordinator)
    coordinator.gate.clear()
    commits.applied(consumer, _records(0, 1))
    await asyncio.wait_for(coordinator.asked.wait(), 5)  # the commit is on its way
    commits.applied(consumer, _records(2))  # the last batch of a burst
    coordinator.gate.set()
    found = await poll_until(
        lambda: _committed(coordinator), lambda c: len(c) == 2, what="both commits"
    )
    assert found == [{TP: 2}, {TP: 3}]


async def test_a_commit_the_broker_could_not_take_is_tried_again() -> None:
    coordinator = Coordinator()
    coordinator.failures = [KafkaConnectionError("broker restarting")]
    commits = OffsetCommits(0.01, asyncio.Event())
    commits.applied(cast(Any, coordinator), _records(4))
    found = await poll_until(lambda: _committed(coordinator), what="the retried commit")
    assert found == [{TP: 5}]


async def test_a_commit_refused_after_a_rebalance_is_dropped() -> None:
    coordinator = Coordinator()
    coordinator.failures = [CommitFailedError("partitions reassigned")]
    commits = OffsetCommits(0.01, asyncio.Event())
    consumer = cast(Any, coordinator)
    commits.applied(consumer, _records(4))
    commits.applied(consumer, _records(5))
    assert await commits.flush()  # refused: dropped, not retried
    assert await commits.flush()  # nothing left
    assert coordinator.committed == []
