"""Generate the published contract files from the models.

    python -m contracts.generate            write schemas/ and asyncapi.yaml
    python -m contracts.generate --check    exit 1 if the committed files are stale or a
                                            schema breaks a released version
    python -m contracts.generate --release  snapshot every changed schema into
                                            schemas/released/ (refused if incompatible)

Released snapshots are append-only: each is a version partners may already consume,
and every later schema of that type must stay backward compatible with all of them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from contracts.compat import breaking_changes
from contracts.envelope import CONTENT_TYPE, schema_urn
from contracts.registry import EVENT_MODELS, PARTNER_EVENT_TYPES, SERVICES, service_source
from contracts.topics import PARTNER_TOPIC_PREFIX, Topic

HERE = Path(__file__).parent
SCHEMAS = HERE / "schemas"
RELEASED = SCHEMAS / "released"
ASYNCAPI = HERE / "asyncapi.yaml"

TOLERANT_READER = (
    "Consumers must ignore fields they do not know: v1 events may gain optional fields."
)


def _open_objects(node: Any) -> Any:
    """Drop `additionalProperties: false`: producers are strict, the published schema
    is open so that adding an optional field never breaks a partner's validator."""
    if isinstance(node, dict):
        return {
            key: _open_objects(value)
            for key, value in node.items()
            if not (key == "additionalProperties" and value is False)
        }
    if isinstance(node, list):
        return [_open_objects(value) for value in node]
    return node


def event_schema(event_type: str) -> dict[str, Any]:
    model = EVENT_MODELS[event_type]
    schema = _open_objects(model.model_json_schema(mode="serialization"))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_urn(event_type),
        "title": event_type,
        "description": (
            f"Data of a `{event_type}` CloudEvent on topic `{model.topic.value}` "
            f"(binary mode: attributes in ce_* headers, key = case_id). {TOLERANT_READER}"
        ),
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }


def schema_path(event_type: str) -> Path:
    return SCHEMAS / f"{event_type}.v1.json"


def released_versions(event_type: str) -> list[Path]:
    return sorted(RELEASED.glob(f"{event_type}.v1.*.json"))


def _dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def asyncapi_document() -> dict[str, Any]:
    header_schema = {
        "type": "object",
        "required": [
            "ce_specversion",
            "ce_id",
            "ce_type",
            "ce_source",
            "ce_time",
            "ce_subject",
            "ce_dataschema",
            "content-type",
        ],
        "properties": {
            "ce_specversion": {"type": "string", "const": "1.0"},
            "ce_id": {"type": "string", "description": "Unique event id; dedupe on it"},
            "ce_type": {"type": "string", "description": "Event type, e.g. case.created"},
            "ce_source": {"type": "string", "description": "Producing service, /enlace/<svc>"},
            "ce_time": {"type": "string", "format": "date-time"},
            "ce_subject": {"type": "string", "format": "uuid", "description": "case_id"},
            "ce_dataschema": {"type": "string", "description": "$id of the data schema"},
            "content-type": {"type": "string", "const": CONTENT_TYPE},
            "traceparent": {"type": "string", "description": "W3C trace context"},
        },
    }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic in Topic:
        channel_messages: dict[str, Any] = {}
        for event_type, model in sorted(EVENT_MODELS.items()):
            if model.topic is not topic:
                continue
            message_id = event_type.replace(".", "_")
            messages[message_id] = {
                "name": event_type,
                "title": event_type,
                "summary": (model.__doc__ or event_type).strip().splitlines()[0],
                "contentType": CONTENT_TYPE,
                "headers": {"$ref": "#/components/schemas/CloudEventHeaders"},
                "payload": {"$ref": f"./schemas/{schema_path(event_type).name}"},
                "bindings": {"kafka": {"key": {"type": "string", "format": "uuid"}}},
                "x-producer": service_source(model.producer),
                "description": f"Published by `{service_source(model.producer)}` alone: a "
                "consumer dead-letters a record of this type with any other ce_source "
                "(x-error-type: untrusted_source) and applies nothing.",
            }
            channel_messages[message_id] = {"$ref": f"#/components/messages/{message_id}"}
        channel_id = topic.name.lower()
        channels[channel_id] = {
            "address": topic.value,
            "description": f"Events of the {channel_id} aggregate, keyed by case_id. "
            f"Poison records go to {topic.dlq} with x-error-* headers.",
            "messages": channel_messages,
        }
        operations[f"consume_{channel_id}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel_id}"},
        }
        for service in SERVICES:
            sent = [
                {"$ref": f"#/channels/{channel_id}/messages/{event_type.replace('.', '_')}"}
                for event_type, model in sorted(EVENT_MODELS.items())
                if model.topic is topic and model.producer == service
            ]
            if sent:
                operations[f"{service}_sends_{channel_id}"] = {
                    "action": "send",
                    "channel": {"$ref": f"#/channels/{channel_id}"},
                    "summary": f"The only producer of these messages: {service_source(service)}",
                    "messages": sent,
                }
    # Each partner agency's own feed: the same events, filtered to those concerning it.
    channels["partner_feed"] = {
        "address": f"{PARTNER_TOPIC_PREFIX}{{agency_id}}.v1",
        "description": "One partner agency's feed, written by /enlace/notifications only: "
        "the events that concern the agency (its own cases, referrals it sent or "
        "received, follow-ups addressed to it), exactly as published on the topics "
        "above, keyed by case_id. Readable by that agency's principal alone, with "
        "consumer groups `<agency_id>.*`. The same events reach its webhook endpoints.",
        "parameters": {"agency_id": {"description": "The agency's id, its Kafka principal"}},
        "messages": {
            message_id: {"$ref": f"#/components/messages/{message_id}"}
            for message_id in sorted(t.replace(".", "_") for t in PARTNER_EVENT_TYPES)
        },
    }
    operations["partner_receives_partner_feed"] = {
        "action": "receive",
        "channel": {"$ref": "#/channels/partner_feed"},
        "summary": "A partner agency's consumer reads its own feed",
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Enlace child-protection referral events",
            "version": "1.0.0",
            "description": (
                "CloudEvents 1.0 in the Kafka binding's binary mode. The record value is the "
                "event data as JSON, attributes travel in ce_* headers, the key is the "
                "pseudonymous case_id. No event carries a direct identifier of a child. "
                + TOLERANT_READER
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": {"CloudEventHeaders": header_schema},
        },
    }


def rendered_files() -> dict[Path, str]:
    files = {schema_path(t): _dump_json(event_schema(t)) for t in EVENT_MODELS}
    files[ASYNCAPI] = yaml.safe_dump(asyncapi_document(), sort_keys=False, allow_unicode=True)
    return files


def compatibility_problems() -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {}
    for event_type in EVENT_MODELS:
        current = event_schema(event_type)
        for snapshot in released_versions(event_type):
            found = breaking_changes(json.loads(snapshot.read_text()), current)
            if found:
                problems.setdefault(event_type, []).extend(f"{snapshot.name}: {p}" for p in found)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--release", action="store_true")
    args = parser.parse_args(argv)

    problems = compatibility_problems()
    for event_type, found in problems.items():
        for problem in found:
            print(f"BREAKING {event_type}: {problem}", file=sys.stderr)

    files = rendered_files()
    if args.check:
        stale = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
        stale += [p for p in SCHEMAS.glob("*.v1.json") if p not in files]
        unreleased = [t for t in EVENT_MODELS if not released_versions(t)]
        for path in stale:
            print(
                f"STALE {path.relative_to(HERE.parent)}: run python -m contracts.generate",
                file=sys.stderr,
            )
        for event_type in unreleased:
            print(
                f"UNRELEASED {event_type}: run python -m contracts.generate --release",
                file=sys.stderr,
            )
        return 1 if stale or problems or unreleased else 0
    if problems:
        return 1
    SCHEMAS.mkdir(exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
    if args.release:
        RELEASED.mkdir(exist_ok=True)
        for event_type in EVENT_MODELS:
            current = schema_path(event_type).read_text()
            versions = released_versions(event_type)
            if versions and versions[-1].read_text() == current:
                continue
            (RELEASED / f"{event_type}.v1.{len(versions) + 1:03d}.json").write_text(current)
            print(f"released {event_type} v1 revision {len(versions) + 1}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
