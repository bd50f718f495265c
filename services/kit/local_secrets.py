"""The local profile's generated secrets, under `.local/secrets/` (made at first start
by deploy/local: directory 0700, files 0600, never committed).

Read by the local scripts, the tests and the bench to connect as a given principal.
A service never reads this: it gets its settings from the environment.
"""

from __future__ import annotations

import base64
import contextlib
import os
from pathlib import Path

from services.kit.kafka import KafkaClient

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRETS_DIR = Path(os.environ.get("ENLACE_SECRETS_DIR", REPO_ROOT / ".local" / "secrets"))
KAFKA_CA_FILE = SECRETS_DIR / "kafka-tls" / "ca.crt"


def secret(relpath: str) -> str:
    """The secret in SECRETS_DIR/relpath, made on first use exactly as the shell
    scripts' `ensure_secret` makes it (32 random bytes, URL-safe base64)."""
    path = SECRETS_DIR / relpath
    if not path.is_file() or path.stat().st_size == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        for directory in (SECRETS_DIR, path.parent):
            directory.chmod(0o700)
        value = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(value)
        # link() fails if another process made it first: theirs wins.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
        tmp.unlink()
    return path.read_text().strip()


def kafka_password(principal: str) -> str:
    return secret(f"kafka/{principal}.password")


def kafka_nodes() -> int:
    """How many local Kafka nodes: ENLACE_KAFKA_NODES, 1 (one broker) or 3, as in
    deploy/local/env.sh."""
    value = os.environ.get("ENLACE_KAFKA_NODES", "1").strip() or "1"
    if value not in ("1", "3"):
        raise ValueError(f"ENLACE_KAFKA_NODES={value!r}: expected 1 (one broker) or 3")
    return int(value)


def kafka_bootstrap() -> str:
    """Every local node's client listener, as env.sh's KAFKA_BOOTSTRAP: node N listens
    on ENLACE_KAFKA_PORT + 2*(N-1)."""
    port = int(os.environ.get("ENLACE_KAFKA_PORT", "19092"))
    return ",".join(f"127.0.0.1:{port + 2 * n}" for n in range(kafka_nodes()))


def topic_replication() -> tuple[int, dict[str, str]]:
    """Replication factor and topic configs of the local topics: a copy on every node,
    and acks=all answered once a majority holds the write (one node may fail)."""
    nodes = kafka_nodes()
    return nodes, ({"min.insync.replicas": str(nodes // 2 + 1)} if nodes > 1 else {})


def kafka_client(principal: str = "admin", bootstrap: str | None = None) -> KafkaClient:
    """A SASL_SSL client of the local broker as `principal` (admin: the scripts only)."""
    return KafkaClient(
        bootstrap=bootstrap or kafka_bootstrap(),
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        username=principal,
        password=kafka_password(principal),
        cafile=str(KAFKA_CA_FILE),
    )
