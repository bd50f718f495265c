"""The kit's group commit: writes that arrive while one is flushed go together in the
next; a bad item fails only its own caller; a caller that gives up loses nobody's
write; a transient failure fails the batch at once."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from services.kit.group_commit import GroupCommit
from tests.helpers import poll_until


class Store:
    """A flush that records what each transaction was asked to carry and what it
    committed, held at a gate the test opens."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []
        self.transactions: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.bad: set[str] = set()
        self.transient = False

    async def flush(self, items: list[str]) -> None:
        self.asked.append(items)
        await self.gate.wait()
        if self.transient:
            raise asyncpg.CannotConnectNowError("the database system is starting up")
        if self.bad & set(items):
            raise ValueError("a bad item")
        self.transactions.append(items)


async def _held(
    store: Store, group: GroupCommit[str], first: str, rest: list[str]
) -> tuple[asyncio.Task[None], list[asyncio.Task[None]]]:
    """`first` being flushed (held at the gate), `rest` submitted meanwhile and waiting
    for the next flush."""
    store.gate.clear()
    held = asyncio.create_task(group.submit(first))

    async def asked() -> list[list[str]]:
        return list(store.asked)

    await poll_until(asked, lambda a: a == [[first]], what=f"{first!r} being flushed")
    waiting = [asyncio.create_task(group.submit(x)) for x in rest]

    async def queued() -> int:
        return group.waiting

    await poll_until(queued, lambda n: n == len(rest), what="the rest waiting")
    return held, waiting


async def test_items_that_arrive_during_a_flush_go_together_in_the_next() -> None:
    store = Store()
    group = GroupCommit(store.flush)
    first, rest = await _held(store, group, "a", ["b", "c", "d"])
    store.gate.set()
    await asyncio.gather(first, *rest)
    assert store.transactions == [["a"], ["b", "c", "d"]]
    assert group.flushes == 2


async def test_a_bad_item_fails_only_its_own_caller() -> None:
    store = Store()
    store.bad = {"bad"}
    group = GroupCommit(store.flush)
    first, rest = await _held(store, group, "a", ["b", "bad", "c"])
    store.gate.set()
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["NoneType", "NoneType", "ValueError", "NoneType"]
    assert ["b"] in store.transactions
    assert ["c"] in store.transactions
    assert all("bad" not in t for t in store.transactions)


async def test_a_caller_that_gives_up_loses_nobody_s_write() -> None:
    store = Store()
    group = GroupCommit(store.flush)
    leaving, (staying,) = await _held(store, group, "a", ["b"])
    leaving.cancel()  # a client that hung up while its write was being flushed
    store.gate.set()
    await staying
    assert store.transactions == [["a"], ["b"]]


async def test_a_transient_failure_fails_the_batch_without_asking_again_per_item() -> None:
    store = Store()
    group = GroupCommit(store.flush)
    first, rest = await _held(store, group, "a", ["b", "c"])
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
