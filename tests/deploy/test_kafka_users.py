"""The Kubernetes KafkaUser and KafkaTopic resources say what deploy/kafka-access.yaml
says, as the local broker gets it (services.kit.kafka_acl.Access.grants)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts.topics import all_topic_names
from deploy.k8s import generate, strimzi
from services.kit.kafka_acl import Grant, load_access

BASE = generate.BASE


def documents(name: str, base: Path = BASE) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((base / name).read_text()) if d]


def test_the_kafka_users_acls_equal_the_declared_grants() -> None:
    in_manifests = strimzi.grants_of_users(documents("kafka-users.yaml"))
    assert in_manifests == load_access().grants("")


def test_one_kafka_user_per_declared_principal_with_scram() -> None:
    users = documents("kafka-users.yaml")
    assert sorted(u["metadata"]["name"] for u in users) == sorted(load_access().principals())
    assert {u["spec"]["authentication"]["type"] for u in users} == {"scram-sha-512"}


def test_every_topic_a_grant_names_and_every_contract_topic_is_provisioned() -> None:
    topics = {t["spec"]["topicName"]: t["spec"] for t in documents("kafka-topics.yaml")}
    granted = {g.name for g in load_access().grants("") if g.resource == "topic"} - {"*"}
    assert granted | set(all_topic_names()) == set(topics)
    for spec in topics.values():
        assert spec["replicas"] == 3
        assert spec["config"]["min.insync.replicas"] == 2


def test_reading_back_refuses_a_rule_the_declaration_never_makes() -> None:
    user = documents("kafka-users.yaml")[0]
    user["spec"]["authorization"]["acls"][0]["type"] = "deny"
    with pytest.raises(ValueError, match="never makes"):
        strimzi.grants_of_users([user])


def test_a_changed_acl_is_a_difference() -> None:
    """The equality above can fail: one operation dropped from one user shows."""
    users = documents("kafka-users.yaml")
    rule = users[0]["spec"]["authorization"]["acls"][0]
    dropped = rule["operations"].pop()
    missing = load_access().grants("") - strimzi.grants_of_users(users)
    assert len(missing) == 1
    (grant,) = missing
    assert isinstance(grant, Grant)
    assert grant.principal == users[0]["metadata"]["name"]
    assert strimzi._OPERATIONS[grant.operation] == dropped


def test_the_committed_manifests_are_current_and_a_stale_one_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert generate.main(["--check"]) == 0
    copy = tmp_path / "base"
    shutil.copytree(BASE, copy)
    users = copy / "kafka-users.yaml"
    users.write_text(users.read_text().replace("- Read\n", "- Write\n", 1))
    assert generate.main(["--check", "--out", str(copy)]) == 1
    assert "kafka-users.yaml is stale" in capsys.readouterr().err
