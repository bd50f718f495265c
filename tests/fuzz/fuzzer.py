"""One fuzzed request: choose the caller's key, point a share of generated requests at
seeded objects (so they reach the write paths), send, count the answer, keep the
seeded objects' states current, and run schemathesis' conformance checks.

A failed check is recorded (operation, status, check, request shape), not raised:
the requests change server state (a transition taken once answers 409 the next
time), so Hypothesis' replay of a failing example would not reproduce it and would
report a flaky test instead of the failure. tests/fuzz/test_openapi_fuzz.py fails
on every recorded failure once the service has been fuzzed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import requests
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.transport import Response
from schemathesis.openapi.checks import JsonSchemaError
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.transport.prepare import get_exclude_headers

from tests.fuzz.seeds import OPERATIONS, OWNER, SeedReferral, Seeds
from tests.fuzz.shaping import AnyCase, Shaper
from tests.fuzz.tally import Tally
from tests.helpers import DEMO_KEYS

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Internal routes: the one Enlace service each answers (anyone else: 404).
INTERNAL = {
    "/internal/v1/cases/{case_id}/identity": "svc-referral",
    "/internal/v1/caseworkers/{agency_id}/{staff_id}": "svc-notifications",
    "/internal/v1/contact-directory": "svc-notifications",
}
REPORTS = "/v1/reports/referrals"  # partner agencies and operations alike
OPERATIONS_ROUTES = ("/v1/admin/", "/v1/coordination/")  # directory administration, duplicates


def proper_principal(path: str, n: int) -> str:
    if path in INTERNAL:
        return INTERNAL[path]
    if path.startswith(OPERATIONS_ROUTES):
        return OPERATIONS
    if path == REPORTS and n % 2:
        return OPERATIONS
    return OWNER


def wrong_principal(path: str) -> str:
    """A known key of a role the route refuses."""
    if path in INTERNAL:
        return "svc-followup"
    if path.startswith(OPERATIONS_ROUTES):
        return OWNER
    if path == REPORTS:
        return "svc-referral"
    return OPERATIONS


@dataclass
class Fuzzer:
    urls: dict[str, str]
    seeds: Seeds
    session: requests.Session
    sms_auth_token: str
    sms_log: Path
    tally: Tally

    def __post_init__(self) -> None:
        self.shaper = Shaper(self)

    def exercise(self, service: str, case: AnyCase, *, linked: bool = False) -> Response:
        """Send `case` as fuzzed (`linked`: its ids come from an earlier answer of a
        stateful scenario, and stay) and check the answer."""
        operation = f"{case.method.upper()} {case.path}"
        n = self.tally.calls(service, operation)
        caller = self.authenticate(case, n)
        proper = caller == "own key"
        if linked:
            seeded = self.shaper.follow(case, n, proper=proper)
            origin = "linked"
        else:
            seeded = self.shaper.shape(case, n, proper=proper)
            origin = "generated" if seeded is None else "seeded"
        response = case.call(session=self.session, timeout=15)
        phase = case.meta.phase.name.value if case.meta else "?"
        self.tally.record(service, operation, response.status_code, origin=origin, phase=phase)
        if seeded is not None:
            seeded.observe(response.status_code, body_of(response))
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            shape = request_shape(case, caller, seeded.what if seeded else origin)
            for failure in group.exceptions:
                self.tally.fail(
                    service,
                    operation,
                    response.status_code,
                    failure.title,
                    failure_detail(failure, response),
                    shape,
                )
        for problem in edge_header_problems(response):
            shape = request_shape(case, caller, seeded.what if seeded else origin)
            self.tally.fail(
                service, operation, response.status_code, "Edge headers", problem, shape
            )
        return response

    def authenticate(self, case: AnyCase, n: int) -> str:
        """Set the Authorization header: mostly the key the route wants; one request in
        ten without a key, one with an unknown key, one with a key of another role.
        (Schemathesis itself leaves the header out of a negative case that drops it.)"""
        if not case.operation.definition.raw.get("security"):
            return "no key (unsecured route)"
        case.headers.pop("Authorization", None)
        slot = n % 10
        if slot == 3:
            return "no key"
        if slot == 6:
            case.headers["Authorization"] = f"Bearer unknown-key-{n}"
            return "unknown key"
        if slot == 8:
            case.headers["Authorization"] = f"Bearer {DEMO_KEYS[wrong_principal(case.path)]}"
            return "key of another role"
        self.use_key(case, proper_principal(case.path, n))
        if any(h.lower() == "authorization" for h in get_exclude_headers(case)):
            return "no key (a negative case without its required header)"
        return "own key"

    def use_key(self, case: AnyCase, principal: str) -> None:
        case.headers["Authorization"] = f"Bearer {DEMO_KEYS[principal]}"

    def refresh(self, referral: SeedReferral) -> None:
        """Its state as its sender sees it (a step refused for a reason of its own)."""
        answer = self.session.get(
            f"{self.urls['referral']}/v1/referrals/{referral.referral_id}",
            headers={"Authorization": f"Bearer {DEMO_KEYS[referral.sender]}"},
            timeout=15,
        )
        if answer.status_code == 200:
            view = answer.json()
            referral.state, referral.version = view["state"], view["version"]

    def sms_sids(self) -> list[str]:
        """Message ids the local SMS provider handed out so far."""
        if not self.sms_log.exists():
            return []
        lines = self.sms_log.read_bytes().splitlines()
        return [str(orjson.loads(line)["sid"]) for line in lines if line.strip()]


EDGE_HEADERS = {"cache-control": "no-store", "x-content-type-options": "nosniff"}


def edge_header_problems(response: Response) -> list[str]:
    """What every answer must carry (no-store, nosniff) and must not (a server banner)."""
    headers: dict[str, str] = {}
    for name, value in response.headers.items():
        headers[name.lower()] = value[0] if isinstance(value, list) and value else str(value)
    problems = [
        f"{name}: {headers.get(name)!r}, not {wanted!r}"
        for name, wanted in EDGE_HEADERS.items()
        if headers.get(name) != wanted
    ]
    if "server" in headers:
        problems.append("a server banner")
    return problems


def body_of(response: Response) -> Any:
    try:
        return orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        return None


def failure_detail(failure: Failure, response: Response) -> str:
    """What schemathesis says went wrong ("Received: 409; Documented: 200, 404"; for a
    body breaking its schema: where, and which rule), never the body's values (they
    may carry a child's details)."""
    if isinstance(failure, JsonSchemaError):
        where = "/".join(map(str, failure.instance_path)) or "(root)"
        text = f"at {where}: breaks {'/'.join(map(str, failure.schema_path))}"
    else:
        lines = [part.strip() for part in failure.message.splitlines() if part.strip()]
        text = "; ".join(lines[:2])
    content_type = response.headers.get("content-type", [""])[0]
    return f"{text[:300]} [response content-type: {content_type or 'none'}]"


def _type_shape(value: Any, depth: int = 0) -> Any:
    if isinstance(value, dict):
        if depth >= 1:
            return f"object({len(value)} keys)"
        return {k: _type_shape(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return f"array({len(value)})"
    return type(value).__name__


def request_shape(case: AnyCase, caller: str, seeded: str) -> str:
    """Names and types, never values (which may carry a child's details)."""
    meta = case.meta
    mode = f"{meta.phase.name.value}/{meta.generation.mode.value}" if meta else "?"
    parts = [f"{case.method.upper()} {case.path}", f"[{mode}]", f"caller: {caller}"]
    parts.append(f"ids: {seeded}")
    if case.path_parameters:
        parts.append(f"path: {json.dumps(_type_shape(case.path_parameters))}")
    if case.query:
        parts.append(f"query: {json.dumps(_type_shape(case.query))}")
    headers = sorted(h for h in case.headers if h.lower() != "authorization")
    if headers:
        parts.append(f"headers: {', '.join(headers)}")
    if case.body is not NOT_SET:
        parts.append(f"body ({case.media_type}): {json.dumps(_type_shape(case.body))}")
    return "; ".join(parts)
