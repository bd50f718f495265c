"""The ACLs of the Kubernetes KafkaUser resources are the ones on the local broker
(applied by deploy/local/kafka_access.py from `make test`'s infra), for the
production topic names."""

from __future__ import annotations

import asyncio

import pytest
import yaml

from deploy.k8s import generate, strimzi
from services.kit.kafka_acl import Grant, _existing, _grant, _in_scope, admin_for
from tests.infra import Infra


async def test_the_kafka_users_acls_equal_those_on_the_local_broker(infra: Infra) -> None:
    if infra.source != "local" or not infra.kafka_secure:
        # Only deploy/local's broker is known to hold the declaration's ACLs (infra.sh
        # applies them); `make test` and CI use it.
        pytest.skip(f"the {infra.source} broker is not deploy/local's")
    admin = admin_for(infra.kafka("admin"))
    bindings = await asyncio.to_thread(_existing, admin)
    on_broker: set[Grant] = set()
    for binding in bindings:
        grant = _grant(binding)
        if grant is not None and _in_scope(grant, ""):
            on_broker.add(grant)
    docs = yaml.safe_load_all((generate.BASE / "kafka-users.yaml").read_text())
    assert strimzi.grants_of_users(d for d in docs if d) == on_broker
