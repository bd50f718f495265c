"""The trust boundary's tests: their own topics (with the declared ACLs)."""

import pytest

from tests.conftest import package_namespace
from tests.infra import Infra

namespace = package_namespace("security")


@pytest.fixture(autouse=True)
def _secure_broker(infra: Infra) -> None:
    if not infra.kafka_secure:
        pytest.skip(f"the {infra.source} broker does not authenticate clients")
