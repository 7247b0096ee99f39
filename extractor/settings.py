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
    # Records published but not yet confirmed: also the most a crash can re-publish.
    publish_window: int = Field(10_000, alias="PUBLISH_WINDOW", ge=1, le=1_000_000)
    # Records per `records` message, and the message size at which it is sent earlier.
    message_records: int = Field(100, alias="MESSAGE_RECORDS", ge=1, le=10_000)
    message_max_bytes: int = Field(1 << 20, alias="MESSAGE_MAX_BYTES", ge=1024, le=64 << 20)
    # Publishing pauses while a consumer queue of the type holds about this many records (0: never).
    queue_max_records: int = Field(1_000_000, alias="QUEUE_MAX_RECORDS", ge=0)
    # Processes parsing one file (0 = one per core); labels always parse in one.
    parse_workers: int = Field(0, alias="PARSE_WORKERS", ge=0, le=64)
    # Messages handed from the parse process to the publisher at a time.
    parse_batch_size: int = Field(8, alias="PARSE_BATCH_SIZE", ge=1, le=10_000)
    checkpoint_interval_s: float = Field(1.0, alias="CHECKPOINT_INTERVAL", gt=0)
    download_attempts: int = Field(6, alias="DOWNLOAD_ATTEMPTS", ge=1, le=100)
    download_max_wait_s: float = Field(3600.0, alias="DOWNLOAD_MAX_WAIT", gt=0)
    download_backoff_s: float = Field(5.0, alias="DOWNLOAD_BACKOFF", ge=0)
    http_timeout_s: float = Field(60.0, alias="HTTP_TIMEOUT", gt=0)
    user_agent: str = Field("discogsography-extractor/0.1", alias="EXTRACTOR_USER_AGENT")
    progress_log_interval_s: float = Field(10.0, alias="PROGRESS_LOG_INTERVAL", gt=0)
