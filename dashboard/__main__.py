"""`python -m dashboard`: the ops dashboard on DASHBOARD_PORT (8003)."""

from __future__ import annotations

import uvicorn

from common.logging import configure_logging
from dashboard.app import create_app
from dashboard.settings import DashboardSettings


def main() -> None:
    settings = DashboardSettings()
    configure_logging("dashboard", settings.log_level, settings.log_format, settings.environment)
    uvicorn.run(
        create_app(settings),
        host=settings.dashboard_host,
        port=settings.dashboard_port,
        log_config=None,
        access_log=False,
        ws_ping_interval=20,
        ws_ping_timeout=20,
    )


if __name__ == "__main__":
    main()
