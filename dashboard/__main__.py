"""`python -m dashboard`: the ops dashboard on DASHBOARD_PORT (8003). It starts whether or not the
stores answer (it shows them as down), so only a bad setting or a taken port stop it."""

from __future__ import annotations

import sys

import uvicorn

from common.logging import configure_logging
from common.startup import run_app
from dashboard.app import create_app
from dashboard.settings import DashboardSettings


def configure() -> uvicorn.Config:
    settings = DashboardSettings()
    configure_logging("dashboard", settings.log_level, settings.log_format, settings.environment)
    return uvicorn.Config(
        create_app(settings),
        host=settings.dashboard_host,
        port=settings.dashboard_port,
        log_config=None,
        access_log=False,
        ws_ping_interval=20,
        ws_ping_timeout=20,
    )


def main() -> int:
    return run_app("dashboard", configure)


if __name__ == "__main__":
    sys.exit(main())
