"""Settings of the api service, read from the environment (pydantic-settings).

Inherits the shared mixins so every variable has one name and default across the project.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from common.discogs_client import DEFAULT_API_URL, DEFAULT_AUTHORIZE_URL, DEFAULT_USER_AGENT
from common.settings import (
    AmqpSettings,
    BaseServiceSettings,
    ConnectRetrySettings,
    EncryptionSettings,
    Neo4jSettings,
    PostgresSettings,
    RedisSettings,
)

DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-please-0123456789"  # noqa: S105 - a known dev default
MIN_JWT_SECRET_BYTES = 32


class ApiSettings(
    BaseServiceSettings,
    PostgresSettings,
    Neo4jSettings,
    RedisSettings,
    ConnectRetrySettings,
    EncryptionSettings,
    AmqpSettings,
):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True)

    api_host: str = Field("127.0.0.1", alias="API_HOST")
    api_port: int = Field(8004, alias="API_PORT", ge=0, le=65535)
    health_port: int = Field(8005, alias="HEALTH_PORT", ge=0, le=65535)

    # Auth
    jwt_secret_key: SecretStr = Field(SecretStr(DEV_JWT_SECRET), alias="JWT_SECRET_KEY")
    jwt_expire_minutes: int = Field(60, alias="JWT_EXPIRE_MINUTES", ge=1, le=60 * 24 * 30)

    # Rate limits: at most N requests per window per client address (fixed window in Redis).
    rate_limit_window_s: int = Field(60, alias="RATE_LIMIT_WINDOW_S", ge=1, le=3600)
    login_rate_limit: int = Field(10, alias="LOGIN_RATE_LIMIT", ge=1)
    register_rate_limit: int = Field(5, alias="REGISTER_RATE_LIMIT", ge=1)
    snapshot_rate_limit: int = Field(30, alias="SNAPSHOT_RATE_LIMIT", ge=1)
    trust_forwarded_for: bool = Field(False, alias="TRUST_FORWARDED_FOR")

    # Snapshots (Redis)
    snapshot_ttl_days: int = Field(28, alias="SNAPSHOT_TTL_DAYS", ge=1, le=3650)
    snapshot_max_nodes: int = Field(100, alias="SNAPSHOT_MAX_NODES", ge=1, le=10_000)

    # Explore
    neo4j_query_timeout_s: float = Field(10.0, alias="NEO4J_QUERY_TIMEOUT_S", gt=0, le=300)
    autocomplete_cache_ttl_s: int = Field(300, alias="AUTOCOMPLETE_CACHE_TTL_S", ge=0)
    explore_cache_ttl_s: int = Field(300, alias="EXPLORE_CACHE_TTL_S", ge=0)

    # HTTP hygiene
    max_body_bytes: int = Field(256 * 1024, alias="MAX_BODY_BYTES", ge=1024)
    cors_origins: str = Field("", alias="CORS_ORIGINS")  # comma-separated; empty = same origin only
    docs_enabled: bool = Field(True, alias="DOCS_ENABLED")

    # Discogs OAuth and sync (api/routers/oauth.py, api/routers/sync.py)
    discogs_api_url: str = Field(DEFAULT_API_URL, alias="DISCOGS_API_URL")
    discogs_authorize_url: str = Field(DEFAULT_AUTHORIZE_URL, alias="DISCOGS_AUTHORIZE_URL")
    discogs_user_agent: str = Field(DEFAULT_USER_AGENT, alias="DISCOGS_USER_AGENT")
    discogs_signature_method: Literal["HMAC-SHA1", "PLAINTEXT"] = Field(
        "HMAC-SHA1", alias="DISCOGS_SIGNATURE_METHOD"
    )
    discogs_timeout_s: float = Field(15.0, alias="DISCOGS_TIMEOUT_S", gt=0, le=120)
    # Where Discogs sends the browser back in the callback flow; empty = this api's own callback
    # route as seen by the request (set it when a proxy changes the public address).
    discogs_oauth_callback_url: str = Field("", alias="DISCOGS_OAUTH_CALLBACK_URL")
    # Where the callback route sends the browser afterwards (`?discogs=connected|error` is added).
    discogs_oauth_return_url: str = Field("/", alias="DISCOGS_OAUTH_RETURN_URL")

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @model_validator(mode="after")
    def _strong_secret_in_production(self) -> ApiSettings:
        secret = self.jwt_secret_key.get_secret_value()
        if self.environment == "production" and (
            secret == DEV_JWT_SECRET or len(secret.encode()) < MIN_JWT_SECRET_BYTES
        ):
            raise ValueError(
                f"JWT_SECRET_KEY must be set to a secret of at least {MIN_JWT_SECRET_BYTES} bytes "
                "(not the development default) when ENVIRONMENT=production"
            )
        return self
