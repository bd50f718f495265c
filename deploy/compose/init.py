"""One-shot setup steps of the compose stack (deploy/compose/compose.yaml), run in
the Enlace image with this repository's deploy/ mounted at /src/deploy:

    python -m deploy.compose.init certs DIR   the CA and the brokers' certificate (PEM)
    python -m deploy.compose.init kafka       topics, SCRAM users, ACLs

`kafka` makes the topics the Kubernetes KafkaTopics list, with the same partitions and
configuration (deploy/k8s/strimzi.py), then applies deploy/kafka-access.yaml exactly
as deploy/local/kafka_access.py does (services.kit.kafka_acl.apply_access). Each
principal's password comes from KAFKA_PASSWORD_<PRINCIPAL> (upper case, "-" as "_").
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from deploy.k8s.strimzi import kafka_topic, topic_names
from services.kit.kafka import KafkaClient
from services.kit.kafka_acl import admin_for, apply_access, ck, load_access

BROKERS = ["kafka-1", "kafka-2", "kafka-3"]


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    signer: ec.EllipticCurvePrivateKey,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        names = [x509.DNSName(n) for n in [*BROKERS, "localhost"]]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer, hashes.SHA256())


def certs(directory: Path) -> None:
    if (directory / "broker.pem").is_file():
        return
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "enlace-compose-ca")])
    ca = _cert("enlace-compose-ca", ca_key, ca_name, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    broker = _cert("kafka", key, ca_name, ca_key, ca=False)
    pem = serialization.Encoding.PEM
    (directory / "ca.crt").write_bytes(ca.public_bytes(pem))
    (directory / "broker.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + broker.public_bytes(pem)
        + ca.public_bytes(pem)
    )
    for path in directory.iterdir():
        path.chmod(0o644)  # read by the brokers' user; a workstation stack only


def password_variable(principal: str) -> str:
    return "KAFKA_PASSWORD_" + principal.upper().replace("-", "_").replace(".", "_")


def password(principal: str) -> str:
    name = password_variable(principal)
    value = os.environ.get(name, "")
    if not value:
        raise SystemExit(f"{name} is not set (deploy/compose/.env)")
    return value


def create_topics(admin: Any, names: list[str]) -> list[str]:
    """Each topic as its KafkaTopic describes it; those that exist are left alone."""
    wanted = []
    for name in names:
        spec = kafka_topic(name)["spec"]
        config = {k: str(v) for k, v in spec["config"].items()}
        wanted.append(ck.NewTopic(name, spec["partitions"], spec["replicas"], config=config))
    for future in admin.create_topics(wanted, request_timeout=30).values():
        try:
            future.result()
        except ck.KafkaException as e:
            if e.args[0].code() != ck.KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return names


def kafka(wait_seconds: float = 180.0) -> None:
    """Topics, users and ACLs, retried until the three nodes have formed their quorum
    (they start together with this container)."""
    client = KafkaClient.from_env()  # the admin, from KAFKA_* variables
    access = load_access()
    for name in access.principals():
        password(name)  # every password given, before anything is applied
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            admin = admin_for(client)
            names = create_topics(admin, topic_names(access))
            created, deleted = apply_access(admin, access, password)
            break
        except Exception as e:  # not up yet: a connection or metadata error
            if time.monotonic() > deadline:
                raise
            print(f"compose init: Kafka not ready ({type(e).__name__}: {e}); retrying", flush=True)
            time.sleep(3)
    print(f"compose init: {len(names)} topics; ACLs {created} created, {deleted} removed")


if __name__ == "__main__":
    if sys.argv[1:2] == ["certs"] and len(sys.argv) == 3:
        certs(Path(sys.argv[2]))
    elif sys.argv[1:] == ["kafka"]:
        kafka()
    else:
        raise SystemExit(__doc__)
