"""Kubernetes and compose monitor with the rules file local Prometheus loads
(deploy/monitoring/rules.yml), and scrape each service under the job name the rules
expect (`enlace-<service>`)."""

from __future__ import annotations

from typing import Any

import yaml

from deploy.k8s import generate
from deploy.lint import check

RULES = check.ROOT / "deploy" / "monitoring" / "rules.yml"
COMPOSE_DIR = check.ROOT / "deploy" / "compose"
SERVICES = ("intake", "referral", "followup", "notifications", "ops")


def _k8s(kind: str, file: str) -> list[dict[str, Any]]:
    docs = yaml.safe_load_all((generate.BASE / file).read_text())
    return [d for d in docs if d and d["kind"] == kind]


def test_the_prometheus_rule_is_the_local_rules_file() -> None:
    (rule,) = _k8s("PrometheusRule", "monitoring.yaml")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_the_service_monitor_scrapes_every_service_under_its_job_name() -> None:
    (monitor,) = _k8s("ServiceMonitor", "monitoring.yaml")
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [
        s
        for s in _k8s("Service", "services.yaml")
        if selector.items() <= s["metadata"]["labels"].items()
    ]
    # Without jobLabel, the job is the Service's name.
    assert "jobLabel" not in monitor["spec"]
    assert sorted(s["metadata"]["name"] for s in services) == sorted(
        f"enlace-{name}" for name in SERVICES
    )
    ports = {p["name"] for s in services for p in s["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == ports


def test_compose_prometheus_loads_the_same_rules_and_jobs() -> None:
    compose = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "../monitoring/rules.yml:/etc/prometheus/rules.yml:ro" in mounts
    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules.yml"]
    jobs = {j["job_name"] for j in config["scrape_configs"]}
    assert {f"enlace-{name}" for name in SERVICES} <= jobs
