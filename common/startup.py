"""A service's entry point. The start-up failures an operator fixes (a setting that does not parse,
a store or the broker still out of reach after CONNECT_ATTEMPTS, a port already taken) end the
process with one `<service>_cannot_start` line and exit code 2, as the extractor does, instead of
a traceback; anything else still fails with its traceback.

`run_worker` runs a worker's main coroutine; `run_app` serves an ASGI app (api, dashboard) with
uvicorn, whose lifespan creates the clients."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import ValidationError

from common.errors import ServiceUnavailableError
from common.logging import configure_logging, get_logger

if TYPE_CHECKING:
    import uvicorn

CANNOT_START: int = 2
STARTUP_FAILED: int = 3  # what `uvicorn.run` exits with when the lifespan fails for another reason

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _reason(exc: BaseException) -> str | None:
    """Why the service cannot start, when an operator fixes it (a store out of reach, a taken
    port); None for anything else, which keeps its traceback."""
    if isinstance(exc, ServiceUnavailableError):
        return str(exc).strip()  # psycopg's messages end with a newline
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return str(exc)
    return None


def _cannot_start(service: str, reason: str) -> int:
    get_logger(service).error(f"{service}_cannot_start", error=reason)
    return CANNOT_START


def invalid_settings(service: str, exc: ValidationError) -> int:
    """Log why the settings did not parse (configuring the logging they would have configured)."""
    if not structlog.is_configured():
        configure_logging(service)
    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return _cannot_start(service, f"invalid setting: {problems}")


def run_worker(service: str, main: Callable[[], Coroutine[Any, Any, None]]) -> int:
    """`asyncio.run(main())`; the process exit code."""
    try:
        asyncio.run(main())
    except ValidationError as exc:
        return invalid_settings(service, exc)
    except (ServiceUnavailableError, OSError) as exc:
        if (reason := _reason(exc)) is None:
            raise
        return _cannot_start(service, reason)
    return 0


class _LifespanGuard:
    """Wraps an ASGI app. Starlette reports a lifespan start-up failure as `lifespan.startup.failed`
    with the traceback as its message, which uvicorn logs; for a failure an operator fixes this
    keeps the reason instead and sends the message without the traceback. Anything else passes
    through unchanged."""

    def __init__(self, app: Callable[..., Any]) -> None:  # an ASGI 3 app, as uvicorn.Config types it
        self.app = app
        self.reason: str | None = None

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        held: list[Message] = []  # the failure message, until the exception says which kind

        async def hold_failure(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                held.append(message)
            else:
                await send(message)

        try:
            await self.app(scope, receive, hold_failure)
        except Exception as exc:
            self.reason = _reason(exc) if held else None
            if self.reason is None:
                raise
            held[:] = [{"type": "lifespan.startup.failed", "message": ""}]  # nothing for uvicorn to log
        finally:
            for message in held:
                await send(message)


def _bind(host: str, port: int) -> socket.socket:
    """The app's socket, bound (uvicorn makes it listen once the lifespan started). Bound before the
    lifespan because uvicorn binds after it, having connected every store, and then exits 1 with a
    line of its own on a taken port."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        # Worded as asyncio words it for the health servers, so every service says the same.
        address = f"error while attempting to bind on address {(host, port)!r}"
        raise OSError(exc.errno, f"{address}: {(exc.strerror or '').lower()}") from None
    return sock


def run_app(service: str, configure: Callable[[], uvicorn.Config]) -> int:
    """Serve the app of `configure()` (which reads the settings, configures logging and returns the
    app's uvicorn.Config) until it stops; the process exit code."""
    import uvicorn  # noqa: PLC0415 - only the ASGI services have it; common does not depend on it

    try:
        config = configure()
    except ValidationError as exc:
        return invalid_settings(service, exc)
    if isinstance(config.app, str):
        raise TypeError("run_app serves an app object, not an import string")
    config.app = guard = _LifespanGuard(config.app)
    try:
        sock = _bind(config.host, config.port)
    except OSError as exc:
        if (reason := _reason(exc)) is None:
            raise
        return _cannot_start(service, reason)
    # Once the reason is known, uvicorn's "Application startup failed. Exiting." adds nothing.
    logging.getLogger("uvicorn.error").addFilter(lambda _: guard.reason is None)
    server = uvicorn.Server(config)
    try:
        with sock:
            server.run(sockets=[sock])
    except SystemExit:  # uvicorn exits 3 itself when the lifespan did not start
        if guard.reason is None:
            raise
    if guard.reason is not None:
        return _cannot_start(service, guard.reason)
    return 0 if server.started else STARTUP_FAILED
