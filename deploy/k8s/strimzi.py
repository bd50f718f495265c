"""Strimzi resources from the one Kafka declaration: the `Kafka` cluster and its node
pool, a `KafkaTopic` per topic and a `KafkaUser` per principal, whose ACLs are
`Access.grants("")`, the very set deploy/local/kafka_access.py applies to the local
broker. `grants_of_users` reads the ACLs back out of the manifests (the test that
both sides agree)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any, cast

from contracts.topics import DLQ_SUFFIX, all_topic_names
from services.kit.kafka_acl import Access, Grant, Operation, Pattern, Resource

CLUSTER = "enlace"  # Strimzi names its services after it: enlace-kafka-bootstrap
BROKERS = 3
# Strimzi 1.2 runs Kafka 4.2.0 to 4.3.1 (it dropped 4.1.x in 1.1): the nearest to
# the local brokers' 4.1.1 (deploy/local/kafka/pom.xml); clients speak both.
KAFKA_VERSION = "4.2.1"
TLS_PORT = 9093  # in-cluster listener: SCRAM-SHA-512 over TLS
EXTERNAL_PORT = 9094  # partner agencies' consumers: SCRAM-SHA-512 over TLS
LABEL = {"strimzi.io/cluster": CLUSTER}

# Partitions bound the consumers of a group that can work at once (one partition,
# one consumer): see README "Deploy", capacity.
PARTITIONS = 6
DLQ_PARTITIONS = 3
REPLICAS = 3
MIN_ISR = 2
RETENTION_MS = 7 * 24 * 3600 * 1000  # as the local brokers (log.retention.hours=168)

_OPERATIONS: dict[Operation, str] = {
    "READ": "Read",
    "WRITE": "Write",
    "DESCRIBE": "Describe",
    "DESCRIBE_CONFIGS": "DescribeConfigs",
}
_PATTERNS: dict[Pattern, str] = {"literal": "literal", "prefixed": "prefix"}


def topic_names(access: Access) -> list[str]:
    """Every topic to provision: the contract topics with their dead-letter twins,
    and every literal topic a grant names (a topic declared in kafka-access.yaml
    that no contract lists yet is provisioned too). "*" is Kafka's wildcard."""
    named = {g.name for g in access.grants("") if g.resource == "topic" and g.pattern == "literal"}
    return sorted((set(all_topic_names()) | named) - {"*"})


def kafka_topic(name: str) -> dict[str, Any]:
    dlq = name.endswith(DLQ_SUFFIX)
    return {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaTopic",
        # A topic name with dots is a valid object name; Strimzi keeps spec.topicName.
        "metadata": {"name": name, "labels": LABEL},
        "spec": {
            "topicName": name,
            "partitions": DLQ_PARTITIONS if dlq else PARTITIONS,
            "replicas": REPLICAS,
            "config": {
                "min.insync.replicas": MIN_ISR,
                "retention.ms": RETENTION_MS,
                "cleanup.policy": "delete",
            },
        },
    }


def _acl(resource: Resource, name: str, pattern: Pattern, ops: Iterable[Operation]) -> Any:
    return {
        "type": "allow",
        "resource": {"type": resource, "name": name, "patternType": _PATTERNS[pattern]},
        "host": "*",
        "operations": sorted(_OPERATIONS[o] for o in ops),
    }


def kafka_users(access: Access) -> list[dict[str, Any]]:
    """One KafkaUser per principal, its ACLs exactly its grants (one rule per
    resource, its operations listed). Strimzi's User Operator writes each user's
    SCRAM password into a Secret of the same name (key `password`)."""
    by_resource: dict[str, dict[tuple[Resource, str, Pattern], set[Operation]]]
    by_resource = defaultdict(lambda: defaultdict(set))
    for g in access.grants(""):
        by_resource[g.principal][(g.resource, g.name, g.pattern)].add(g.operation)
    users = []
    for principal in access.principals():
        rules = by_resource.get(principal, {})
        users.append(
            {
                "apiVersion": "kafka.strimzi.io/v1",
                "kind": "KafkaUser",
                "metadata": {"name": principal, "labels": LABEL},
                "spec": {
                    "authentication": {"type": "scram-sha-512"},
                    "authorization": {
                        "type": "simple",
                        "acls": [_acl(*key, ops) for key, ops in sorted(rules.items())],
                    },
                },
            }
        )
    return users


def grants_of_users(documents: Iterable[dict[str, Any]]) -> set[Grant]:
    """The grants the KafkaUser documents express (anything else is skipped)."""
    operations = {v: k for k, v in _OPERATIONS.items()}
    patterns = {v: k for k, v in _PATTERNS.items()}
    out: set[Grant] = set()
    for doc in documents:
        if doc.get("kind") != "KafkaUser":
            continue
        principal = doc["metadata"]["name"]
        for rule in doc["spec"]["authorization"]["acls"]:
            if rule.get("type", "allow") != "allow" or rule.get("host", "*") != "*":
                raise ValueError(f"{principal}: a rule this declaration never makes: {rule}")
            res = rule["resource"]
            for op in rule["operations"]:
                out.add(
                    Grant(
                        principal,
                        cast(Resource, res["type"]),
                        res["name"],
                        patterns[res.get("patternType", "literal")],
                        operations[op],
                    )
                )
    return out


def kafka_cluster() -> list[dict[str, Any]]:
    """Three KRaft nodes (broker and controller each), SCRAM over TLS, ACLs enforced."""
    pool = {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaNodePool",
        "metadata": {"name": "dual-role", "labels": LABEL},
        "spec": {
            "replicas": BROKERS,
            "roles": ["controller", "broker"],
            "storage": {
                "type": "jbod",
                "volumes": [
                    {
                        "id": 0,
                        "type": "persistent-claim",
                        "size": "50Gi",
                        "deleteClaim": False,
                        "kraftMetadata": "shared",
                    }
                ],
            },
            "resources": {
                "requests": {"cpu": "1", "memory": "2Gi"},
                "limits": {"memory": "2Gi"},
            },
        },
    }
    peers = [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "enlace"}}}]
    kafka = {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "Kafka",
        "metadata": {"name": CLUSTER},
        "spec": {
            "kafka": {
                "version": KAFKA_VERSION,
                "listeners": [
                    {
                        "name": "tls",
                        "port": TLS_PORT,
                        "type": "internal",
                        "tls": True,
                        "authentication": {"type": "scram-sha-512"},
                        "networkPolicyPeers": peers,
                    },
                    {
                        "name": "external",
                        "port": EXTERNAL_PORT,
                        "type": "loadbalancer",
                        "tls": True,
                        "authentication": {"type": "scram-sha-512"},
                    },
                ],
                "authorization": {"type": "simple"},
                "config": {
                    "default.replication.factor": REPLICAS,
                    "min.insync.replicas": MIN_ISR,
                    "offsets.topic.replication.factor": REPLICAS,
                    "transaction.state.log.replication.factor": REPLICAS,
                    "transaction.state.log.min.isr": MIN_ISR,
                    "auto.create.topics.enable": False,
                    "allow.everyone.if.no.acl.found": False,
                },
            },
            "entityOperator": {"topicOperator": {}, "userOperator": {}},
        },
    }
    return [pool, kafka]
