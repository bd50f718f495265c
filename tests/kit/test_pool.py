"""The kit's connection pool returns connections without asyncpg's reset query; what
that query guaranteed and the product relies on still holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.kit.db import create_pool


async def test_a_transaction_left_open_is_rolled_back_when_the_connection_returns(
    databases: Callable[..., Any],
) -> None:
    pool = await create_pool(await databases("pooled", role="intake"), min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE leftovers (n int)")
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO leftovers VALUES (1)")
            # released inside the transaction, as a caller that forgot it would
        async with pool.acquire() as conn:  # the only connection: the same one
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM leftovers") == 0
            # and the pool's connections do not run the reset query on release
            assert conn.get_reset_query() == ""
    finally:
        await pool.close()
