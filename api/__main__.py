"""`python -m api`: the api on API_PORT (8004) and its health server on HEALTH_PORT (8005)."""

from __future__ import annotations

import sys

import uvicorn

from api.api import create_app
from api.settings import ApiSettings
from common.logging import configure_logging
from common.startup import run_app


def configure() -> uvicorn.Config:
    settings = ApiSettings()
    configure_logging("api", settings.log_level, settings.log_format, settings.environment)
    return uvicorn.Config(
        create_app(settings, start_health_server=True, freeze_gc=True),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        proxy_headers=settings.trust_forwarded_for,
    )


def main() -> int:
    return run_app("api", configure)


if __name__ == "__main__":
    sys.exit(main())
