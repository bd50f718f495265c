"""The wiring every service process shares: pool and migrations, the outbox relay,
the Kafka subscribers, background workers, health, metrics and graceful shutdown.

A service builds a `ServiceRuntime` with its migrations, subscriptions and workers,
and hands `runtime.lifespan` to FastAPI. Kafka being down at start-up does not stop
the service: HTTP keeps answering (writes wait in the outbox), subscribers connect
when the broker comes back, and `/readyz` says what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import uvicorn
from aiokafka import AIOKafkaProducer
from aiokafka.protocol.metadata import MetadataRequest
from fastapi import FastAPI
from faststream.kafka import KafkaBroker

from services.kit import heap, openapi
from services.kit.backoff import Backoff, pause
from services.kit.consumer import EventConsumer, Subscription, prune_processed_events
from services.kit.db import create_pool, migrate
from services.kit.edge import (
    BodyLimitMiddleware,
    InputGuard,
    RequestMetricsMiddleware,
    SecurityHeaders,
)
from services.kit.health import health_router
from services.kit.http import install_problem_handlers
from services.kit.kafka import diagnose, make_producer, start_producer
from services.kit.logging import configure_logging, get_logger
from services.kit.metrics import KitMetrics
from services.kit.outbox import OutboxRelay
from services.kit.production import refuse
from services.kit.settings import ServiceSettings
from services.kit.subscriber import register
from services.kit.supervision import Supervisor, loop_health
from services.kit.throttle import AuthThrottle
from services.kit.transient import is_transient

log = get_logger(__name__)
# FastStream's own logger prints coloured text lines and one per message; route it
# through our JSON handler instead, at WARNING.
FASTSTREAM_LOGGER = logging.getLogger("enlace.faststream")
FASTSTREAM_LOGGER.setLevel(logging.WARNING)

Worker = Callable[["ServiceRuntime"], Awaitable[None]]


class ServiceRuntime:
    def __init__(
        self,
        settings: ServiceSettings,
        *,
        migrations: Path | None = None,
        subscriptions: list[Subscription] | None = None,
        workers: list[Worker] | None = None,
        optional_workers: list[Worker] | None = None,
    ) -> None:
        self.settings = settings
        self.migrations = migrations
        self.subscriptions = subscriptions or []
        # A worker's name is its loop's name; an optional one (a dashboard figure) does
        # not make the replica unready when it fails.
        self.optional_workers = optional_workers or []
        self.workers = [*(workers or []), *self.optional_workers]
        self.metrics = KitMetrics(settings.service_name)
        self.gc_pauses = heap.GcPauses(self.metrics.registry)
        self.auth_throttle = AuthThrottle(settings.auth_failures_per_minute)
        self._pool: asyncpg.Pool | None = None
        self.relay: OutboxRelay | None = None
        self.consumers: list[EventConsumer] = []
        self._producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()
        self.broker_connected = False
        self.stopping = asyncio.Event()
        self.supervisor = Supervisor(
            self.stopping,
            restart_cap=settings.loop_restart_max_seconds,
            dead_after=settings.loop_dead_after_seconds,
        )

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("runtime not started")
        return self._pool

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        # Checked when the settings were built; again here, before anything else, for
        # settings that skipped validation (model_copy, model_construct).
        refuse(self.settings.production_problems())
        configure_logging(self.settings.log_level)
        s = self.settings
        self.gc_pauses.install()
        self._pool = await create_pool(
            s.database_url, min_size=s.db_pool_min, max_size=s.db_pool_max
        )
        await migrate(self._pool, self.migrations, s.service_name)
        # Refused Kafka credentials stop the start-up with the reason; an unreachable
        # broker does not (writes wait in the outbox, subscribers retry).
        s.kafka.check()
        refused = await diagnose(s.kafka)
        if refused is not None:
            raise refused
        lock_key = int.from_bytes(
            hashlib.sha256(f"outbox-relay:{s.service_name}".encode()).digest()[:8],
            "big",
            signed=True,
        )
        self.relay = OutboxRelay(
            pool=self._pool,
            dsn=s.database_url,
            producer_factory=lambda: make_producer(s.kafka, f"{s.service_name}-relay"),
            namespace=s.topic_namespace,
            lock_key=lock_key,
            metrics=self.metrics,
            batch_size=s.outbox_batch_size,
            fallback_poll_seconds=s.outbox_fallback_poll_seconds,
            retry_max_seconds=s.relay_retry_max_seconds,
        )
        relay = self.relay
        self.supervisor.spawn("outbox-relay", relay.run)
        if self.subscriptions:
            self.supervisor.spawn("kafka-subscribers", self._run_broker)
            self.supervisor.spawn(
                "processed-events-pruning", self._prune_processed_events, needed=False
            )
        for worker in self.workers:
            self.supervisor.spawn(
                getattr(worker, "__name__", "worker"),
                functools.partial(worker, self),
                needed=worker not in self.optional_workers,
            )
        if os.environ.get(SETTLE_HEAP_ENV) == "1":
            heap.settle()
        log.info("service started", service=s.service_name, namespace=s.topic_namespace)

    async def stop(self) -> None:
        """Finish in-flight work, commit nothing unfinished, release everything.

        The subscriber task stops its broker (FastStream waits for the handlers in
        flight); a consumer retrying a record gives up without committing its offset,
        so the record is redelivered after restart. Only then do the pool and the
        producer close."""
        self.stopping.set()
        for consumer in self.consumers:
            consumer.stopping.set()
        if self.relay is not None:
            await self.relay.stop()
        await self.supervisor.stop(self.settings.shutdown_grace_seconds)
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._producer.stop(), timeout=5)
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), timeout=10)
        self.gc_pauses.remove()
        log.info("service stopped", service=self.settings.service_name)

    @contextlib.asynccontextmanager
    async def lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; True when the service is stopping."""
        await pause(seconds, self.stopping)
        return self.stopping.is_set()

    # --- kafka -----------------------------------------------------------------------

    async def producer(self) -> AIOKafkaProducer:
        """A started idempotent producer for direct sends (dead letters); the outbox
        relay keeps its own."""
        async with self._producer_lock:
            if self._producer is None:
                self._producer = await start_producer(
                    make_producer(self.settings.kafka, f"{self.settings.service_name}-direct"),
                    self.settings.kafka,
                )
            return self._producer

    async def _run_broker(self) -> None:
        """Connect the subscribers (retrying while Kafka is unreachable), then watch
        them: a FastStream consumer task that ends is an error, and the supervisor
        starts the whole broker again."""
        s = self.settings
        backoff = Backoff(0.5, 10.0)
        health = loop_health()
        while not self.stopping.is_set():
            broker, consumers = self._subscribers()
            try:
                await broker.start()
            except Exception as exc:
                delay = backoff.next_delay()
                refused = await diagnose(s.kafka)
                reason = str(refused) if refused else exc.__class__.__name__
                health.failing(f"kafka: {reason}")
                log.warning(
                    "kafka not reachable; subscribers will retry",
                    error=reason,
                    retry_in=round(delay, 2),
                )
                with contextlib.suppress(Exception):
                    await broker.stop()
                if await self.sleep(delay):
                    return
                continue
            self.consumers = consumers
            self.broker_connected = True
            health.ok()
            log.info("subscribers started", topics=[c.physical_topic for c in consumers])
            try:
                while not await self.sleep(1.0):
                    if any(t.done() for t in _consume_tasks(broker)):
                        raise RuntimeError("a Kafka subscriber task ended")
            finally:
                for consumer in consumers:  # stop() may have run before they were listed
                    consumer.stopping.set()
                with contextlib.suppress(Exception):
                    await broker.stop()
                self.broker_connected = False
            return

    def _subscribers(self) -> tuple[KafkaBroker, list[EventConsumer]]:
        s = self.settings
        broker = KafkaBroker(
            # FastStream takes a list; a comma-separated string would be one host name.
            s.kafka.hosts,
            security=s.kafka.faststream_security(),
            # Topics are provisioned by the scripts; a service principal may not
            # create them (and FastStream would try at every start).
            allow_auto_create_topics=False,
            client_id=s.service_name,
            graceful_timeout=s.shutdown_grace_seconds,
            logger=FASTSTREAM_LOGGER,
        )
        consumers = [
            EventConsumer(
                subscription=sub,
                pool=self.pool,
                producer=self.producer,
                service=s.service_name,
                group_id=s.group_id,
                namespace=s.topic_namespace,
                metrics=self.metrics,
                max_attempts=s.consumer_max_attempts,
                backoff_initial=s.consumer_backoff_initial_seconds,
                backoff_max=s.consumer_backoff_max_seconds,
            )
            for sub in self.subscriptions
        ]
        for consumer in consumers:
            register(
                broker,
                consumer,
                batch_size=s.consumer_batch_size,
                auto_offset_reset=s.consumer_auto_offset_reset,
                poll_seconds=s.consumer_poll_seconds,
            )
        return broker, consumers

    async def _prune_processed_events(self) -> None:
        keep = timedelta(days=self.settings.processed_events_retention_days)
        while not await self.sleep(3600 if self.broker_connected else 60):
            try:
                pruned = await prune_processed_events(self.pool, keep)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("could not prune processed events", error=exc.__class__.__name__)
                continue
            if pruned:
                log.info("processed events pruned", count=pruned)

    async def kafka_reachable(self, timeout: float | None = None) -> bool:
        """Some broker of the cluster answers a metadata request within the bound.

        Every known broker is asked at once: aiokafka's own metadata refresh asks them
        one after another, so a paused node would hold the answer for its whole
        request timeout while the others could answer at once."""
        timeout = self.settings.readiness_timeout_seconds if timeout is None else timeout
        try:
            producer = await asyncio.wait_for(self.producer(), timeout=timeout)
        except Exception:
            return False
        client = producer.client
        nodes = [broker.nodeId for broker in client.cluster.brokers()]
        if not nodes:
            try:
                await asyncio.wait_for(client.fetch_all_metadata(), timeout=timeout)
                return True
            except Exception:
                return False

        async def answers(node_id: int) -> bool:
            try:
                reply = await asyncio.wait_for(
                    client.send(node_id, MetadataRequest([])), timeout=timeout
                )
            except Exception:
                return False
            return bool(reply.brokers)

        return any(await asyncio.gather(*(answers(node) for node in nodes)))

    async def database_reachable(self, timeout: float | None = None) -> bool:
        timeout = self.settings.readiness_timeout_seconds if timeout is None else timeout
        try:
            await asyncio.wait_for(self.pool.fetchval("SELECT 1"), timeout=timeout)
            return True
        except Exception:
            return False


def _consume_tasks(broker: KafkaBroker) -> list[asyncio.Task[Any]]:
    """FastStream's consume-loop tasks (one per subscriber and partition group)."""
    return [t for sub in broker.subscribers for t in getattr(sub, "tasks", ())]


def service_app(
    runtime: ServiceRuntime,
    *,
    title: str,
    description: str,
    lifespan: Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """The FastAPI app every service starts from: its runtime's lifespan, problem
    responses, the body limit, request metrics and /healthz, /readyz, /metrics."""
    # No /docs nor /redoc: their pages load scripts from a CDN, which the product never
    # depends on; partners read /openapi.json with their own tools (README, "HTTP edge").
    app = FastAPI(
        title=title,
        version="1.0.0",
        description=description,
        lifespan=lifespan or runtime.lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = runtime
    install_problem_handlers(app)
    openapi.install(app)
    # Outermost last: security headers on every answer, then request metrics, the body
    # limit, and the input guard right before the routes.
    app.add_middleware(InputGuard)
    app.add_middleware(BodyLimitMiddleware, max_bytes=runtime.settings.max_body_bytes)
    app.add_middleware(RequestMetricsMiddleware, metrics=runtime.metrics)
    app.add_middleware(SecurityHeaders)
    app.include_router(health_router(runtime))
    return app


# Set by serve() in its environment, so that uvicorn's worker processes (spawned, with
# this module imported afresh) inherit it: a service process freezes its start-up
# heap (`heap.settle`); a test process running several runtimes does not.
SETTLE_HEAP_ENV = "ENLACE_SETTLE_HEAP"


def serve(factory: str, settings: ServiceSettings) -> None:
    """Run a service: `factory` is "module:function" building its app from the
    environment. With ENLACE_HTTP_WORKERS > 1, uvicorn runs that many processes, each
    a full replica (the relay's advisory lock keeps one publisher, consumer groups
    share the partitions). Our JSON logging; no access log, whose URLs carry ids; no
    `server` header."""
    os.environ[SETTLE_HEAP_ENV] = "1"
    uvicorn.run(
        factory,
        factory=True,
        host=settings.http_host,
        port=settings.http_port,
        workers=settings.http_workers,
        log_config=None,
        access_log=False,
        server_header=False,  # no banner naming the server software
    )
