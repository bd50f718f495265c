"""`make lint`'s deployment checks (deploy/lint/check.py) pass on what is committed
and fail, naming the problem, on a deliberately broken Dockerfile, compose file or
manifest. The tools come from deploy/lint/install-tools.sh (`make lint` runs it
before the tests): their absence fails here, it is never a skip."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.lint import check

ROOT = check.ROOT
BASE = ROOT / "deploy" / "k8s" / "base"
COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    for tool in ("hadolint", "kustomize", "kubeconform"):
        assert (check.TOOLS / "bin" / tool).is_file(), "run deploy/lint/install-tools.sh"
    assert (check.SCHEMAS / "versions.json").is_file(), "run deploy/lint/install-tools.sh"


def _edit(path: Path, kind: str, change: Any) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    change(next(d for d in docs if d["kind"] == kind))
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def _broken_base(tmp_path: Path, file: str, kind: str, change: Any) -> Path:
    copy = tmp_path / "base"
    shutil.copytree(BASE, copy)
    _edit(copy / file, kind, change)
    return copy


def _manifest_problems(base: Path) -> str:
    rendered, failed = check.kustomize(base)
    assert not failed
    return "\n".join(check.kubeconform(rendered))


def test_the_committed_deployment_passes_every_check() -> None:
    assert check.main([]) == 0


def test_a_field_of_the_wrong_type_fails_naming_it(tmp_path: Path) -> None:
    def change(d: Any) -> None:
        d["spec"]["replicas"] = "two"

    problems = _manifest_problems(_broken_base(tmp_path, "services.yaml", "Deployment", change))
    assert "/spec/replicas" in problems
    assert "Deployment enlace-intake is invalid" in problems


def test_an_unknown_field_in_a_custom_resource_fails_naming_it(tmp_path: Path) -> None:
    def change(d: Any) -> None:
        d["spec"]["kafka"]["replicationFactor"] = 3

    problems = _manifest_problems(_broken_base(tmp_path, "kafka.yaml", "Kafka", change))
    assert "additional properties 'replicationFactor' not allowed" in problems


def test_an_acl_operation_strimzi_does_not_know_fails(tmp_path: Path) -> None:
    def change(d: Any) -> None:
        d["spec"]["authorization"]["acls"][0]["operations"] = ["READ"]

    problems = _manifest_problems(_broken_base(tmp_path, "kafka-users.yaml", "KafkaUser", change))
    assert "/spec/authorization/acls/0/operations/0" in problems


def test_a_kind_without_a_schema_fails(tmp_path: Path) -> None:
    copy = tmp_path / "base"
    shutil.copytree(BASE, copy)
    widget = {"apiVersion": "example.org/v1", "kind": "Widget", "metadata": {"name": "w"}}
    with (copy / "monitoring.yaml").open("a") as out:
        out.write("---\n" + yaml.safe_dump(widget))
    assert "could not find schema for Widget" in _manifest_problems(copy)


def test_a_missing_crd_schema_fails_rather_than_skips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schemas = tmp_path / "schemas"
    shutil.copytree(check.SCHEMAS, schemas)
    (schemas / "crds" / "kafka.strimzi.io" / "kafkauser_v1.json").unlink()
    monkeypatch.setattr(check, "SCHEMAS", schemas)
    rendered, _ = check.kustomize(BASE)
    assert "could not find schema for KafkaUser" in "\n".join(check.kubeconform(rendered))


def test_a_broken_dockerfile_fails_hadolint(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:latest\nRUN cd /app && pip install .\n")
    problems = "\n".join(check.hadolint(dockerfile))
    assert "DL3007" in problems  # the base is not pinned
    assert "DL3003" in problems  # cd instead of WORKDIR


def _broken_compose(tmp_path: Path, change: Any) -> list[str]:
    doc = yaml.safe_load(COMPOSE.read_text())
    change(doc)
    path = COMPOSE.parent / f".test-{tmp_path.name}.yaml"  # relative mounts resolve here
    try:
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return check.compose_problems(path)
    finally:
        path.unlink()


def test_the_compose_file_fails_on_a_key_compose_does_not_know(tmp_path: Path) -> None:
    problems = _broken_compose(tmp_path, lambda d: d["services"]["intake"].update(replica=2))
    assert any("services/intake" in p and "'replica'" in p for p in problems), problems


def test_the_compose_file_fails_on_a_dependency_that_does_not_exist(tmp_path: Path) -> None:
    def change(d: Any) -> None:
        d["services"]["referral"]["depends_on"]["kafka-4"] = {"condition": "service_started"}

    problems = _broken_compose(tmp_path, change)
    assert any("services/referral/depends_on: no service 'kafka-4'" in p for p in problems)


def test_the_compose_file_fails_on_another_kafka_principal(tmp_path: Path) -> None:
    def change(d: Any) -> None:
        d["services"]["ops"]["environment"]["KAFKA_SASL_USERNAME"] = "enlace-ops"

    problems = _broken_compose(tmp_path, change)
    assert any("services/ops: KAFKA_SASL_USERNAME is not svc-ops" in p for p in problems)


def test_the_compose_file_fails_without_three_kafka_nodes(tmp_path: Path) -> None:
    problems = _broken_compose(tmp_path, lambda d: d["services"].pop("kafka-3"))
    assert any("2 Kafka nodes, not 3" in p for p in problems), problems


def test_every_variable_and_every_principals_password_is_in_env_example(tmp_path: Path) -> None:
    example = (COMPOSE.parent / "env.example").read_text()
    (tmp_path / "env.example").write_text(example.replace("KAFKA_PASSWORD_UAVT_GT=\n", ""))
    text = COMPOSE.read_text() + "\n# ${ENLACE_NOT_LISTED:?}\n"
    problems = check._compose_variables(text, tmp_path)
    assert problems == [
        "ENLACE_NOT_LISTED is not in env.example",
        "KAFKA_PASSWORD_UAVT_GT is not in env.example",
    ]


def test_every_overlay_is_rendered_and_a_broken_patch_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check.main([]) == 0
    out = capsys.readouterr().out
    assert "deploy/k8s/base: Summary" in out
    assert "deploy/k8s/overlays/example: Summary" in out
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(BASE, overlay)],
        "patches": [
            {
                "target": {"kind": "PodDisruptionBudget", "name": "enlace-ops"},
                "patch": "- op: add\n  path: /spec/minAvailable\n  value: [1]\n",
            }
        ],
    }
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    assert check.main(["--kustomize", str(overlay)]) == 1
    assert "PodDisruptionBudget enlace-ops is invalid" in capsys.readouterr().err
