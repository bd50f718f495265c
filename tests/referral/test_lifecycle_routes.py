"""The lifecycle routes are generated from the transition table: one POST per
action, taken by the party the table names, with the body the step records (pure:
reads the OpenAPI document, starts nothing)."""

from __future__ import annotations

from typing import Any

from services.referral.app import create_app
from services.referral.domain.lifecycle import TRANSITIONS, Party

BODIES = {
    "confirm": "ConfirmBody",
    "reject": "RejectBody",
    "close": "CloseBody",
    "cancel": "CancelBody",
}


def test_one_route_per_action_with_its_party_and_body() -> None:
    paths: dict[str, Any] = create_app().openapi()["paths"]
    steps = {p for p in paths if p.startswith("/v1/referrals/{referral_id}/")}
    assert steps == {f"/v1/referrals/{{referral_id}}/{a.value}" for a in TRANSITIONS}
    for action, transition in TRANSITIONS.items():
        operation = paths[f"/v1/referrals/{{referral_id}}/{action.value}"]["post"]
        party = "Sender" if transition.party is Party.SENDER else "Receiver"
        assert operation["summary"].startswith(f"{party}: "), action
        assert operation["tags"] == ["lifecycle"]
        assert operation["operationId"] == (
            f"{action.value}_v1_referrals__referral_id__{action.value}_post"
        )
        assert [p["name"] for p in operation["parameters"]] == ["referral_id", "If-Match"]
        assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ReferralView"
        }
        body = operation.get("requestBody")
        if action.value not in BODIES:
            assert body is None, action
            continue
        schema = body["content"]["application/json"]["schema"]
        assert f"#/components/schemas/{BODIES[action.value]}" in str(schema), action
        assert body.get("required", False) is (action.value != "confirm"), action
