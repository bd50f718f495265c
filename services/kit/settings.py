"""Service settings from the environment (pydantic-settings)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.registry import service_source
from services.kit.kafka import KafkaClient
from services.kit.production import (
    DEMO_AGENCIES_FILE,
    Environment,
    Secret,
    agencies_file_problems,
    refuse,
    secret_problems,
    url_password,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"


class ServiceSettings(BaseSettings):
    """Settings every service has. Services subclass it to add their own.

    `DATABASE_URL` and `KAFKA_BOOTSTRAP_SERVERS` are read without prefix (the usual
    names); everything else is `ENLACE_<NAME>`.

    `ENLACE_ENV` is `production` unless said otherwise: a production service refuses
    to start, naming the setting, with a secret missing or a demo one (see
    services/kit/production.py and `secret_settings`). deploy/local, the tests and
    the bench say `local`.
    """

    model_config = SettingsConfigDict(
        env_prefix="ENLACE_", extra="ignore", validate_by_name=True, validate_by_alias=True
    )

    env: Environment = Field(
        default=Environment.PRODUCTION,
        description="local (demo profile of deploy/local) or production (checks secrets)",
    )
    service_name: str = "service"
    # No credentials by default: DATABASE_URL names the service's own role (locally
    # `deploy/local/postgres.sh dsn <service>`).
    database_url: str = Field(
        default="postgresql://127.0.0.1:15432/enlace",
        validation_alias=AliasChoices("DATABASE_URL", "ENLACE_DATABASE_URL"),
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:19092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "ENLACE_KAFKA_BOOTSTRAP_SERVERS"),
    )
    # How this service authenticates to Kafka (see services/kit/kafka.py). The
    # principal must be the one deploy/kafka-access.yaml declares for the service.
    kafka_security_protocol: str = Field(
        default="SASL_SSL", validation_alias=AliasChoices("KAFKA_SECURITY_PROTOCOL")
    )
    kafka_sasl_mechanism: str = Field(
        default="SCRAM-SHA-512", validation_alias=AliasChoices("KAFKA_SASL_MECHANISM")
    )
    kafka_sasl_username: str = Field(
        default="", validation_alias=AliasChoices("KAFKA_SASL_USERNAME")
    )
    kafka_sasl_password: SecretStr = Field(
        default=SecretStr(""), validation_alias=AliasChoices("KAFKA_SASL_PASSWORD")
    )
    kafka_ssl_cafile: str = Field(default="", validation_alias=AliasChoices("KAFKA_SSL_CAFILE"))
    topic_namespace: str = Field(
        default="", description="Prefix of physical topic names; empty in production"
    )
    consumer_group: str = Field(default="", description="Defaults to enlace-<service_name>")
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    http_workers: int = Field(default=1, ge=1, description="Processes (replicas) to run")
    log_level: str = "INFO"
    # The local profile's demo file; production refuses it (its own must be given).
    agencies_file: Path = DEMO_AGENCIES_FILE
    max_body_bytes: int = 64 * 1024
    auth_failures_per_minute: int = Field(
        default=30,
        ge=0,
        description="Failed authentications a client address may make a minute before 429; "
        "0 turns throttling off",
    )

    db_pool_min: int = 2
    db_pool_max: int = 10

    outbox_batch_size: int = 1000
    outbox_fallback_poll_seconds: float = 2.0  # NOTIFY is only a wake-up; this is the net
    relay_retry_max_seconds: float = 5.0

    consumer_batch_size: int = 500
    consumer_max_attempts: int = 5
    consumer_backoff_initial_seconds: float = 0.1
    consumer_backoff_max_seconds: float = 5.0
    # How long an idle consumer's poll waits before the next (a poll returns as soon as
    # records arrive: `consumer.never_deaf`); also how soon a stopping consumer notices.
    consumer_poll_seconds: float = Field(default=0.1, gt=0)
    consumer_auto_offset_reset: str = "earliest"
    shutdown_grace_seconds: float = 15.0
    # A background loop that died is restarted with backoff (capped here); one that
    # stays dead longer than the bound fails /healthz, so the process is restarted.
    loop_restart_max_seconds: float = 15.0
    loop_dead_after_seconds: float = 60.0
    # /readyz answers within this bound even when a broker or the database hangs
    # (a paused process accepts connections and never answers): an orchestrator's
    # probe gives up after 1 s by default, and a late answer reads as "not ready".
    readiness_timeout_seconds: float = 0.8
    # Event ids are kept longer than Kafka keeps records (7 days locally), so that any
    # redelivery is still recognised; older ones are pruned hourly.
    processed_events_retention_days: float = 14.0

    def secret_settings(self) -> list[Secret]:
        """The secrets of these settings; subclasses add theirs."""
        return [
            Secret("DATABASE_URL", url_password(self.database_url), "has no password"),
            Secret("KAFKA_SASL_PASSWORD", self.kafka_sasl_password.get_secret_value()),
        ]

    def production_problems(self) -> list[str]:
        """Why these settings must not run in production (nothing in the local profile)."""
        if self.env is not Environment.PRODUCTION:
            return []
        problems: list[str] = []
        if self.kafka_security_protocol != "SASL_SSL":
            problems.append(
                f"KAFKA_SECURITY_PROTOCOL is {self.kafka_security_protocol}, not SASL_SSL"
            )
        problems += secret_problems(self.secret_settings())
        problems += agencies_file_problems(
            self.agencies_file, given="agencies_file" in self.model_fields_set
        )
        return problems

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Self:
        refuse(self.production_problems())
        return self

    @property
    def group_id(self) -> str:
        return self.consumer_group or f"enlace-{self.service_name}"

    @property
    def event_source(self) -> str:
        return service_source(self.service_name)

    @cached_property
    def kafka(self) -> KafkaClient:
        return KafkaClient(
            bootstrap=self.kafka_bootstrap_servers,
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username,
            password=self.kafka_sasl_password.get_secret_value(),
            cafile=self.kafka_ssl_cafile,
        )
