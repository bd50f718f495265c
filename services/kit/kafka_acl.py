"""Kafka principals and ACLs from the one declaration, deploy/kafka-access.yaml.

`Access.grants()` is pure: the declaration plus the producers declared in contracts/
give every (principal, resource, operation) the broker must allow, nothing more.
`apply_access` makes the broker match it (SCRAM users, ACLs created and removed) with
confluent-kafka's admin client: aiokafka has no ACL or SCRAM API.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import yaml

# confluent-kafka's type hints are partial (AclBindingFilter's wildcards are None,
# exports are implicit): the admin API is used untyped, behind the typed Grant.
from confluent_kafka import admin as _confluent_admin
from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts.registry import SERVICES, topics_produced_by
from contracts.topics import (
    Topic,
    all_topic_names,
    dead_letter_topic,
    is_partner_topic,
    namespaced,
    partner_topic,
)
from services.kit.kafka import KafkaClient, admin_client, ensure_topics

ck: Any = _confluent_admin

# The service that filters events into the partner feeds (webhooks and topics).
PARTNER_FEED_WRITER = "notifications"
ACCESS_FILE = Path(__file__).resolve().parents[2] / "deploy" / "kafka-access.yaml"
CONTRACT_TOPICS = frozenset(t.value for t in Topic)

Resource = Literal["topic", "group"]
Pattern = Literal["literal", "prefixed"]
Operation = Literal["READ", "WRITE", "DESCRIBE", "DESCRIBE_CONFIGS"]


def _known_topics(topics: list[str]) -> list[str]:
    unknown = sorted(set(topics) - CONTRACT_TOPICS)
    if unknown:
        raise ValueError(f"not a contract topic: {', '.join(unknown)}")
    return topics


class ServiceAccess(BaseModel):
    model_config = ConfigDict(extra="forbid")
    principal: str
    consumes: list[str] = Field(default_factory=list)
    _check = field_validator("consumes")(_known_topics)


class OpsServiceAccess(BaseModel):
    """The operations service (services/ops/): see deploy/kafka-access.yaml."""

    model_config = ConfigDict(extra="forbid")
    principal: str
    consumes: list[str] = Field(default_factory=list)
    _check = field_validator("consumes")(_known_topics)


class OperatorAccess(BaseModel):
    model_config = ConfigDict(extra="forbid")
    principal: str


class AgencyAccess(BaseModel):
    """A partner agency with a Kafka feed: its own topic (`partner_topic`), read with
    its own principal and consumer groups `<id>.*`; never a shared contract topic."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")

    @property
    def topic(self) -> str:
        return partner_topic(self.id)


@dataclass(frozen=True, order=True)
class Grant:
    principal: str
    resource: Resource
    name: str
    pattern: Pattern
    operation: Operation


class Access(BaseModel):
    model_config = ConfigDict(extra="forbid")
    services: dict[str, ServiceAccess]
    ops: OpsServiceAccess
    operations: list[OperatorAccess] = Field(default_factory=list)
    agencies: list[AgencyAccess] = Field(default_factory=list)

    @field_validator("services")
    @classmethod
    def _every_service(cls, value: dict[str, ServiceAccess]) -> dict[str, ServiceAccess]:
        if sorted(value) != sorted(SERVICES):
            raise ValueError(f"services must be exactly {', '.join(SERVICES)}")
        return value

    def principals(self) -> list[str]:
        """Every SCRAM user the declaration needs (the admin is made at format time)."""
        names = [s.principal for s in self.services.values()] + [self.ops.principal]
        names += [o.principal for o in self.operations] + [a.id for a in self.agencies]
        if len(set(names)) != len(names):
            raise ValueError("a principal is declared twice in the Kafka access declaration")
        return names

    def principal_of(self, service: str) -> str:
        """The principal of a service ("ops" included)."""
        return self.ops.principal if service == "ops" else self.services[service].principal

    def grants(self, namespace: str = "") -> set[Grant]:
        """Everything the broker must allow for the topics of `namespace` ("" in
        production; a test run's namespace gets its own literal topic grants)."""
        out: set[Grant] = set()

        def topic(principal: str, name: str, *operations: Operation) -> None:
            for op in operations:
                out.add(Grant(principal, "topic", namespaced(namespace, name), "literal", op))

        def groups(principal: str, prefix: str) -> None:
            out.add(Grant(principal, "group", prefix, "prefixed", "READ"))

        for service, access in self.services.items():
            p = access.principal
            for name in topics_produced_by(service):
                topic(p, name, "WRITE", "DESCRIBE")
            for name in access.consumes:
                topic(p, name, "READ", "DESCRIBE")
                topic(p, dead_letter_topic(name), "WRITE", "DESCRIBE")
            groups(p, f"enlace-{service}")

        def describe_everything(p: str) -> None:
            # "*" literal is Kafka's wildcard: describe (lag, partitions) every topic.
            out.add(Grant(p, "topic", "*", "literal", "DESCRIBE"))
            out.add(Grant(p, "topic", "*", "literal", "DESCRIBE_CONFIGS"))
            out.add(Grant(p, "group", "*", "literal", "DESCRIBE"))

        ops = self.ops.principal
        describe_everything(ops)
        for name in CONTRACT_TOPICS:
            # Reads every topic and dead letter; writes a contract topic only to redrive.
            topic(ops, name, "READ", "DESCRIBE", "WRITE")
            topic(ops, dead_letter_topic(name), "READ", "DESCRIBE")
        for name in self.ops.consumes:  # its projections dead-letter what they refuse
            topic(ops, dead_letter_topic(name), "WRITE")
        groups(ops, "enlace-ops")
        for operator in self.operations:
            p = operator.principal
            describe_everything(p)
            for name in CONTRACT_TOPICS:
                topic(p, dead_letter_topic(name), "READ", "DESCRIBE")
            groups(p, "enlace-ops")
        feeds = self.services[PARTNER_FEED_WRITER].principal
        for agency in self.agencies:
            topic(agency.id, agency.topic, "READ", "DESCRIBE")
            groups(agency.id, f"{agency.id}.")
            topic(feeds, agency.topic, "WRITE", "DESCRIBE")
        return out

    def partner_topics(self) -> list[str]:
        """The partner feed topics to provision (no dead-letter twin: only the feed
        writer produces them, and the partner's consumer is its own)."""
        return [a.topic for a in self.agencies]

    def feed_agencies(self) -> frozenset[str]:
        return frozenset(a.id for a in self.agencies)


def load_access(path: Path = ACCESS_FILE) -> Access:
    with path.open() as fh:
        return Access.model_validate(yaml.safe_load(fh))


# --- applying it to a broker ---------------------------------------------------------

_RESOURCE = {"topic": ck.ResourceType.TOPIC, "group": ck.ResourceType.GROUP}
_PATTERN = {"literal": ck.ResourcePatternType.LITERAL, "prefixed": ck.ResourcePatternType.PREFIXED}


def admin_for(client: KafkaClient) -> Any:
    conf: dict[str, Any] = {
        "bootstrap.servers": client.bootstrap,
        "security.protocol": client.security_protocol,
        "request.timeout.ms": 30000,
    }
    if client.sasl:
        conf |= {
            "sasl.mechanism": client.sasl_mechanism,
            "sasl.username": client.username,
            "sasl.password": client.password,
        }
    if client.tls and client.cafile:
        conf["ssl.ca.location"] = client.cafile
    return ck.AdminClient(conf)


def _binding(grant: Grant) -> Any:
    return ck.AclBinding(
        _RESOURCE[grant.resource],
        grant.name,
        _PATTERN[grant.pattern],
        f"User:{grant.principal}",
        "*",
        getattr(ck.AclOperation, grant.operation),
        ck.AclPermissionType.ALLOW,
    )


def _grant(binding: Any) -> Grant | None:
    """The Grant an existing binding expresses; None for anything this module never
    creates (a DENY, a host restriction, a cluster ACL), which is then left alone."""
    resource = {v: k for k, v in _RESOURCE.items()}.get(binding.restype)
    pattern = {v: k for k, v in _PATTERN.items()}.get(binding.resource_pattern_type)
    operation = binding.operation.name
    if (
        resource is None
        or pattern is None
        or binding.permission_type != ck.AclPermissionType.ALLOW
        or binding.host != "*"
        or not binding.principal.startswith("User:")
        or operation not in ("READ", "WRITE", "DESCRIBE", "DESCRIBE_CONFIGS")
    ):
        return None
    return Grant(
        binding.principal[5:],
        cast(Resource, resource),
        binding.name,
        cast(Pattern, pattern),
        cast(Operation, operation),
    )


def _in_scope(grant: Grant, namespace: str) -> bool:
    """Which existing grants an apply for `namespace` owns (and may delete)."""
    if grant.resource != "topic":
        return not namespace
    if namespace:
        return grant.name.startswith(f"{namespace}.")
    return grant.name == "*" or grant.name in all_topic_names() or is_partner_topic(grant.name)


def _existing(admin: Any) -> list[Any]:
    everything = ck.AclBindingFilter(
        ck.ResourceType.ANY,
        None,
        ck.ResourcePatternType.ANY,
        None,
        None,
        ck.AclOperation.ANY,
        ck.AclPermissionType.ANY,
    )
    return list(admin.describe_acls(everything, request_timeout=30).result())


def _wait(futures: Iterable[object]) -> None:
    for future in futures:
        future.result()  # type: ignore[attr-defined]


def upsert_users(admin: Any, principals: Iterable[str], password: Callable[[str], str]) -> None:
    """SCRAM-SHA-512 credentials for each principal, set from its password (the file
    or secret store is the truth, so a re-run after a rotation applies it)."""
    upserts = [
        ck.UserScramCredentialUpsertion(
            name,
            ck.ScramCredentialInfo(ck.ScramMechanism.SCRAM_SHA_512, 8192),
            password(name).encode(),
        )
        for name in principals
    ]
    if upserts:
        _wait(admin.alter_user_scram_credentials(upserts).values())


def apply_grants(admin: Any, wanted: set[Grant], namespace: str = "") -> tuple[int, int]:
    """Create the missing ACLs, delete those in scope that are not wanted. Returns
    (created, deleted)."""
    have: dict[Grant, Any] = {}
    for binding in _existing(admin):
        grant = _grant(binding)
        if grant is not None and _in_scope(grant, namespace):
            have[grant] = binding
    missing = sorted(wanted - have.keys())
    extra = [have[g] for g in sorted(have.keys() - wanted)]
    if missing:
        _wait(admin.create_acls([_binding(g) for g in missing]).values())
    if extra:
        filters = [
            ck.AclBindingFilter(
                b.restype,
                b.name,
                b.resource_pattern_type,
                b.principal,
                b.host,
                b.operation,
                b.permission_type,
            )
            for b in extra
        ]
        _wait(admin.delete_acls(filters).values())
    return len(missing), len(extra)


def apply_access(
    admin: Any, access: Access, password: Callable[[str], str], namespace: str = ""
) -> tuple[int, int]:
    """The declaration on a broker: its users (for the production namespace) and
    exactly its ACLs for `namespace`. Returns (created, deleted)."""
    if not namespace:
        upsert_users(admin, access.principals(), password)
    return apply_grants(admin, access.grants(namespace), namespace)


@contextlib.asynccontextmanager
async def namespace_topics(
    admin: KafkaClient, namespace: str, *, partitions: int = 3, acls: bool = True
) -> AsyncIterator[list[str]]:
    """Every contract topic of a namespace (tests, bench) with the declaration's ACLs
    for them; topics and ACLs deleted afterwards (deleting a topic keeps its ACLs)."""
    names = await ensure_topics(
        admin, namespace, partitions=partitions, extra=load_access().partner_topics()
    )
    if acls:
        await asyncio.to_thread(
            apply_grants, admin_for(admin), load_access().grants(namespace), namespace
        )
    try:
        yield names
    finally:
        topic_admin = admin_client(admin)
        with contextlib.suppress(Exception):
            await topic_admin.start()
            await topic_admin.delete_topics(names)
        with contextlib.suppress(Exception):
            await topic_admin.close()
        if acls:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(remove_namespace, admin_for(admin), namespace)


def remove_namespace(admin: Any, namespace: str) -> int:
    """Delete the ACLs of a namespace's topics (deleting a topic keeps its ACLs)."""
    if not namespace:
        raise ValueError("refusing to remove the ACLs of the production namespace")
    return apply_grants(admin, set(), namespace)[1]
