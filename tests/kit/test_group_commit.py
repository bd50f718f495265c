"""The kit's group commit: writes that arrive while one is flushed go together in the
next; a bad item fails only its own caller; a caller that gives up loses nobody's
write; a transient failure fails the batch at once."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from services.kit.group_commit import GroupCommit


class Store:
    """A flush that records what each transaction carried, gated by the test."""

    def __init__(self) -> None:
        self.transactions: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.bad: set[str] = set()
        self.transient = False

    async def flush(self, items: list[str]) -> None:
        await self.gate.wait()
        if self.transient:
            raise asyncpg.CannotConnectNowError("the database system is starting up")
        if self.bad & set(items):
            raise ValueError("a bad item")
        self.transactions.append(items)


async def test_items_that_arrive_during_a_flush_go_together_in_the_next() -> None:
    store = Store()
    group = GroupCommit(store.flush)
    store.gate.clear()
    first = asyncio.create_task(group.submit("a"))
    await asyncio.sleep(0)  # "a" is being flushed (held at the gate)
    rest = [asyncio.create_task(group.submit(x)) for x in ("b", "c", "d")]
    store.gate.set()
    await asyncio.gather(first, *rest)
    assert store.transactions == [["a"], ["b", "c", "d"]]
    assert group.flushes == 2


async def test_a_bad_item_fails_only_its_own_caller() -> None:
    store = Store()
    store.bad = {"bad"}
    group = GroupCommit(store.flush)
    store.gate.clear()
    first = asyncio.create_task(group.submit("a"))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(group.submit(x)) for x in ("b", "bad", "c")]
    store.gate.set()
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["NoneType", "NoneType", "ValueError", "NoneType"]
    assert ["b"] in store.transactions
    assert ["c"] in store.transactions
    assert all("bad" not in t for t in store.transactions)


async def test_a_caller_that_gives_up_loses_nobody_s_write() -> None:
    store = Store()
    group = GroupCommit(store.flush)
    store.gate.clear()
    leaving = asyncio.create_task(group.submit("a"))
    await asyncio.sleep(0)
    staying = asyncio.create_task(group.submit("b"))
    await asyncio.sleep(0)
    leaving.cancel()  # a client that hung up while its write was being flushed
    store.gate.set()
    await staying
    assert store.transactions == [["a"], ["b"]]


async def test_a_transient_failure_fails_the_batch_without_asking_again_per_item() -> None:
    store = Store()
    group = GroupCommit(store.flush)
    store.gate.clear()
    first = asyncio.create_task(group.submit("a"))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(group.submit(x)) for x in ("b", "c")]
    store.transient = True
    store.gate.set()
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    assert all(isinstance(r, asyncpg.CannotConnectNowError) for r in results)
    assert group.flushes == 2  # one for "a", one for "b" and "c": not one per item


async def test_once_the_database_is_back_writes_go_through() -> None:
    store = Store()
    group = GroupCommit(store.flush)
    store.transient = True
    with pytest.raises(asyncpg.CannotConnectNowError):
        await group.submit("a")
    store.transient = False
    await group.submit("a")
    assert store.transactions == [["a"]]
