"""JSON Schemas for kubeconform, made offline from what the registries give us.

- Kubernetes: the PyPI package kubernetes-validate ships each version's OpenAPI as
  JSON Schema ("local-strict": unknown fields refused), every kind pointing into one
  shared `_definitions.json` by an absolute `/api/...` reference that only its own
  resolver understands. Each top-level kind is written standalone here (the
  definitions it reaches copied into its `$defs`), under kubeconform's layout
  `<out>/k8s/v<version>-standalone-strict/<kind>-<group>-<version>.json`.
- CRDs: each `CustomResourceDefinition` version's `openAPIV3Schema`, made strict
  (an object that lists its properties refuses any other, unless it says
  `x-kubernetes-preserve-unknown-fields`), under `<out>/crds/<group>/<kind>_<version>.json`.

Runs in the tools venv of install-tools.sh (kubernetes-validate and PyYAML there).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


class _Loader(yaml.SafeLoader):
    """PyYAML reads a bare `=` as its `value` tag (YAML 1.0); a CRD's enum means "="."""


_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: node.value)

_K8S_REF = re.compile(r"^/api/_definitions\.json#/\$defs/(.+)$")


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _standalone(schema: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """`schema` with every definition it reaches, transitively, in its own `$defs`."""
    needed: dict[str, Any] = {}
    pending = [schema]
    while pending:
        for node in _walk(pending.pop()):
            ref = node.get("$ref")
            if not isinstance(ref, str):
                continue
            match = _K8S_REF.match(ref)
            name = match.group(1) if match else ref.removeprefix("#/$defs/")
            if match:
                node["$ref"] = f"#/$defs/{name}"
            if name not in needed:
                needed[name] = json.loads(json.dumps(definitions[name]))
                pending.append(needed[name])
    return {**schema, "$defs": needed}


def kubernetes(version: str, out: Path) -> int:
    source = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    source = source / f"v{version}-local-strict"
    shared = json.loads((source / "_definitions.json").read_text())
    target = out / "k8s" / f"v{version}-standalone-strict"
    target.mkdir(parents=True, exist_ok=True)
    written = 0
    for entry in source.iterdir():
        if entry.name.startswith("_") or not entry.name.endswith(".json"):
            continue
        schema = json.loads(entry.read_text())
        if "enum" not in schema.get("properties", {}).get("kind", {}):
            continue  # a part of a kind (a spec, a status), never a document's root
        schema = _standalone(schema, shared["$defs"])
        if "$schema" in shared:
            schema["$schema"] = shared["$schema"]
        (target / entry.name).write_text(json.dumps(schema))
        written += 1
    return written


def _strict(node: Any) -> Any:
    """A CRD's structural schema as JSON Schema that refuses unknown fields."""
    if isinstance(node, list):
        return [_strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        for key in ("type", "anyOf"):
            out.pop(key, None)
        out["oneOf"] = [{"type": "string"}, {"type": "integer"}]
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out


def crds(directories: list[Path], out: Path) -> list[str]:
    written: list[str] = []
    for directory in directories:
        for path in sorted(directory.glob("*.yaml")):
            for doc in yaml.load_all(path.read_text(), Loader=_Loader):
                if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                group, kind = spec["group"], spec["names"]["kind"]
                for version in spec["versions"]:
                    schema = json.loads(json.dumps(version["schema"]["openAPIV3Schema"]))
                    props = schema.setdefault("properties", {})
                    props.setdefault("apiVersion", {"type": "string"})
                    props.setdefault("kind", {"type": "string"})
                    props.setdefault("metadata", {"type": "object"})
                    schema = _strict(schema)
                    target = out / "crds" / group / f"{kind.lower()}_{version['name']}.json"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(json.dumps(schema))
                    written.append(f"{group}/{kind}/{version['name']}")
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--kubernetes", required=True, help="e.g. 1.34.0")
    parser.add_argument("--crds", type=Path, nargs="+", required=True)
    args = parser.parse_args()
    n = kubernetes(args.kubernetes, args.out)
    made = crds(args.crds, args.out)
    (args.out / "versions.json").write_text(
        json.dumps({"kubernetes": args.kubernetes, "crds": sorted(made)}, indent=1)
    )
    print(f"schemas: {n} Kubernetes {args.kubernetes} kinds, {len(made)} CRD versions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
