"""Stateful scenarios: schemathesis chains a service's operations along the links it
infers from the OpenAPI document (an id in one answer is a parameter of the next:
POST /v1/referrals, then its steps; POST /v1/cases, then reads and withdrawals).
Every step goes through the same `Fuzzer.exercise` as single requests: the caller's
key, the count, the conformance checks; a step whose id came from a link keeps it.

Hypothesis replays the start of earlier scenarios to explore new ones; on a real
server that state changed in between (a case now a duplicate, a step now refused)
the replay diverges and Hypothesis stops with `Flaky`. Schemathesis' own runner
ends a stateful suite there, and so does `explore`: every request sent so far was
checked and counted already.

The directory edits are left out here: they are fuzzed last, on their own, because
they change what routing and the other scenarios rely on."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import Flaky
from hypothesis.stateful import Bundle, rule
from schemathesis.engine.errors import is_inconsistent_replay
from schemathesis.generation.stateful import run_state_machine_as_test
from schemathesis.generation.stateful.state_machine import (
    APIStateMachine,
    StepInput,
    StepOutput,
)
from schemathesis.schemas import BaseSchema

from tests.fuzz.fuzzer import Fuzzer

DIRECTORY_EDITS = r"^/v1/admin/directory/organizations/"


# Scenarios also start here. Schemathesis starts them only at operations whose inputs
# it can generate (POST /v1/referrals names a case, which no referral operation
# makes); the fuzzer points such a request at a seeded case.
ROOTS = {"referral": [("/v1/referrals", "POST")]}
# Schemathesis' state machines add every step's result to this bundle; it files the
# answer under the links its operation and status code start.
ANSWERS = Bundle("catch_all")


def scenarios(schema: BaseSchema, fuzzer: Fuzzer, service: str) -> type[APIStateMachine]:
    machine = schema.exclude(path_regex=DIRECTORY_EDITS).as_state_machine()

    def start_at(path: str, method: str) -> Any:
        steps = schema[path][method].as_strategy().map(StepInput.initial)

        @rule(target=ANSWERS, input=steps)
        def start(self: Any, input: StepInput) -> StepOutput | None:
            # As schemathesis' own rules do: later links look the case up by its id.
            self.recorder.record_case(case=input.case)
            self.control.record_step(input, self.recorder)
            output: StepOutput | None = self._step(input)
            return output

        return start

    def step(self: APIStateMachine, input: StepInput) -> StepOutput:
        linked = input.transition is not None and input.is_applied
        response = fuzzer.exercise(service, input.case, linked=linked)
        return StepOutput(response, input.case)

    members: dict[str, Any] = {"step": step}
    for n, (path, method) in enumerate(ROOTS.get(service, [])):
        members[f"start_{n}"] = start_at(path, method)
    return type("Scenario", (machine,), members)


def budget(scenarios: int, steps: int) -> settings:
    return settings(
        max_examples=scenarios,
        stateful_step_count=steps,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def explore(machine: type[APIStateMachine], budget: settings) -> bool:
    """Run the scenarios; False when Hypothesis stopped early on a diverging replay."""
    try:
        run_state_machine_as_test(machine, settings=budget)
    except Flaky:
        return False
    except AssertionError as exc:
        if is_inconsistent_replay(exc):
            return False
        raise
    return True
