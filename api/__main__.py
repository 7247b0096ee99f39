"""`python -m api`: the api on API_PORT (8004) and its health server on HEALTH_PORT (8005)."""

from __future__ import annotations

import uvicorn

from api.api import create_app
from api.settings import ApiSettings
from common.logging import configure_logging


def main() -> None:
    settings = ApiSettings()
    configure_logging("api", settings.log_level, settings.log_format, settings.environment)
    app = create_app(settings, start_health_server=True, freeze_gc=True)
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        proxy_headers=settings.trust_forwarded_for,
    )


if __name__ == "__main__":
    main()
