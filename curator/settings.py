"""Settings of the curator worker, read from the environment (pydantic-settings)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from common.discogs_client import DEFAULT_API_URL, DEFAULT_USER_AGENT
from common.settings import (
    AmqpSettings,
    BaseServiceSettings,
    ConnectRetrySettings,
    EncryptionSettings,
    Neo4jSettings,
    PostgresSettings,
)

DISCOGS_MAX_PER_MINUTE = 60


class CuratorSettings(
    BaseServiceSettings,
    PostgresSettings,
    Neo4jSettings,
    AmqpSettings,
    ConnectRetrySettings,
    EncryptionSettings,
):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True)

    health_port: int = Field(8011, alias="HEALTH_PORT", ge=0, le=65535)

    # Discogs
    discogs_api_url: str = Field(DEFAULT_API_URL, alias="DISCOGS_API_URL")
    discogs_user_agent: str = Field(DEFAULT_USER_AGENT, alias="DISCOGS_USER_AGENT")
    discogs_signature_method: Literal["HMAC-SHA1", "PLAINTEXT"] = Field(
        "HMAC-SHA1", alias="DISCOGS_SIGNATURE_METHOD"
    )
    # At most DISCOGS_RATE_LIMIT requests start in any DISCOGS_RATE_WINDOW_S seconds, for the whole
    # process (Discogs counts per address). The rate may never exceed 60 requests per minute; the
    # window is configurable so tests can run the same rule on a shorter clock.
    discogs_rate_limit: int = Field(55, alias="DISCOGS_RATE_LIMIT", ge=1, le=DISCOGS_MAX_PER_MINUTE)
    discogs_rate_window_s: float = Field(60.0, alias="DISCOGS_RATE_WINDOW_S", gt=0, le=3600)
    discogs_rate_margin_s: float = Field(0.25, alias="DISCOGS_RATE_MARGIN_S", ge=0, le=60)
    discogs_retry_after_s: float = Field(60.0, alias="DISCOGS_RETRY_AFTER_S", ge=0, le=600)
    discogs_max_429_retries: int = Field(5, alias="DISCOGS_MAX_429_RETRIES", ge=0, le=100)
    discogs_max_error_retries: int = Field(3, alias="DISCOGS_MAX_ERROR_RETRIES", ge=0, le=20)
    discogs_error_backoff_s: float = Field(2.0, alias="DISCOGS_ERROR_BACKOFF_S", ge=0, le=300)
    discogs_timeout_s: float = Field(30.0, alias="DISCOGS_TIMEOUT_S", gt=0, le=600)
    discogs_per_page: int = Field(100, alias="DISCOGS_PER_PAGE", ge=1, le=100)

    # Sync lifecycle
    # A write that cannot finish (a lock held elsewhere) fails the sync instead of leaving it
    # `running` forever; the user can start it again.
    write_timeout_s: float = Field(120.0, alias="SYNC_WRITE_TIMEOUT_S", gt=0, le=3600)
    sync_concurrency: int = Field(2, alias="SYNC_CONCURRENCY", ge=1, le=32)
    sync_heartbeat_interval_s: float = Field(10.0, alias="SYNC_HEARTBEAT_INTERVAL_S", gt=0, le=600)
    sync_stale_after_s: float = Field(120.0, alias="SYNC_STALE_AFTER_S", gt=0, le=86400)
    sync_max_attempts: int = Field(3, alias="SYNC_MAX_ATTEMPTS", ge=1, le=100)
    sync_queued_timeout_s: float = Field(6 * 3600.0, alias="SYNC_QUEUED_TIMEOUT_S", gt=0)
    sync_reaper_interval_s: float = Field(30.0, alias="SYNC_REAPER_INTERVAL_S", gt=0, le=3600)

    @model_validator(mode="after")
    def _never_above_sixty_per_minute(self) -> CuratorSettings:
        per_minute = self.discogs_rate_limit * 60.0 / self.discogs_rate_window_s
        if per_minute > DISCOGS_MAX_PER_MINUTE + 1e-9:
            raise ValueError(
                f"DISCOGS_RATE_LIMIT={self.discogs_rate_limit} per {self.discogs_rate_window_s}s is "
                f"{per_minute:.0f} requests/minute; Discogs allows at most {DISCOGS_MAX_PER_MINUTE}"
            )
        if self.sync_stale_after_s <= self.sync_heartbeat_interval_s:
            raise ValueError("SYNC_STALE_AFTER_S must be longer than SYNC_HEARTBEAT_INTERVAL_S")
        return self
