"""Backward-compatibility check between two versions of an event's JSON Schema.

A v1 event may only grow: a new optional field, a new enum value, a wider type.
Anything else breaks a partner that already consumes the topic: a field removed
or renamed, a field made optional or newly required, a type or enum narrowed,
a pattern, format or bound tightened.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems")
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems")


def breaking_changes(old: Schema, new: Schema) -> list[str]:
    """Every way `new` fails to accept what `old` accepted, as readable sentences."""
    problems: list[str] = []
    _compare(old, new, old.get("$defs", {}), new.get("$defs", {}), "$", problems)
    return problems


def _resolve(node: Schema, defs: dict[str, Any]) -> Schema:
    while "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[-1]]
    return node


def _branches(node: Schema, defs: dict[str, Any]) -> list[Schema]:
    node = _resolve(node, defs)
    if "anyOf" in node or "oneOf" in node:
        out: list[Schema] = []
        for sub in node.get("anyOf", []) + node.get("oneOf", []):
            out += _branches(sub, defs)
        return out
    return [node]


def _kind(node: Schema) -> str:
    if "enum" in node or "const" in node:
        return "enum"
    return str(node.get("type", "any"))


def _compare(
    old: Schema,
    new: Schema,
    old_defs: dict[str, Any],
    new_defs: dict[str, Any],
    path: str,
    problems: list[str],
) -> None:
    old_branches = _branches(old, old_defs)
    new_branches = _branches(new, new_defs)
    if len(old_branches) > 1 or len(new_branches) > 1:
        for branch in old_branches:
            matches = [b for b in new_branches if _kind(b) == _kind(branch)]
            if not matches and not any(_kind(b) == "any" for b in new_branches):
                problems.append(f"{path}: no longer accepts {_kind(branch)}")
            elif matches:
                _compare_single(branch, matches[0], old_defs, new_defs, path, problems)
        return
    _compare_single(old_branches[0], new_branches[0], old_defs, new_defs, path, problems)


def _compare_single(
    old: Schema,
    new: Schema,
    old_defs: dict[str, Any],
    new_defs: dict[str, Any],
    path: str,
    problems: list[str],
) -> None:
    if _kind(new) == "any":
        return
    old_types = _types(old)
    new_types = _types(new)
    if old_types and new_types and not old_types <= new_types:
        problems.append(f"{path}: type narrowed from {sorted(old_types)} to {sorted(new_types)}")
        return
    old_enum = _enum(old)
    new_enum = _enum(new)
    if new_enum is not None:
        if old_enum is None:
            problems.append(f"{path}: now restricted to the values {sorted(map(str, new_enum))}")
        elif missing := [v for v in old_enum if v not in new_enum]:
            problems.append(f"{path}: values removed: {sorted(map(str, missing))}")
    for key in ("pattern", "format"):
        if key in new and new.get(key) != old.get(key):
            problems.append(f"{path}: {key} changed from {old.get(key)!r} to {new[key]!r}")
    for key in _LOWER_BOUNDS:
        if key in new and (key not in old or new[key] > old[key]):
            problems.append(f"{path}: {key} raised to {new[key]}")
    for key in _UPPER_BOUNDS:
        if key in new and (key not in old or new[key] < old[key]):
            problems.append(f"{path}: {key} lowered to {new[key]}")

    old_props: dict[str, Schema] = old.get("properties", {})
    new_props: dict[str, Schema] = new.get("properties", {})
    for name, old_prop in old_props.items():
        if name not in new_props:
            problems.append(f"{path}.{name}: field removed or renamed")
        else:
            _compare(old_prop, new_props[name], old_defs, new_defs, f"{path}.{name}", problems)
    old_required = set(old.get("required", []))
    new_required = set(new.get("required", []))
    for name in sorted(new_required - old_required):
        problems.append(f"{path}.{name}: new required field")
    for name in sorted(old_required - new_required):
        if name in new_props:
            problems.append(f"{path}.{name}: no longer required")
    if isinstance(old.get("items"), dict) and isinstance(new.get("items"), dict):
        _compare(old["items"], new["items"], old_defs, new_defs, f"{path}[]", problems)


def _types(node: Schema) -> set[str]:
    raw = node.get("type")
    if raw is None:
        return set()
    types = {raw} if isinstance(raw, str) else set(raw)
    if "integer" in types:
        types.add("integer")
    if "number" in types:
        types.add("integer")  # a number field accepts integers
    return types


def _enum(node: Schema) -> list[Any] | None:
    if "enum" in node:
        return list(node["enum"])
    if "const" in node:
        return [node["const"]]
    return None
