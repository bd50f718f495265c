"""One answer to "will this error go away by itself?", for every loop and route.

A transient error is the infrastructure, not the work: the database restarting or
unreachable, a connection dropped mid-query (asyncpg's `InternalClientError`
"cannot switch to state ..." after a fast restart is one of these), the broker down
or electing a leader, a serialization conflict. The outbox relay, the consumers,
the delivery worker, the timers and the HTTP routes all ask `is_transient` and
react the same way: retry with backoff (loops), never dead-letter (consumers),
answer 503 with Retry-After (HTTP). Anything else is a bug or bad input.

The cause chain is followed, so a library wrapping a connection error in its own
exception is still recognised.
"""

from __future__ import annotations

import asyncpg
from aiokafka import errors as kafka_errors
from asyncpg.exceptions import _base as asyncpg_base


class TransientError(Exception):
    """Raised by our own code when a dependency is briefly unavailable (a directory not
    loaded yet, ...): retried, never dead-lettered, 503 over HTTP."""


TRANSIENT_TYPES: tuple[type[Exception], ...] = (
    TransientError,
    OSError,  # refused, reset, unreachable; TimeoutError (asyncio's too) and ConnectionError
    # asyncpg: the connection, the server going away or refusing for now
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg_base.InternalClientError,
    asyncpg.OperatorInterventionError,  # admin shutdown, crash shutdown, cannot connect now
    asyncpg.InsufficientResourcesError,  # too many connections, out of memory, disk full
    asyncpg.TransactionRollbackError,  # serialization failure, deadlock
    asyncpg.ReadOnlySQLTransactionError,  # connected to a standby during a failover
    # aiokafka: timeouts and connection errors are not flagged `retriable` there (the
    # others, leader elections and nodes not ready among them, are: see is_transient)
    kafka_errors.KafkaTimeoutError,
    kafka_errors.KafkaConnectionError,
)


def is_transient(exc: BaseException) -> bool:
    """True when waiting and trying again is the right answer to `exc` (or to any
    exception in its cause chain)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TRANSIENT_TYPES):
            return True
        if isinstance(current, kafka_errors.KafkaError) and current.retriable:
            return True  # leader elections, not enough replicas, coordinator moving
        current = current.__cause__ or current.__context__
    return False


# Where HTTP looks for them: these, plus any Kafka error (retriable or not, decided
# by `is_transient`) and whatever wraps them.
HTTP_CANDIDATES: tuple[type[Exception], ...] = (*TRANSIENT_TYPES, kafka_errors.KafkaError)

RETRY_AFTER_SECONDS = 5  # what HTTP callers are told to wait when the answer is 503
