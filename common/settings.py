"""Typed settings shared by every service, read from the environment (pydantic-settings).

Each store has its own small settings class; a service's settings class inherits the ones it
needs, so every variable has one name and one default across the project. Defaults match the
local stack that `make infra-up` starts on 127.0.0.1.
"""

from __future__ import annotations

from typing import Literal

from psycopg.conninfo import make_conninfo
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class BaseServiceSettings(BaseSettings):
    """Settings every process has: logging and its health server."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True)

    environment: str = Field("development", alias="ENVIRONMENT")
    log_level: str = Field("INFO", alias="LOG_LEVEL")
    log_format: Literal["auto", "json", "console"] = Field("auto", alias="LOG_FORMAT")
    health_host: str = Field("127.0.0.1", alias="HEALTH_HOST")


class PostgresSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    postgres_address: str = Field("127.0.0.1:5432", alias="POSTGRES_ADDRESS")
    postgres_username: str = Field("discogsography", alias="POSTGRES_USERNAME")
    postgres_password: SecretStr = Field(SecretStr("discogsography"), alias="POSTGRES_PASSWORD")
    postgres_database: str = Field("discogsography", alias="POSTGRES_DATABASE")

    @property
    def postgres_host_port(self) -> tuple[str, int]:
        """`host[:port]`, split at the last colon; the port defaults to 5432."""
        host, sep, port = self.postgres_address.rpartition(":")
        if not sep or not port.isdigit():
            return self.postgres_address, 5432
        return host, int(port)

    def postgres_conninfo(self, database: str | None = None) -> str:
        host, port = self.postgres_host_port
        return make_conninfo(
            host=host,
            port=port,
            user=self.postgres_username,
            password=self.postgres_password.get_secret_value(),
            dbname=database or self.postgres_database,
            connect_timeout=5,
        )


class Neo4jSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    neo4j_uri: str = Field("bolt://127.0.0.1:7687", alias="NEO4J_URI")
    neo4j_username: str = Field("neo4j", alias="NEO4J_USERNAME")
    neo4j_password: SecretStr = Field(SecretStr("discogsography"), alias="NEO4J_PASSWORD")
    neo4j_database: str = Field("neo4j", alias="NEO4J_DATABASE")


class RedisSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    redis_url: str = Field("redis://127.0.0.1:6379/0", alias="REDIS_URL")


class AmqpSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    amqp_url: SecretStr = Field(
        SecretStr("amqp://discogsography:discogsography@127.0.0.1:5672/"), alias="AMQP_URL"
    )
    rabbitmq_management_url: str = Field("http://127.0.0.1:15672", alias="RABBITMQ_MANAGEMENT_URL")
    rabbitmq_username: str = Field("discogsography", alias="RABBITMQ_USERNAME")
    rabbitmq_password: SecretStr = Field(SecretStr("discogsography"), alias="RABBITMQ_PASSWORD")


class ConnectRetrySettings(BaseSettings):
    """How long a service keeps trying to reach a store at start-up before giving up."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    connect_attempts: int = Field(10, alias="CONNECT_ATTEMPTS", ge=1, le=1000)
    connect_backoff_max_s: float = Field(10.0, alias="CONNECT_BACKOFF_MAX", gt=0)


class EncryptionSettings(BaseSettings):
    """Key(s) for secrets at rest (common.crypto). Comma-separated: the first encrypts, all decrypt."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    encryption_keys: SecretStr = Field(
        SecretStr("dev-only-encryption-key-change-me"), alias="ENCRYPTION_KEYS"
    )

    @property
    def encryption_key_list(self) -> list[str]:
        return [k.strip() for k in self.encryption_keys.get_secret_value().split(",") if k.strip()]
