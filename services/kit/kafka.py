"""Kafka client wiring: how every client connects, the idempotent producer, and topic
administration.

Every Kafka client of the product (services, scripts, tests, bench) is made from one
`KafkaClient`: the bootstrap servers plus the security settings
`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_MECHANISM`, `KAFKA_SASL_USERNAME`,
`KAFKA_SASL_PASSWORD` and `KAFKA_SSL_CAFILE`. The broker serves clients only over
SASL_SSL with SCRAM-SHA-512; PLAINTEXT exists for the bench's baseline alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError, for_code
from aiokafka.helpers import create_ssl_context
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from contracts.topics import all_topic_names, namespaced

PROTOCOLS = ("SASL_SSL", "SASL_PLAINTEXT", "SSL", "PLAINTEXT")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


class KafkaAuthError(RuntimeError):
    """The broker refused this client's credentials (or its TLS): not worth retrying."""


@dataclass(frozen=True)
class KafkaClient:
    """Where the brokers are and who this client is."""

    bootstrap: str
    security_protocol: str = "SASL_SSL"
    sasl_mechanism: str = "SCRAM-SHA-512"
    username: str = ""
    password: str = field(default="", repr=False)
    cafile: str = ""

    def __post_init__(self) -> None:
        if self.security_protocol not in PROTOCOLS:
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={self.security_protocol!r}: expected one of "
                + ", ".join(PROTOCOLS)
            )
        if self.sasl and self.sasl_mechanism not in MECHANISMS:
            raise ValueError(
                f"KAFKA_SASL_MECHANISM={self.sasl_mechanism!r}: expected one of "
                + ", ".join(MECHANISMS)
            )

    @property
    def hosts(self) -> list[str]:
        """The bootstrap servers, one `host:port` each (the setting is a comma list)."""
        return [h.strip() for h in self.bootstrap.split(",") if h.strip()]

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SASL_SSL", "SSL")

    @property
    def principal(self) -> str:
        return self.username if self.sasl else "anonymous"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaClient:
        """The settings scripts and partner examples read (services read the same names
        through `ServiceSettings`)."""
        env = os.environ if environ is None else environ
        return cls(
            bootstrap=env.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092"),
            security_protocol=env.get("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            sasl_mechanism=env.get("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            username=env.get("KAFKA_SASL_USERNAME", ""),
            password=env.get("KAFKA_SASL_PASSWORD", ""),
            cafile=env.get("KAFKA_SSL_CAFILE", ""),
        )

    def as_env(self) -> dict[str, str]:
        """The same settings as environment variables, for a child process."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_SECURITY_PROTOCOL": self.security_protocol,
            "KAFKA_SASL_MECHANISM": self.sasl_mechanism,
            "KAFKA_SASL_USERNAME": self.username,
            "KAFKA_SASL_PASSWORD": self.password,
            "KAFKA_SSL_CAFILE": self.cafile,
        }

    def as_principal(self, username: str, password: str) -> KafkaClient:
        return replace(self, username=username, password=password)

    def as_bootstrap(self, bootstrap: str) -> KafkaClient:
        return replace(self, bootstrap=bootstrap)

    def check(self) -> None:
        """Refuse settings that cannot work, naming the setting."""
        if self.sasl and not self.username:
            raise ValueError(f"KAFKA_SASL_USERNAME is empty but {self.security_protocol} needs it")
        if self.sasl and not self.password:
            raise ValueError(
                f"KAFKA_SASL_PASSWORD is empty for principal {self.username!r} "
                f"({self.security_protocol} needs it)"
            )
        if self.cafile and not os.path.isfile(self.cafile):
            raise ValueError(f"KAFKA_SSL_CAFILE={self.cafile!r} is not a readable file")

    @cached_property
    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        # An empty cafile means the system trust store (a managed Kafka's public CA).
        context: ssl.SSLContext = create_ssl_context(cafile=self.cafile or None)
        return context

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and the admin client."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
        }
        if self.tls:
            kwargs["ssl_context"] = self.ssl_context
        if self.sasl:
            kwargs |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        return kwargs

    def faststream_security(self) -> BaseSecurity | None:
        if not self.sasl:
            return BaseSecurity(ssl_context=self.ssl_context) if self.tls else None
        kind = {
            "SCRAM-SHA-512": SASLScram512,
            "SCRAM-SHA-256": SASLScram256,
            "PLAIN": SASLPlaintext,
        }[self.sasl_mechanism]
        return kind(self.username, self.password, ssl_context=self.ssl_context)

    def explain(self, exc: BaseException) -> KafkaAuthError | None:
        """A clear error when `exc` is the broker refusing these credentials or TLS;
        None for anything else (the broker down, a timeout). aiokafka reports a failed
        SASL handshake as a bare KafkaConnectionError: the cause says what happened."""
        chain: list[BaseException] = []
        current: BaseException | None = exc
        while current is not None and len(chain) < 10:
            chain.append(current)
            current = current.__cause__ or current.__context__
        for err in chain:
            name = type(err).__name__
            text = str(err)
            if "Authentication" in name or "authentication" in text.lower() or "SASL" in text:
                return KafkaAuthError(
                    f"Kafka refused principal {self.principal!r} ({self.sasl_mechanism} over "
                    f"{self.security_protocol}): check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
                )
            if isinstance(err, ssl.SSLError):
                return KafkaAuthError(
                    f"TLS with the Kafka broker failed for principal {self.principal!r} "
                    f"({type(err).__name__}): check KAFKA_SSL_CAFILE={self.cafile!r}"
                )
        return None


async def diagnose(client: KafkaClient, timeout: float = 10.0) -> KafkaAuthError | None:
    """Open one connection to the first bootstrap server and say whether the broker
    refuses this client. aiokafka's clients only log the broker's SASL error and raise
    "Unable to bootstrap"; a bare connection raises the real error. None when the
    credentials are accepted or the broker is simply not reachable."""
    host, _, port = client.hosts[0].rpartition(":")
    kwargs = client.aiokafka()
    del kwargs["bootstrap_servers"]
    try:
        conn = await asyncio.wait_for(
            create_conn(host, int(port), client_id="enlace-diagnose", **kwargs), timeout
        )
    except Exception as exc:
        return client.explain(exc)
    conn.close()
    return None


async def refuse_bad_credentials(client: KafkaClient, exc: BaseException) -> None:
    """After `exc` from a Kafka client: raise KafkaAuthError if the cause is refused
    credentials or TLS, so callers stop retrying and say what to fix."""
    if isinstance(exc, KafkaAuthError):
        raise exc
    if isinstance(exc, KafkaConnectionError | OSError):
        clear = await diagnose(client)
        if clear is not None:
            raise clear from exc


def make_producer(client: KafkaClient, client_id: str) -> AIOKafkaProducer:
    """acks=all and no reordering on retry (idempotence); a short linger batches bursts."""
    return AIOKafkaProducer(
        **client.aiokafka(),
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
        max_batch_size=256 * 1024,
        request_timeout_ms=15000,
        retry_backoff_ms=200,
    )


async def start_producer(
    producer: AIOKafkaProducer, client: KafkaClient | None = None
) -> AIOKafkaProducer:
    """Start a producer; if the broker is unreachable, release what start() opened
    before raising, so a retry loop leaks no connections. Refused credentials raise
    `KafkaAuthError` naming the principal and the settings."""
    try:
        await producer.start()
    except BaseException as exc:
        with contextlib.suppress(Exception):
            await producer.stop()
        if client is not None:
            await refuse_bad_credentials(client, exc)
        raise
    return producer


def admin_client(client: KafkaClient, client_id: str = "enlace-admin") -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**client.aiokafka(), client_id=client_id)


async def ensure_topics(
    client: KafkaClient,
    namespace: str = "",
    partitions: int = 3,
    replication: int | None = None,
    configs: Mapping[str, str] | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """Create every contract topic (and its .dlq twin), and the `extra` topics (the
    partner feeds of the access declaration), that are missing; returns the names.
    `replication` None is the cluster's default.replication.factor (3 on the local
    three-node cluster, 1 on a single broker); `configs` are topic configs
    (min.insync.replicas)."""
    names = [namespaced(namespace, t) for t in [*all_topic_names(), *extra]]
    admin = admin_client(client)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            factor = replication or await default_replication(admin)
            response = await admin.create_topics(
                [
                    NewTopic(n, partitions, factor, topic_configs=dict(configs or {}))
                    for n in missing
                ]
            )
            # Errors come per topic, never raised: one that exists (a concurrent
            # creator won) is fine; any other (too few brokers) is not.
            for name, code, *message in response.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise for_code(code)(f"creating topic {name}: {(message or [''])[-1]}")
    finally:
        await admin.close()
    return names


async def default_replication(admin: AIOKafkaAdminClient) -> int:
    """The cluster's default.replication.factor, as one broker reports it: what Kafka
    gives a topic created without a factor, which aiokafka cannot ask for."""
    cluster = await admin.describe_cluster()
    broker = str(cluster["brokers"][0]["node_id"])
    key = "default.replication.factor"
    [response] = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.BROKER, broker, {key: None})]
    )
    for entry in (e for r in response.resources for e in r[4]):
        if entry[0] == key:
            return int(entry[1])
    raise RuntimeError(f"Kafka broker {broker} did not report {key}")
