"""A small HTTP server for workers: `/health` (process alive), `/ready` (dependencies answer,
503 otherwise) and `/metrics` (Prometheus text format).

Readiness checks are async callables that raise when their dependency is down; each runs with a
timeout so one hung store cannot hang the probe.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from common.logging import get_logger

ReadyCheck = Callable[[], Awaitable[Any]]
StatusProvider = Callable[[], Mapping[str, Any]]

log = get_logger(__name__)


async def run_ready_checks(
    checks: Mapping[str, ReadyCheck], timeout: float = 3.0
) -> tuple[bool, dict[str, str]]:
    """Run every check concurrently; return (all ok, {name: "ok" | error text})."""

    async def one(check: ReadyCheck) -> str:
        try:
            await asyncio.wait_for(check(), timeout)
        except TimeoutError:
            return f"timed out after {timeout}s"
        except Exception as exc:  # report any failure as "not ready", never crash the probe
            return str(exc) or type(exc).__name__
        return "ok"

    names = list(checks)
    results = await asyncio.gather(*(one(checks[n]) for n in names))
    outcome = dict(zip(names, results, strict=True))
    return all(r == "ok" for r in results), outcome


class HealthServer:
    """Serve /health, /ready and /metrics on (host, port) until `stop()`."""

    def __init__(
        self,
        service: str,
        host: str,
        port: int,
        ready_checks: Mapping[str, ReadyCheck] | None = None,
        status: StatusProvider | None = None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.service = service
        self.host = host
        self.port = port
        self.ready_checks = dict(ready_checks or {})
        self.status = status
        self.registry = registry
        self.started_at = time.time()
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/ready", self._ready)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def _health(self, _: web.Request) -> web.Response:
        body: dict[str, Any] = {
            "status": "healthy",
            "service": self.service,
            "uptime_s": round(time.time() - self.started_at, 1),
        }
        if self.status is not None:
            body.update(self.status())
        return web.json_response(body)

    async def _ready(self, _: web.Request) -> web.Response:
        ok, checks = await run_ready_checks(self.ready_checks)
        return web.json_response(
            {"status": "ready" if ok else "not_ready", "service": self.service, "checks": checks},
            status=200 if ok else 503,
        )

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        log.info("health_server_started", host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
