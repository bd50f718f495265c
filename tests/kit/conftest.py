"""The kit's tests: their own topics, and the settings of a toy service."""

from typing import Any

from services.kit.settings import ServiceSettings
from tests.conftest import package_namespace
from tests.infra import Infra

namespace = package_namespace("kit")


def toy_settings(infra: Infra, namespace: str, dsn: str, **overrides: Any) -> ServiceSettings:
    """A service named "toy" on the shared infrastructure. The toy is no declared
    service: it runs as the scripts' admin principal."""
    kafka = infra.kafka()
    return ServiceSettings(
        service_name="toy",
        database_url=dsn,
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        kafka_security_protocol=kafka.security_protocol,
        kafka_sasl_username=kafka.username,
        kafka_sasl_password=kafka.password,
        kafka_ssl_cafile=kafka.cafile,
        topic_namespace=namespace,
        consumer_group=f"{namespace}-toy",
        **overrides,
    )
