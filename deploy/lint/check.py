"""The deployment checks of `make lint`, offline (the tools and schemas come from
deploy/lint/install-tools.sh):

1. hadolint on the Dockerfile;
2. the compose file parsed, validated against the compose-spec JSON Schema, then
   checked for what the schema cannot see (dependencies and mounts that exist, one
   host port per service, each Enlace service's Kafka principal as declared in
   deploy/kafka-access.yaml, three Kafka nodes);
3. the Kustomize base and every overlay (deploy/k8s/overlays/*) rendered by
   kustomize and validated by kubeconform in strict mode against Kubernetes' and
   every CRD's schema. A kind without a schema fails.

    python -m deploy.lint.check [--dockerfile F] [--compose F] [--kustomize DIR]...

Exits 1 naming every problem.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from deploy.compose.init import password_variable
from services.kit.kafka_acl import load_access

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".local" / "tools"
SCHEMAS = TOOLS / "schemas"
ENLACE_SERVICES = ("intake", "referral", "followup", "notifications", "ops")


def hadolint(dockerfile: Path) -> list[str]:
    run = subprocess.run(
        [str(TOOLS / "bin" / "hadolint"), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    return [] if run.returncode == 0 else [f"hadolint: {run.stdout}{run.stderr}".strip()]


def compose_problems(path: Path) -> list[str]:
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        return [f"{path}: not YAML: {e}"]
    schema = json.loads((TOOLS / "src" / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    problems = [
        f"{path}: {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path)))
    ]
    if problems or not isinstance(doc, dict):
        return problems or [f"{path}: not a mapping"]
    problems = _compose_semantics(doc, path.parent)
    return [f"{path}: {p}" for p in problems + _compose_variables(path.read_text(), path.parent)]


def _compose_variables(text: str, base: Path) -> list[str]:
    """Every variable the file interpolates, and every principal's Kafka password
    (kafka-init reads them all from .env), is listed in env.example."""
    example = base / "env.example"
    listed = {
        line.split("=", 1)[0].strip()
        for line in (example.read_text().splitlines() if example.is_file() else [])
        if "=" in line and not line.lstrip().startswith("#")
    }
    wanted = {m.group(1) for m in re.finditer(r"\$\{(\w+)", text)}
    wanted |= {password_variable(p) for p in load_access().principals()}
    return [f"{name} is not in {example.name}" for name in sorted(wanted - listed)]


def _compose_semantics(doc: dict[str, Any], base: Path) -> list[str]:
    out: list[str] = []
    services: dict[str, Any] = doc.get("services") or {}
    volumes = set(doc.get("volumes") or {})
    host_ports: dict[str, str] = {}
    access = load_access()
    for name, svc in services.items():
        if "image" not in svc and "build" not in svc:
            out.append(f"services/{name}: neither image nor build")
        for dep in svc.get("depends_on") or []:
            if dep not in services:
                out.append(f"services/{name}/depends_on: no service {dep!r}")
        for volume in svc.get("volumes") or []:
            source = (volume if isinstance(volume, str) else volume.get("source", "")).split(":")[0]
            if source.startswith((".", "/")):
                if not (base / source).exists():
                    out.append(f"services/{name}/volumes: {source} does not exist")
            elif source and source not in volumes:
                out.append(f"services/{name}/volumes: no top-level volume {source!r}")
        for port in svc.get("ports") or []:
            published = str(port).rsplit(":", 1)[0]
            if published in host_ports:
                out.append(
                    f"services/{name}/ports: {published} also published by {host_ports[published]}"
                )
            host_ports[published] = name
        env = svc.get("environment") or {}
        if name in ENLACE_SERVICES:
            wanted = access.principal_of(name)
            if env.get("KAFKA_SASL_USERNAME") != wanted:
                out.append(f"services/{name}: KAFKA_SASL_USERNAME is not {wanted}")
            if f"enlace_{name}:" not in str(env.get("DATABASE_URL", "")):
                out.append(f"services/{name}: DATABASE_URL does not log in as enlace_{name}")
    missing = [s for s in ENLACE_SERVICES if s not in services]
    if missing:
        out.append(f"services: missing {', '.join(missing)}")
    kafka = [n for n, s in services.items() if str(s.get("image", "")).startswith("apache/kafka")]
    if len(kafka) != 3:
        out.append(f"services: {len(kafka)} Kafka nodes, not 3")
    return out


def kubeconform(rendered: str, label: str = "kubeconform") -> list[str]:
    versions = json.loads((SCHEMAS / "versions.json").read_text())
    run = subprocess.run(
        [
            str(TOOLS / "bin" / "kubeconform"),
            "-strict",
            "-summary",
            "-output",
            "text",
            "-kubernetes-version",
            versions["kubernetes"],
            "-schema-location",
            str(SCHEMAS / "k8s")
            + "/{{.NormalizedKubernetesVersion}}-standalone{{.StrictSuffix}}"
            + "/{{.ResourceKind}}{{.KindSuffix}}.json",
            "-schema-location",
            str(SCHEMAS / "crds") + "/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json",
            "-",
        ],
        input=rendered,
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode == 0:
        summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else "ok"
        print(f"{label}: {summary}")
        return []
    return [f"kubeconform: {line}" for line in (run.stdout + run.stderr).strip().splitlines()]


def kustomize(directory: Path) -> tuple[str, list[str]]:
    run = subprocess.run(
        [str(TOOLS / "bin" / "kustomize"), "build", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        return "", [f"kustomize build {directory}: {run.stderr.strip()}"]
    return run.stdout, []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Deployment checks of make lint")
    parser.add_argument("--dockerfile", type=Path, default=ROOT / "Dockerfile")
    parser.add_argument("--compose", type=Path, default=ROOT / "deploy/compose/compose.yaml")
    parser.add_argument(
        "--kustomize",
        type=Path,
        action="append",
        help="a kustomization directory (repeatable); default: the base and every overlay",
    )
    args = parser.parse_args(argv)
    k8s = ROOT / "deploy" / "k8s"
    directories = args.kustomize or [k8s / "base", *sorted((k8s / "overlays").glob("*/"))]
    problems = hadolint(args.dockerfile)
    problems += compose_problems(args.compose)
    for directory in directories:
        rendered, failed = kustomize(directory)
        label = (
            str(directory.relative_to(ROOT)) if directory.is_relative_to(ROOT) else str(directory)
        )
        problems += failed or [f"{label}: {p}" for p in kubeconform(rendered, label)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print("deploy: Dockerfile, compose and Kubernetes manifests valid")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
