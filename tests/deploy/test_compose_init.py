"""The compose stack's one-shot setup (deploy/compose/init.py): the topics are the
Kubernetes KafkaTopics, configured alike; the brokers' certificate is signed by the
CA the services trust and names every broker."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from deploy.compose import init
from deploy.k8s import generate, strimzi
from services.kit.kafka_acl import ck, load_access


class FakeAdmin:
    def __init__(self, existing: set[str], failing: frozenset[str] = frozenset()) -> None:
        self.existing, self.failing = existing, failing
        self.asked: list[Any] = []

    def create_topics(self, topics: list[Any], request_timeout: float) -> dict[str, Future[None]]:
        out: dict[str, Future[None]] = {}
        for topic in topics:
            self.asked.append(topic)
            future: Future[None] = Future()
            if topic.topic in self.existing:
                code = ck.KafkaError.TOPIC_ALREADY_EXISTS
                future.set_exception(ck.KafkaException(ck.KafkaError(code)))
            elif topic.topic in self.failing:
                code = ck.KafkaError.TOPIC_AUTHORIZATION_FAILED
                future.set_exception(ck.KafkaException(ck.KafkaError(code)))
            else:
                future.set_result(None)
            out[topic.topic] = future
        return out


def test_the_topics_are_the_kafka_topics_with_their_configuration() -> None:
    kafka_topics = {
        d["spec"]["topicName"]: d["spec"]
        for d in yaml.safe_load_all((generate.BASE / "kafka-topics.yaml").read_text())
        if d
    }
    admin = FakeAdmin(existing={"protection.cases.v1"})
    names = init.create_topics(admin, strimzi.topic_names(load_access()))
    assert sorted(names) == sorted(kafka_topics)
    for topic in admin.asked:
        spec = kafka_topics[topic.topic]
        assert topic.num_partitions == spec["partitions"]
        assert topic.replication_factor == spec["replicas"]
        assert topic.config == {k: str(v) for k, v in spec["config"].items()}


def test_an_error_other_than_an_existing_topic_stops_the_setup() -> None:
    admin = FakeAdmin(existing=set(), failing=frozenset({"protection.cases.v1"}))
    with pytest.raises(ck.KafkaException):
        init.create_topics(admin, ["protection.cases.v1", "protection.referrals.v1"])


def test_the_broker_certificate_names_every_broker_and_is_signed_by_the_ca(
    tmp_path: Path,
) -> None:
    init.certs(tmp_path)
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    chain = x509.load_pem_x509_certificates((tmp_path / "broker.pem").read_bytes())
    broker = chain[0]
    broker.verify_directly_issued_by(ca)
    names = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert set(init.BROKERS) <= set(names.value.get_values_for_type(x509.DNSName))
    first = (tmp_path / "broker.pem").read_bytes()
    init.certs(tmp_path)  # a second start keeps the material the brokers already use
    assert (tmp_path / "broker.pem").read_bytes() == first
