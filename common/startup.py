"""A worker's entry point. The start-up failures an operator fixes (a setting that does not parse,
a store or the broker still out of reach after CONNECT_ATTEMPTS, a health port already taken) end
the process with one `<service>_cannot_start` line and exit code 2, as the extractor does, instead
of a traceback; anything else still raises with its traceback."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from pydantic import ValidationError

from common.errors import ServiceUnavailableError
from common.logging import configure_logging, get_logger

CANNOT_START: int = 2


def invalid_settings(service: str, exc: ValidationError) -> int:
    """Log why the settings did not parse (configuring the logging they would have configured)."""
    if not structlog.is_configured():
        configure_logging(service)
    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    get_logger(service).error(f"{service}_cannot_start", error=f"invalid setting: {problems}")
    return CANNOT_START


def run_worker(service: str, main: Callable[[], Coroutine[Any, Any, None]]) -> int:
    """`asyncio.run(main())`; the process exit code."""
    log = get_logger(service)
    try:
        asyncio.run(main())
    except ValidationError as exc:
        return invalid_settings(service, exc)
    except ServiceUnavailableError as exc:
        log.error(f"{service}_cannot_start", error=str(exc).strip())
        return CANNOT_START
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        log.error(f"{service}_cannot_start", error=str(exc))
        return CANNOT_START
    return 0
