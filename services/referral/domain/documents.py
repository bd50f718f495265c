"""What the two deployment documents (deploy/directory.yaml, deploy/routing.yaml)
share: strict models, YAML parsing, and errors that name the offending place, e.g.
`organizations[3] (id 'uavt-ni').services[0].coverage: ...`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class DirectoryError(ValueError):
    """The directory or routing file is invalid; the message names the place."""


class Strict(BaseModel):
    """A document part: unknown keys refused, values frozen, text stripped."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def load_yaml(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise DirectoryError(f"{source}: not valid YAML: {exc}") from None


def labels_of(items: Any) -> dict[int, str]:
    """`{index: "id '<id>'"}` for the list items that have an id, to name them in errors."""
    return {
        i: f"id {item.get('id')!r}" for i, item in enumerate(items or []) if isinstance(item, dict)
    }


def format_validation(exc: ValidationError, source: str, labels: Mapping[int, str]) -> str:
    """One line per error: `<source>: <path>: <message>`, the top-level list items
    labelled with their id."""
    lines = []
    for err in exc.errors(include_url=False):
        path = ""
        for i, part in enumerate(err["loc"]):
            if isinstance(part, int):
                path += f"[{part}]"
                if i == 1 and part in labels:
                    path += f" ({labels[part]})"
            else:
                path += f".{part}" if path else str(part)
        lines.append(f"{source}: {path}: {err['msg']}")
    return "\n".join(lines)
