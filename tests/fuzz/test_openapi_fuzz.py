"""Property-based fuzzing of every operation of the four services' OpenAPI documents
(schemathesis: the documents' examples, then generated requests, valid and invalid),
with the keys each route takes and a share of requests pointed at seeded objects.

Each answer must be no server error, and must be documented: its status code, its
content type, its body's schema, its headers. The services are fuzzed one after the
other (referral's directory administration last: it edits what routing uses), then
each service's conformance failures fail its own test, with the request shapes that
caused them; the run must have written through the APIs (cases registered,
referrals made and taken through their lifecycle) and the services' logs must show
no error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings

from tests.fuzz.fuzzer import Fuzzer
from tests.fuzz.shaping import AnyCase
from tests.fuzz.stack import SERVICES, Stack, format_errors
from tests.fuzz.stateful import DIRECTORY_EDITS, budget, explore, scenarios
from tests.fuzz.tally import TALLY, describe

Test = TypeVar("Test", bound=Callable[..., Any])

intake = schemathesis.pytest.from_fixture("intake_schema")
referral = schemathesis.pytest.from_fixture("referral_schema")
followup = schemathesis.pytest.from_fixture("followup_schema")
notifications = schemathesis.pytest.from_fixture("notifications_schema")


def fuzz(schema: Any, max_examples: int) -> Callable[[Test], Test]:
    """Up to `max_examples` generated requests per operation, after its examples;
    deterministic, without shrinking (a failure is recorded, not replayed)."""

    def wrap(test: Test) -> Test:
        budgeted = settings(
            max_examples=max_examples,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )(test)
        return cast(Test, schema.parametrize()(budgeted))

    return wrap


@fuzz(intake, 200)
def test_fuzz_intake(case: AnyCase, fuzzer: Fuzzer) -> None:
    fuzzer.exercise("intake", case)


@fuzz(referral.exclude(path_regex=DIRECTORY_EDITS), 130)
def test_fuzz_referral(case: AnyCase, fuzzer: Fuzzer) -> None:
    fuzzer.exercise("referral", case)


@fuzz(followup, 200)
def test_fuzz_followup(case: AnyCase, fuzzer: Fuzzer) -> None:
    fuzzer.exercise("followup", case)


@fuzz(notifications, 200)
def test_fuzz_notifications(case: AnyCase, fuzzer: Fuzzer) -> None:
    fuzzer.exercise("notifications", case)


@pytest.mark.parametrize("service", ["intake", "referral"])
def test_fuzz_stateful_scenarios(
    service: str, fuzzer: Fuzzer, request: pytest.FixtureRequest
) -> None:
    schema = request.getfixturevalue(f"{service}_schema")
    before = fuzzer.tally.phases["stateful"]
    completed = explore(scenarios(schema, fuzzer, service), budget(30, 8))
    sent = fuzzer.tally.phases["stateful"] - before
    ending = "all scenarios ran" if completed else "stopped at a diverging replay"
    fuzzer.tally.notes.append(f"stateful scenarios of {service}: {sent} requests, {ending}")
    assert sent, f"no stateful scenario of {service} ran"


@fuzz(referral.include(path_regex=DIRECTORY_EDITS), 60)
def test_fuzz_referral_directory_edits(case: AnyCase, fuzzer: Fuzzer) -> None:
    fuzzer.exercise("referral", case)


@pytest.mark.parametrize("service", SERVICES)
def test_answers_conform_to_the_openapi_document(service: str, fuzzer: Fuzzer) -> None:
    assert TALLY.statuses.get(service), f"{service} was not fuzzed"
    failures = TALLY.failures_of(service)
    assert not failures, f"{service} answered outside its OpenAPI document:\n" + describe(failures)


def test_fuzzing_reached_the_write_paths(fuzzer: Fuzzer) -> None:
    writes = TALLY.writes()
    assert writes["POST /v1/cases"] >= 1, "no case registered"
    assert writes["POST /v1/referrals"] >= 1, "no referral made by hand"
    steps = TALLY.transitions()
    assert len(steps) >= 2, f"fewer than two kinds of lifecycle step succeeded: {steps}"


def test_services_logged_no_errors(stack: Stack) -> None:
    found = stack.watch.new_errors() if stack.watch else {}
    assert not found, "services logged errors while fuzzed:\n" + format_errors(found)
