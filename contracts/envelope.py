"""CloudEvents 1.0, Kafka protocol binding, binary content mode.

The record value is the event data as JSON; the context attributes travel as
`ce_*` headers, so a consumer routes on `ce_type` without parsing the body.
The record key is the case id, so everything about one case stays in order.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
SCHEMA_URN_PREFIX = "urn:enlace:schema:"

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


class EnvelopeError(ValueError):
    """A record that is not a well-formed Enlace CloudEvent."""


def schema_urn(event_type: str, version: int = 1) -> str:
    """The `ce_dataschema` of an event type: the `$id` of its committed JSON Schema."""
    return f"{SCHEMA_URN_PREFIX}{event_type}.v{version}"


def new_traceparent(trace_id: str | None = None) -> str:
    """A W3C traceparent: a fresh span in the given trace, or in a new trace."""
    return f"00-{trace_id or secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def trace_id_of(traceparent: str | None) -> str | None:
    if not traceparent:
        return None
    match = _TRACEPARENT.match(traceparent)
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """An event as it travels: attributes plus JSON-ready data."""

    type: str
    source: str
    subject: str  # the case id
    data: dict[str, Any]
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    dataschema: str = ""
    traceparent: str = field(default_factory=new_traceparent)

    @property
    def key(self) -> bytes:
        return self.subject.encode()

    @property
    def trace_id(self) -> str | None:
        return trace_id_of(self.traceparent)

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            ("ce_specversion", SPECVERSION.encode()),
            ("ce_id", self.id.encode()),
            ("ce_type", self.type.encode()),
            ("ce_source", self.source.encode()),
            ("ce_time", self.time.isoformat().encode()),
            ("ce_subject", self.subject.encode()),
            ("ce_dataschema", (self.dataschema or schema_urn(self.type)).encode()),
            ("content-type", CONTENT_TYPE.encode()),
            ("traceparent", self.traceparent.encode()),
        ]

    def value(self) -> bytes:
        return orjson.dumps(self.data)

    def structured(self) -> bytes:
        """The event in CloudEvents structured JSON (`application/cloudevents+json`):
        the body of a partner webhook delivery, the same attributes as the headers."""
        return orjson.dumps(
            {
                "specversion": SPECVERSION,
                "id": self.id,
                "type": self.type,
                "source": self.source,
                "subject": self.subject,
                "time": self.time.isoformat(),
                "datacontenttype": CONTENT_TYPE,
                "dataschema": self.dataschema or schema_urn(self.type),
                "traceparent": self.traceparent,
                "data": self.data,
            }
        )

    @classmethod
    def from_record(
        cls, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | Any
    ) -> CloudEvent:
        """Decode a Kafka record; raises EnvelopeError naming what is wrong."""
        attrs: dict[str, str] = {}
        for name, raw in headers or ():
            try:
                attrs[name] = raw.decode() if isinstance(raw, bytes | bytearray) else str(raw)
            except UnicodeDecodeError as exc:
                raise EnvelopeError(f"header {name} is not UTF-8") from exc
        for required in ("ce_specversion", "ce_id", "ce_type", "ce_source", "ce_subject"):
            if not attrs.get(required):
                raise EnvelopeError(f"missing header {required}")
        if attrs["ce_specversion"] != SPECVERSION:
            raise EnvelopeError(f"unsupported ce_specversion {attrs['ce_specversion']!r}")
        if value is None:
            raise EnvelopeError("record has no value")
        try:
            data = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise EnvelopeError(f"value is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise EnvelopeError("value is not a JSON object")
        try:
            time = datetime.fromisoformat(attrs.get("ce_time") or "")
        except ValueError:
            time = datetime.now(UTC)
        return cls(
            type=attrs["ce_type"],
            source=attrs["ce_source"],
            subject=attrs["ce_subject"],
            data=data,
            id=attrs["ce_id"],
            time=time,
            dataschema=attrs.get("ce_dataschema", ""),
            traceparent=attrs.get("traceparent") or new_traceparent(),
        )
