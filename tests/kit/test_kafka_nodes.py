"""The three-node local Kafka (ENLACE_KAFKA_NODES=3), as deploy/local writes it: one
quorum of three combined nodes on their own ports, every partition on all three and
acks=all answered by two. Checked on the files `kafka.sh install` writes for a
throw-away instance (no broker is started), so it runs in seconds and never touches
the shared broker."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from services.kit.local_secrets import kafka_bootstrap, topic_replication
from tests.helpers import free_port
from tests.infra import DEPLOY_LOCAL, REPO_ROOT, PrivateBroker

LOCAL = REPO_ROOT / ".local"
CHECKPOINT = "__cluster_metadata-0/00000000000000000000-0000000000.checkpoint"


def kafka_sh(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DEPLOY_LOCAL / "kafka.sh"), *args],
        env={**os.environ, **env},
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def properties(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def uuid_bytes(kafka_uuid: str) -> bytes:
    """A Kafka id (URL-safe base64, unpadded) as the 16 bytes the metadata log holds."""
    return base64.urlsafe_b64decode(kafka_uuid + "==")


@pytest.fixture(scope="module")
def instance() -> Iterator[str]:
    name = f"test-nodes-{uuid.uuid4().hex[:8]}"
    yield name
    shutil.rmtree(LOCAL / name, ignore_errors=True)
    for leftover in (LOCAL / "run").glob(f"{name}*"):
        leftover.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def three(instance: str) -> dict[str, str]:
    """ENLACE_KAFKA_NODES=3 on ports nobody uses (install binds none)."""
    port = free_port()
    env = {
        "ENLACE_KAFKA_INSTANCE": instance,
        "ENLACE_KAFKA_NODES": "3",
        "ENLACE_KAFKA_PORT": str(port),
        "ENLACE_KAFKA_CONTROLLER_PORT": str(port + 1),
    }
    done = kafka_sh(env, "install")
    assert done.returncode == 0, done.stdout + done.stderr
    return env


def test_each_node_has_its_own_id_ports_and_directories(
    instance: str, three: dict[str, str]
) -> None:
    port, controller = int(three["ENLACE_KAFKA_PORT"]), int(three["ENLACE_KAFKA_CONTROLLER_PORT"])
    controllers = [f"127.0.0.1:{controller + 2 * i}" for i in range(3)]
    for node in (1, 2, 3):
        props = properties(LOCAL / instance / f"node{node}" / "server.properties")
        client, ctl = port + 2 * (node - 1), controller + 2 * (node - 1)
        assert props["node.id"] == str(node)
        assert props["process.roles"] == "broker,controller"
        assert props["listeners"] == f"SASL_SSL://127.0.0.1:{client},CONTROLLER://127.0.0.1:{ctl}"
        assert props["advertised.listeners"] == f"SASL_SSL://127.0.0.1:{client}"
        assert props["log.dirs"] == str(LOCAL / instance / f"node{node}" / "data")
        # A dynamic quorum of all three, never the static voters list.
        assert props["controller.quorum.bootstrap.servers"].split(",") == controllers
        assert "controller.quorum.voters" not in props


def test_every_partition_on_three_nodes_and_acks_all_on_two(
    instance: str, three: dict[str, str]
) -> None:
    props = properties(LOCAL / instance / "node2" / "server.properties")
    copies = {
        k: v for k, v in props.items() if any(w in k for w in ("replication", "isr", "insync"))
    }
    assert copies == {
        "default.replication.factor": "3",
        "min.insync.replicas": "2",
        "offsets.topic.replication.factor": "3",
        "transaction.state.log.replication.factor": "3",
        "transaction.state.log.min.isr": "2",
        "share.coordinator.state.topic.replication.factor": "3",
        "share.coordinator.state.topic.min.isr": "2",
    }
    assert props["broker.session.timeout.ms"] == "5000"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin;User:controller"


def test_the_three_are_formatted_once_as_one_quorum(instance: str, three: dict[str, str]) -> None:
    controller = int(three["ENLACE_KAFKA_CONTROLLER_PORT"])
    root = LOCAL / instance
    directory_ids = [(root / f"node{n}" / "directory.id").read_text().strip() for n in (1, 2, 3)]
    metas = [properties(root / f"node{n}" / "data" / "meta.properties") for n in (1, 2, 3)]
    assert [m["node.id"] for m in metas] == ["1", "2", "3"]
    assert [m["directory.id"] for m in metas] == directory_ids
    assert len({m["cluster.id"] for m in metas}) == 1
    for node in (1, 2, 3):
        # Every node's metadata log starts with the same three voters (--initial-controllers);
        # --standalone would have given each a quorum of itself alone.
        log = (root / f"node{node}" / "data" / CHECKPOINT).read_bytes()
        assert log.count(b"127.0.0.1") == 3
        for n, directory_id in enumerate(directory_ids):
            assert uuid_bytes(directory_id) in log
            assert b"127.0.0.1" + (controller + 2 * n).to_bytes(2, "big") in log
    metas_on_disk = [root / f"node{n}" / "data" / "meta.properties" for n in (1, 2, 3)]
    before = [path.read_bytes() for path in metas_on_disk]
    again = kafka_sh(three, "install")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "formatting" not in again.stdout
    assert [path.read_bytes() for path in metas_on_disk] == before


def test_the_bootstrap_lists_every_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENLACE_KAFKA_NODES", "3")
    monkeypatch.setenv("ENLACE_KAFKA_PORT", "29092")
    shell = subprocess.run(
        ["bash", "-c", f"source {DEPLOY_LOCAL / 'env.sh'} && echo $KAFKA_BOOTSTRAP"],
        capture_output=True,
        text=True,
        check=True,
    )
    expected = "127.0.0.1:29092,127.0.0.1:29094,127.0.0.1:29096"
    assert shell.stdout.strip() == kafka_bootstrap() == expected
    assert topic_replication() == (3, {"min.insync.replicas": "2"})
    monkeypatch.setenv("ENLACE_KAFKA_NODES", "2")
    with pytest.raises(ValueError, match="ENLACE_KAFKA_NODES"):
        kafka_bootstrap()


def test_node_commands_refuse_a_node_the_instance_lacks(three: dict[str, str]) -> None:
    missing = kafka_sh(three, "pid", "--node", "4")
    assert missing.returncode == 1
    assert "nodes 1..3" in missing.stderr
    stopped = kafka_sh(three, "pid", "--node", "2")
    assert stopped.returncode == 3
    assert "kafka node 2 is not running" in stopped.stderr


def test_a_private_broker_stays_one_broker_and_switching_formats_again(
    instance: str, three: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Last in this module: it turns the instance back into a single broker.
    monkeypatch.setenv("ENLACE_KAFKA_NODES", "3")
    private = PrivateBroker(instance)
    done = kafka_sh(private.env, "install")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "was formatted for 3 nodes, not ENLACE_KAFKA_NODES=1: formatting it again" in done.stdout
    root = LOCAL / instance
    assert not list(root.glob("node*"))
    props = properties(root / "server.properties")
    assert props["node.id"] == "1"
    assert props["controller.quorum.bootstrap.servers"] == (
        f"127.0.0.1:{private.env['ENLACE_KAFKA_CONTROLLER_PORT']}"
    )
    assert props["offsets.topic.replication.factor"] == "1"
    assert "min.insync.replicas" not in props
    assert (root / "data" / "meta.properties").is_file()
