"""The short fault suite: a few hundred cases on a private stack of its own (its own
Kafka, PostgreSQL, services and providers, see faults/stack.py), so killing its
broker or its postmaster never disturbs the shared infrastructure the rest of the
session uses."""

from __future__ import annotations

import os

import pytest

from faults.run import Options
from tests.conftest import RUN_ID
from tests.infra import Infra


@pytest.fixture
def short_run(infra: Infra) -> Options:
    """300 cases through a kill of notifications, a broker kill (10 s down), a fast
    PostgreSQL restart and two poison records; one node unless ENLACE_KAFKA_NODES=3."""
    if infra.source != "local":
        pytest.skip("the fault suite runs its stack on the local runtime of deploy/local")
    return Options(
        cases=300,
        nodes=int(os.environ.get("ENLACE_KAFKA_NODES", "1")),
        # notifications first: a delivery its kill interrupted comes back after the
        # lease (45 s), within the load rather than in the drain.
        faults=["service-kill:notifications", "broker-kill", "pg-restart", "poison"],
        downs={"broker-kill": 10.0, "service-kill": 2.0},
        slot_s=10.0,
        lead_s=3.0,
        gap_s=4.0,
        drain_s=60.0,
        name=f"faults-{RUN_ID}",
    )
