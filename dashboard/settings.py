"""Settings of the dashboard service, read from the environment (pydantic-settings).

Every watched service's base URL is configurable; the defaults are the project's default ports on
127.0.0.1. The stores use the shared mixins, so the dashboard reads the same variables as every
other service (NEO4J_URI, POSTGRES_ADDRESS, RABBITMQ_MANAGEMENT_URL, RABBITMQ_USERNAME, ...).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from common.settings import (
    AmqpSettings,
    BaseServiceSettings,
    Neo4jSettings,
    PostgresSettings,
)


class DashboardSettings(BaseServiceSettings, PostgresSettings, Neo4jSettings, AmqpSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True)

    dashboard_host: str = Field("127.0.0.1", alias="DASHBOARD_HOST")
    dashboard_port: int = Field(8003, alias="DASHBOARD_PORT", ge=0, le=65535)

    # Base URLs of the services whose /health and /ready the dashboard polls.
    extractor_url: str = Field("http://127.0.0.1:8000", alias="EXTRACTOR_URL")
    graphinator_url: str = Field("http://127.0.0.1:8001", alias="GRAPHINATOR_URL")
    tableinator_url: str = Field("http://127.0.0.1:8002", alias="TABLEINATOR_URL")
    api_health_url: str = Field("http://127.0.0.1:8005", alias="API_HEALTH_URL")
    curator_url: str = Field("http://127.0.0.1:8011", alias="CURATOR_URL")

    # One collection loop for every viewer; the issue asks for a push at least every 2 s.
    collect_interval_s: float = Field(2.0, alias="DASHBOARD_COLLECT_INTERVAL", gt=0, le=2.0)
    # Per-source timeout; sources run concurrently, so one cycle never takes much longer.
    source_timeout_s: float = Field(1.5, alias="DASHBOARD_SOURCE_TIMEOUT", gt=0, le=10)
    # Points of throughput history kept in memory (150 x 2 s = 5 minutes).
    history_size: int = Field(150, alias="DASHBOARD_HISTORY_SIZE", ge=2, le=10_000)
    # PostgreSQL tables whose estimated row count is below this are counted exactly.
    pg_exact_count_below: int = Field(500_000, alias="DASHBOARD_PG_EXACT_COUNT_BELOW", ge=0)

    def service_urls(self) -> dict[str, str]:
        return {
            "extractor": self.extractor_url,
            "graphinator": self.graphinator_url,
            "tableinator": self.tableinator_url,
            "api": self.api_health_url,
            "curator": self.curator_url,
        }
