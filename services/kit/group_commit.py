"""Group commit: many callers' writes in one transaction.

Each caller submits one item and waits until it is committed. Items submitted while
a flush is being written go together in the next flush, so under load one
transaction (and one statement per kind of write) carries many items, and when
idle an item is written at once, alone: no timer, no added latency. At most one
flush runs at a time, so a burst holds one database connection, not one each.
Flushes run in a task of their own: a caller that is cancelled (a client that hung
up) neither stops the others' flush nor leaves their items unwritten.

When a flush of several items fails, each is tried again alone: one bad item fails
only its own caller. A transient failure (the database away) fails the whole batch
at once: trying each alone would only ask the absent database again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from services.kit.transient import is_transient

T = TypeVar("T")


class GroupCommit(Generic[T]):
    def __init__(self, flush: Callable[[list[T]], Awaitable[None]]) -> None:
        self._flush = flush
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.flushes = 0  # transactions written (a figure for tests and the bench)

    @property
    def waiting(self) -> int:
        """Items submitted and not yet in a flush (they go in the next one)."""
        return len(self._pending)

    async def submit(self, item: T) -> None:
        """Returns once `item` is committed; raises what its flush raised."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # A caller that stopped waiting does not leave an unread error behind.
        done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._pending.append((item, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        await done

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._write(batch)
        except BaseException:
            waiting, self._pending = self._pending, []
            for _, future in waiting:
                _settle(future, RuntimeError("flush interrupted"))
            raise

    async def _write(self, batch: list[tuple[T, asyncio.Future[None]]]) -> None:
        try:
            self.flushes += 1
            await self._flush([item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1 or is_transient(exc):
                for _, future in batch:
                    _settle(future, exc)
                return
            for single in batch:  # isolate the item that fails
                await self._write([single])
            return
        except BaseException as exc:  # cancelled mid-flush: nobody's item is known written
            for _, future in batch:
                _settle(future, RuntimeError("flush interrupted"))
            raise exc
        for _, future in batch:
            _settle(future, None)


def _settle(future: asyncio.Future[None], error: Exception | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
