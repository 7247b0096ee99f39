"""Extractor settings (environment variables; CLI flags override a few)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from common.settings import AmqpSettings, BaseServiceSettings, ConnectRetrySettings


class ExtractorSettings(BaseServiceSettings, AmqpSettings, ConnectRetrySettings):
    discogs_data_url: str = Field("https://data.discogs.com/", alias="DISCOGS_DATA_URL")
    data_dir: Path = Field(Path(".local/data"), alias="DATA_DIR")
    source_dir: Path | None = Field(None, alias="EXTRACTOR_SOURCE_DIR")
    check_interval_hours: float = Field(24.0, alias="CHECK_INTERVAL_HOURS", gt=0)
    # After a failed cycle (host down, broker lost, corrupt file) retry sooner than the interval.
    retry_interval_minutes: float = Field(10.0, alias="RETRY_INTERVAL_MINUTES", gt=0)
    health_port: int = Field(8000, alias="HEALTH_PORT")
    amqp_publisher: Literal["fast", "aio-pika"] = Field("fast", alias="AMQP_PUBLISHER")
    publish_window: int = Field(2000, alias="PUBLISH_WINDOW", ge=1, le=100_000)
    parse_batch_size: int = Field(500, alias="PARSE_BATCH_SIZE", ge=1, le=100_000)
    checkpoint_interval_s: float = Field(1.0, alias="CHECKPOINT_INTERVAL", gt=0)
    download_attempts: int = Field(6, alias="DOWNLOAD_ATTEMPTS", ge=1, le=100)
    download_max_wait_s: float = Field(3600.0, alias="DOWNLOAD_MAX_WAIT", gt=0)
    download_backoff_s: float = Field(5.0, alias="DOWNLOAD_BACKOFF", ge=0)
    http_timeout_s: float = Field(60.0, alias="HTTP_TIMEOUT", gt=0)
    user_agent: str = Field("discogsography-extractor/0.1", alias="EXTRACTOR_USER_AGENT")
    progress_log_interval_s: float = Field(10.0, alias="PROGRESS_LOG_INTERVAL", gt=0)
