"""The Deployments configure the services as their settings classes read them: every
variable set is one a service reads, a production service starts with what the
manifest gives it (every secret present), the probes are the health endpoints, and
the NetworkPolicies allow exactly the HTTP calls the services are configured to make."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices

from deploy.k8s import generate
from services.followup.app import FollowupSettings
from services.intake.app import IntakeSettings
from services.kit.production import UnsafeProductionSettings
from services.kit.settings import ServiceSettings
from services.notifications.app import NotificationsSettings
from services.ops.app import OpsSettings
from services.referral.app import ReferralSettings

SETTINGS: dict[str, type[ServiceSettings]] = {
    "intake": IntakeSettings,
    "referral": ReferralSettings,
    "followup": FollowupSettings,
    "notifications": NotificationsSettings,
    "ops": OpsSettings,
}


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((generate.BASE / name).read_text()) if d]


def _container(service: str) -> dict[str, Any]:
    (deployment,) = [
        d
        for d in _docs("services.yaml")
        if d["kind"] == "Deployment" and d["metadata"]["name"] == f"enlace-{service}"
    ]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def _variables(settings: type[ServiceSettings]) -> set[str]:
    """Every environment variable a settings class reads."""
    prefix = settings.model_config.get("env_prefix", "")
    names: set[str] = set()
    for name, info in settings.model_fields.items():
        names.add(f"{prefix}{name}".upper())
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {str(choice).upper() for choice in alias.choices}
        elif isinstance(alias, str):
            names.add(alias.upper())
    return names


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_every_variable_a_deployment_sets_is_read_by_its_service(service: str) -> None:
    read = _variables(SETTINGS[service]) | {"PGPASSWORD"}  # PGPASSWORD: into DATABASE_URL
    unknown = {e["name"] for e in _container(service)["env"]} - read
    assert not unknown, f"{service} does not read {sorted(unknown)}"


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_a_production_service_starts_with_what_its_deployment_gives(
    service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each secretKeyRef stands for a secret the deployment provides (a random value
    here); a secret the settings need and the manifest omits would be refused."""
    agencies = tmp_path / "agencies.yaml"
    agencies.write_text("agencies: []\n")
    values: dict[str, str] = {}
    for entry in _container(service)["env"]:
        value = entry.get("value")
        if value is None:
            value = secrets.token_hex(16)  # from a Secret
        value = re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], value)
        values[entry["name"]] = value
    values["ENLACE_AGENCIES_FILE"] = str(agencies)
    for name in _variables(SETTINGS[service]):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = SETTINGS[service]()
    assert settings.env == "production"
    # Without one of its secrets, the same service refuses to start.
    secret = next(e["name"] for e in _container(service)["env"] if "valueFrom" in e)
    monkeypatch.delenv(secret)
    with pytest.raises(UnsafeProductionSettings, match=secret):
        SETTINGS[service]()


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_probes_are_the_health_endpoints(service: str) -> None:
    container = _container(service)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["args"] == ["python", "-m", f"services.{service}"]


def test_network_policies_allow_exactly_the_calls_the_services_are_configured_for() -> None:
    configured: dict[str, set[str]] = {}
    for service in SETTINGS:
        urls = [e.get("value", "") for e in _container(service)["env"]]
        configured[service] = {
            m.group(1) for url in urls for m in re.finditer(r"http://enlace-(\w+):", url)
        }
    allowed: dict[str, set[str]] = {s: set() for s in SETTINGS}
    callers: dict[str, set[str]] = {s: set() for s in SETTINGS}
    for policy in _docs("network-policies.yaml"):
        selector = policy["spec"]["podSelector"]["matchLabels"]
        me = selector.get("app.kubernetes.io/name")
        if me not in SETTINGS:
            continue
        for rule in policy["spec"].get("egress", []):
            for peer in rule["to"]:
                callee = peer.get("podSelector", {}).get("matchLabels", {})
                if callee.get("app.kubernetes.io/name") in SETTINGS:
                    allowed[me].add(callee["app.kubernetes.io/name"])
        for rule in policy["spec"].get("ingress", []):
            for peer in rule["from"]:
                caller = peer.get("podSelector", {}).get("matchLabels", {})
                if caller.get("app.kubernetes.io/name") in SETTINGS:
                    callers[me].add(caller["app.kubernetes.io/name"])
    assert allowed == configured
    assert callers == {s: {c for c in SETTINGS if s in configured[c]} for s in SETTINGS}
