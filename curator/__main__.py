"""`python -m curator`: the Discogs sync worker (health server only, no HTTP API)."""

from __future__ import annotations

import asyncio
import signal
import sys

from common.logging import configure_logging, get_logger
from common.startup import run_worker
from curator.settings import CuratorSettings
from curator.worker import Curator


async def main() -> None:
    settings = CuratorSettings()
    configure_logging("curator", settings.log_level, settings.log_format, settings.environment)
    log = get_logger("curator")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    curator = Curator(settings)
    try:
        await curator.start()
        await stop.wait()
        log.info("curator_stopping")
    finally:
        await curator.stop()


if __name__ == "__main__":
    sys.exit(run_worker("curator", main))
