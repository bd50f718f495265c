"""The five services on Kubernetes: a Deployment, Service and PodDisruptionBudget
each, the CloudNativePG cluster with a database and role per service, and the
monitoring resources (the PrometheusRule is deploy/monitoring/rules.yml unchanged).
Their NetworkPolicies are in deploy/k8s/network.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deploy.k8s.strimzi import CLUSTER, TLS_PORT
from services.kit.kafka_acl import Access

RULES_FILE = Path(__file__).resolve().parents[1] / "monitoring" / "rules.yml"
PART_OF = {"app.kubernetes.io/part-of": "enlace"}
PG_CLUSTER = "enlace-pg"
IMAGE = "enlace"  # kustomize's `images` sets the registry and the tag
KAFKA_CA = "/etc/enlace/kafka-ca"
AGENCIES_DIR = "/etc/enlace/agencies"
KEK_DIR = "/var/lib/enlace/kek"


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    calls: tuple[str, ...] = ()  # other services' HTTP APIs it calls
    public: bool = True  # reached from outside (partners, operators, the SMS provider)
    env: dict[str, str] = field(default_factory=dict)
    # (variable, Secret, key): secrets a deployment provides (README "Deploy").
    secrets: tuple[tuple[str, str, str], ...] = ()
    optional_secrets: tuple[tuple[str, str, str], ...] = ()
    internet: bool = False  # egress to providers outside the cluster (SMTP, SMS)
    replicas: int = 2


def _url(name: str) -> str:
    return f"http://enlace-{name}:{PORTS[name]}"


PORTS = {"intake": 8001, "referral": 8002, "followup": 8003, "notifications": 8004, "ops": 8005}
SERVICES = [
    Service(
        "intake",
        8001,
        env={"ENLACE_KEK_PROVIDER": "file", "ENLACE_KEK_DIR": KEK_DIR},
        secrets=(("ENLACE_IDENTITY_HASH_KEY", "enlace-intake", "identity-hash-key"),),
    ),
    Service(
        "referral",
        8002,
        calls=("intake",),
        env={"ENLACE_INTAKE_URL": _url("intake")},
        secrets=(("ENLACE_INTERNAL_API_KEY", "enlace-internal-api-keys", "referral"),),
    ),
    Service("followup", 8003),
    Service(
        "notifications",
        8004,
        calls=("intake", "referral", "followup"),
        env={
            "ENLACE_INTAKE_URL": _url("intake"),
            "ENLACE_REFERRAL_INTERNAL_URL": _url("referral"),
            "ENLACE_REFERRAL_API_URL": _url("referral"),
            "ENLACE_FOLLOWUP_API_URL": _url("followup"),
        },
        secrets=(
            ("ENLACE_INTERNAL_API_KEY", "enlace-internal-api-keys", "notifications"),
            ("ENLACE_SMS_AUTH_TOKEN", "enlace-notifications", "sms-auth-token"),
            # Seals partner webhook endpoints' signing secrets at rest.
            ("ENLACE_WEBHOOK_SECRETS_KEY", "enlace-notifications", "webhook-secrets-key"),
        ),
        # Needed (and then required in production) only with ENLACE_SMTP_USER.
        optional_secrets=(("ENLACE_SMTP_PASSWORD", "enlace-notifications", "smtp-password"),),
        internet=True,
    ),
    Service(
        "ops",
        8005,
        calls=("intake", "referral", "followup", "notifications"),
        env={f"ENLACE_OPS_{s.upper()}_URL": _url(s) for s in PORTS if s != "ops"},
        secrets=(("ENLACE_CONSOLE_SESSION_KEY", "enlace-ops", "console-session-key"),),
        # Its lag sampler elects no leader: a second replica would sample twice.
        replicas=1,
    ),
]


def labels(service: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": service, **PART_OF}


def _secret_env(variable: str, secret: str, key: str, optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:  # unset when the key is absent (the setting is then not needed)
        ref["optional"] = True
    return {"name": variable, "valueFrom": {"secretKeyRef": ref}}


def deployment(s: Service, principal: str) -> dict[str, Any]:
    env: list[dict[str, Any]] = [
        {"name": "ENLACE_ENV", "value": "production"},
        {"name": "ENLACE_HTTP_HOST", "value": "0.0.0.0"},
        {"name": "ENLACE_HTTP_PORT", "value": str(s.port)},
        {"name": "ENLACE_HTTP_WORKERS", "value": "1"},  # one process a pod: scale replicas
        {"name": "KAFKA_BOOTSTRAP_SERVERS", "value": f"{CLUSTER}-kafka-bootstrap:{TLS_PORT}"},
        {"name": "KAFKA_SECURITY_PROTOCOL", "value": "SASL_SSL"},
        {"name": "KAFKA_SASL_MECHANISM", "value": "SCRAM-SHA-512"},
        {"name": "KAFKA_SASL_USERNAME", "value": principal},
        _secret_env("KAFKA_SASL_PASSWORD", principal, "password"),  # Strimzi's User Operator
        {"name": "KAFKA_SSL_CAFILE", "value": f"{KAFKA_CA}/ca.crt"},
        _secret_env("PGPASSWORD", f"{PG_CLUSTER}-{s.name}", "password"),
        {
            "name": "DATABASE_URL",
            "value": f"postgresql://enlace_{s.name}:$(PGPASSWORD)@{PG_CLUSTER}-rw:5432/"
            f"enlace_{s.name}?sslmode=require",
        },
        {"name": "ENLACE_AGENCIES_FILE", "value": f"{AGENCIES_DIR}/agencies.yaml"},
        *({"name": k, "value": v} for k, v in sorted(s.env.items())),
        *(_secret_env(*secret) for secret in s.secrets),
        *(_secret_env(*secret, optional=True) for secret in s.optional_secrets),
    ]
    mounts = [
        {"name": "kafka-ca", "mountPath": KAFKA_CA, "readOnly": True},
        {"name": "agencies", "mountPath": AGENCIES_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "kafka-ca", "secret": {"secretName": f"{CLUSTER}-cluster-ca-cert"}},
        {"name": "agencies", "configMap": {"name": "enlace-agencies"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]
    if s.name == "intake":
        mounts.append({"name": "kek", "mountPath": KEK_DIR, "readOnly": True})
        kek = {"secretName": "enlace-intake-kek", "defaultMode": 0o440}  # fsGroup reads
        volumes.append({"name": "kek", "secret": kek})
    env_from = [{"configMapRef": {"name": "enlace-notifications"}}] if s.internet else []

    def probe(path: str, **extra: int) -> dict[str, Any]:
        return {"httpGet": {"path": path, "port": "http"}, "timeoutSeconds": 1, **extra}

    container = {
        "name": s.name,
        "image": IMAGE,
        "args": ["python", "-m", f"services.{s.name}"],
        "ports": [{"name": "http", "containerPort": s.port}],
        "env": env,
        **({"envFrom": env_from} if env_from else {}),
        "startupProbe": probe("/healthz", periodSeconds=2, failureThreshold=60),
        "livenessProbe": probe("/healthz", periodSeconds=10, failureThreshold=3),
        "readinessProbe": probe("/readyz", periodSeconds=5, failureThreshold=2),
        "resources": {
            "requests": {"cpu": "500m", "memory": "256Mi"},
            "limits": {"memory": "512Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"enlace-{s.name}", "labels": labels(s.name)},
        "spec": {
            "replicas": s.replicas,
            "selector": {"matchLabels": labels(s.name)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels(s.name)},
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 30,  # shutdown_grace_seconds is 15
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "runAsGroup": 10001,
                        "fsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def service(s: Service) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        # The name is Prometheus's job label: rules.yml expects enlace-<service>.
        "metadata": {"name": f"enlace-{s.name}", "labels": labels(s.name)},
        "spec": {
            "selector": labels(s.name),
            "ports": [{"name": "http", "port": s.port, "targetPort": "http"}],
        },
    }


def pdb(s: Service) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": f"enlace-{s.name}", "labels": labels(s.name)},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels(s.name)}},
    }


def postgres() -> list[dict[str, Any]]:
    """One CloudNativePG cluster; each service its own login role and database (the
    role's password: Secret enlace-pg-<service>, kubernetes.io/basic-auth)."""
    cluster = {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": PG_CLUSTER, "labels": PART_OF},
        "spec": {
            "instances": 3,
            "imageName": "ghcr.io/cloudnative-pg/postgresql:17.6",
            "enableSuperuserAccess": False,
            "postgresql": {"parameters": {"max_connections": "200"}},
            "storage": {"size": "20Gi"},
            "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "2Gi"}},
            "managed": {
                "roles": [
                    {
                        "name": f"enlace_{s.name}",
                        "ensure": "present",
                        "login": True,
                        "passwordSecret": {"name": f"{PG_CLUSTER}-{s.name}"},
                    }
                    for s in SERVICES
                ]
            },
        },
    }
    databases = [
        {
            "apiVersion": "postgresql.cnpg.io/v1",
            "kind": "Database",
            "metadata": {"name": f"enlace-{s.name}", "labels": PART_OF},
            "spec": {
                "name": f"enlace_{s.name}",
                "owner": f"enlace_{s.name}",
                "cluster": {"name": PG_CLUSTER},
                "ensure": "present",
            },
        }
        for s in SERVICES
    ]
    return [cluster, *databases]


def monitoring() -> list[dict[str, Any]]:
    rules = yaml.safe_load(RULES_FILE.read_text())
    return [
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": "enlace", "labels": PART_OF},
            "spec": {
                "selector": {"matchLabels": PART_OF},
                "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}],
            },
        },
        {
            # CloudNativePG's exporter (its own PodMonitor option is deprecated).
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PodMonitor",
            "metadata": {"name": PG_CLUSTER, "labels": PART_OF},
            "spec": {
                "selector": {"matchLabels": {"cnpg.io/cluster": PG_CLUSTER}},
                "podMetricsEndpoints": [{"port": "metrics"}],
            },
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": {"name": "enlace", "labels": PART_OF},
            "spec": {"groups": rules["groups"]},
        },
    ]


def workloads(access: Access) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for s in SERVICES:
        out += [deployment(s, access.principal_of(s.name)), service(s), pdb(s)]
    return out
