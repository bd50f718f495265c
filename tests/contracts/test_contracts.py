"""The published contract: schemas current and backward compatible, no identifiers."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from pydantic import Field

from contracts import generate
from contracts.compat import breaking_changes
from contracts.events import FORBIDDEN_NAME_PARTS, EventData, PiiInEventError
from contracts.registry import EVENT_MODELS, PARTNER_EVENT_TYPES
from contracts.topics import Topic

CONTRACTS = Path(generate.__file__).parent
EXPECTED_TYPES = {
    "case.created",
    "referral.sent",
    "referral.acknowledged",
    "referral.accepted",
    "referral.rejected",
    "referral.closed",
    "referral.cancelled",
    "referral.overdue",
    "followup.due",
    "notification.sent",
    "notification.failed",
}


def test_every_required_event_type_is_published() -> None:
    assert set(EVENT_MODELS) >= EXPECTED_TYPES


def test_committed_schemas_and_asyncapi_are_current() -> None:
    assert generate.main(["--check"]) == 0, "run: python -m contracts.generate"


def test_current_schemas_are_compatible_with_every_release() -> None:
    assert generate.compatibility_problems() == {}


def test_asyncapi_names_every_topic_and_schema_file() -> None:
    doc = yaml.safe_load((CONTRACTS / "asyncapi.yaml").read_text())
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {t.value for t in Topic} | {"protection.partner.{agency_id}.v1"}
    # A partner's feed carries every coordination event, never notifications' own.
    feed = {
        m["$ref"].rsplit("/", 1)[1] for m in doc["channels"]["partner_feed"]["messages"].values()
    }
    assert feed == {t.replace(".", "_") for t in PARTNER_EVENT_TYPES}
    for message in doc["components"]["messages"].values():
        assert (CONTRACTS / message["payload"]["$ref"]).is_file()


def _property_names(node: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(node, dict):
        names |= set(node.get("properties", {}))
        for value in node.values():
            names |= _property_names(value)
    elif isinstance(node, list):
        for value in node:
            names |= _property_names(value)
    return names


@pytest.mark.parametrize("event_type", sorted(EVENT_MODELS))
def test_no_schema_carries_an_identifier(event_type: str) -> None:
    schema = json.loads(generate.schema_path(event_type).read_text())
    for name in _property_names(schema):
        assert not set(name.split("_")) & FORBIDDEN_NAME_PARTS, f"{event_type}.{name}"


def test_an_event_model_cannot_declare_a_name_field() -> None:
    with pytest.raises(PiiInEventError, match="child_name"):

        class Leaky(EventData):
            event_type: ClassVar[str] = "leaky"
            topic: ClassVar[Topic] = Topic.CASES
            child_name: str = Field(pattern="^.*$")


@pytest.mark.parametrize(
    "field", ["phone", "birth_date", "home_address", "document_number", "email"]
)
def test_an_event_model_cannot_declare_identifier_fields(field: str) -> None:
    with pytest.raises(PiiInEventError):
        type(
            "Leaky",
            (EventData,),
            {"__annotations__": {field: "str"}, "event_type": "x", "topic": Topic.CASES},
        )


def test_an_event_model_cannot_carry_free_text() -> None:
    with pytest.raises(PiiInEventError, match="free-text"):

        class Chatty(EventData):
            event_type: ClassVar[str] = "chatty"
            topic: ClassVar[Topic] = Topic.CASES
            remarks: str


# --- the compatibility checker itself ------------------------------------------------------

BASE: dict[str, Any] = json.loads(generate.schema_path("referral.rejected").read_text())


def _mutated(change: Any) -> dict[str, Any]:
    schema: dict[str, Any] = copy.deepcopy(BASE)
    change(schema)
    return schema


def test_identical_schema_is_compatible() -> None:
    assert breaking_changes(BASE, copy.deepcopy(BASE)) == []


def test_new_optional_field_and_new_enum_value_are_compatible() -> None:
    def grow(s: dict[str, Any]) -> None:
        s["properties"]["extra"] = {"type": "integer"}
        s["$defs"]["RejectionReason"]["enum"].append("new_reason")

    assert breaking_changes(BASE, _mutated(grow)) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s["properties"].pop("reason"), "reason: field removed or renamed"),
        (
            lambda s: s["properties"].__setitem__("reasons", s["properties"].pop("reason")),
            "reason: field removed or renamed",
        ),
        (
            lambda s: s["properties"].__setitem__("version", {"type": "string"}),
            "version: type narrowed",
        ),
        (
            lambda s: (
                s["required"].append("extra")
                or s["properties"].__setitem__("extra", {"type": "string"})
            ),
            "extra: new required field",
        ),
        (lambda s: s["$defs"]["RejectionReason"]["enum"].remove("no_capacity"), "values removed"),
        (lambda s: s["properties"]["version"].__setitem__("minimum", 5), "minimum raised"),
        (lambda s: s["required"].remove("reason"), "reason: no longer required"),
    ],
    ids=[
        "removed",
        "renamed",
        "type-narrowed",
        "new-required",
        "enum-narrowed",
        "bound",
        "optional",
    ],
)
def test_breaking_changes_are_detected(change: Any, expected: str) -> None:
    problems = breaking_changes(BASE, _mutated(change))
    assert any(expected in p for p in problems), problems
