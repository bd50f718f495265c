"""NetworkPolicies allowing only the flows that exist: each service's callers and
callees (`apps.Service.calls`), Kafka, PostgreSQL, DNS, the ingress controller,
Prometheus, and the internet for notifications' providers; PostgreSQL's instances
reachable only by the services, each other, their operator and Prometheus. Strimzi
writes the Kafka pods' own policies (the `tls` listener's `networkPolicyPeers`)."""

from __future__ import annotations

from typing import Any

from deploy.k8s.apps import PART_OF, PG_CLUSTER, PORTS, SERVICES, labels
from deploy.k8s.strimzi import CLUSTER, TLS_PORT

# Where the cluster's ingress controller, Prometheus and the CloudNativePG operator run
# (namespace names; an overlay patches them if they differ).
INGRESS_NAMESPACE = "ingress-nginx"
MONITORING_NAMESPACE = "monitoring"
CNPG_NAMESPACE = "cnpg-system"


def _namespace(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def network_policies() -> list[dict[str, Any]]:
    """Deny everything to and from the services, then allow each flow that exists."""
    callers: dict[str, list[str]] = {s.name: [] for s in SERVICES}
    for s in SERVICES:
        for callee in s.calls:
            callers[callee].append(s.name)
    out: list[dict[str, Any]] = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "enlace-default-deny"},
            "spec": {"podSelector": {"matchLabels": PART_OF}, "policyTypes": ["Ingress", "Egress"]},
        }
    ]
    for s in SERVICES:
        port = [{"protocol": "TCP", "port": s.port}]
        ingress: list[dict[str, Any]] = [
            {"from": [_namespace(MONITORING_NAMESPACE)], "ports": port},  # /metrics
        ]
        if s.public:
            ingress.append({"from": [_namespace(INGRESS_NAMESPACE)], "ports": port})
        if callers[s.name]:
            peers = [{"podSelector": {"matchLabels": labels(c)}} for c in callers[s.name]]
            ingress.append({"from": peers, "ports": port})
        egress: list[dict[str, Any]] = [
            {
                "to": [
                    {
                        **_namespace("kube-system"),
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                    }
                ],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
            },
            {
                "to": [
                    {
                        "podSelector": {
                            "matchLabels": {
                                "strimzi.io/cluster": CLUSTER,
                                "strimzi.io/kind": "Kafka",
                            }
                        }
                    }
                ],
                "ports": [{"protocol": "TCP", "port": TLS_PORT}],
            },
            {
                "to": [{"podSelector": {"matchLabels": {"cnpg.io/cluster": PG_CLUSTER}}}],
                "ports": [{"protocol": "TCP", "port": 5432}],
            },
        ]
        for callee in s.calls:
            egress.append(
                {
                    "to": [{"podSelector": {"matchLabels": labels(callee)}}],
                    "ports": [{"protocol": "TCP", "port": PORTS[callee]}],
                }
            )
        if s.internet:  # the SMTP relay and the SMS provider, outside the cluster
            private = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
            egress.append(
                {
                    "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": private}}],
                    "ports": [{"protocol": "TCP", "port": p} for p in (25, 443, 465, 587)],
                }
            )
        out.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": f"enlace-{s.name}"},
                "spec": {
                    "podSelector": {"matchLabels": labels(s.name)},
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": ingress,
                    "egress": egress,
                },
            }
        )
    return out


def postgres_network_policy() -> dict[str, Any]:
    """Who may reach the PostgreSQL instances: the services (5432), the other
    instances (replication, 5432; status, 8000), the CloudNativePG operator (8000,
    5432) and Prometheus (9187). Egress stays open: an instance talks to the API server."""
    tcp = [{"protocol": "TCP", "port": p} for p in (5432, 8000)]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": PG_CLUSTER},
        "spec": {
            "podSelector": {"matchLabels": {"cnpg.io/cluster": PG_CLUSTER}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": PART_OF}}],
                    "ports": [{"protocol": "TCP", "port": 5432}],
                },
                {
                    "from": [{"podSelector": {"matchLabels": {"cnpg.io/cluster": PG_CLUSTER}}}],
                    "ports": tcp,
                },
                {"from": [_namespace(CNPG_NAMESPACE)], "ports": tcp},
                {
                    "from": [_namespace(MONITORING_NAMESPACE)],
                    "ports": [{"protocol": "TCP", "port": 9187}],
                },
            ],
        },
    }
