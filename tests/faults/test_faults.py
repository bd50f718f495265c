"""The short version of `make faults`: what every case must produce is there once,
through a broker kill, a PostgreSQL restart and a kill of notifications."""

from __future__ import annotations

import pytest

from faults import report
from faults.run import Options, run

# The must-show criteria this short run holds the product to, and the conditions
# without which its figures mean nothing.
REQUIRED = (
    "every fault applied",
    "every case registered (callers retry with their Idempotency-Key)",
    "pipeline drained",
    "0 lost",
    "0 duplicate SMS or e-mail",
    "0 duplicate logical events",
    "no stall longer than the fault + 15 s",
)


async def test_nothing_lost_or_sent_twice_through_broker_postgres_and_service_faults(
    short_run: Options,
) -> None:
    result = await run(short_run)
    met = {c["criterion"]: c for c in result["criteria"]}
    failed = [f"{name}: {met[name]['detail']}" for name in REQUIRED if not met[name]["met"]]
    if failed:
        pytest.fail("\n".join(failed) + "\n\n" + report.table(result), pytrace=False)
