"""The dashboard app: one collection loop, a WebSocket hub that fans each snapshot out to every
viewer, and the static UI.

However many browsers watch, the backend runs exactly one `Collector.collect()` per interval; each
snapshot is serialised once and the same text is sent to every connected WebSocket. A viewer that
cannot take a message within the send timeout is dropped (its browser reconnects by itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, ORJSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

from common.logging import get_logger
from dashboard.collector import Collector
from dashboard.settings import DashboardSettings

log = get_logger(__name__)

SERVICE: Final = "dashboard"
STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
SEND_TIMEOUT_S: Final = 5.0

WS_CONNECTIONS = Gauge("dashboard_websocket_connections", "WebSocket viewers connected now")
COLLECTIONS = Counter("dashboard_collections_total", "Collection passes run by the single loop")
COLLECTION_SECONDS = Histogram(
    "dashboard_collection_seconds",
    "Duration of one collection pass",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)
BROADCASTS = Counter("dashboard_broadcast_messages_total", "Snapshot messages sent to viewers")
DROPPED = Counter("dashboard_websocket_dropped_total", "Viewers dropped after a failed or slow send")
SOURCE_UP = Gauge("dashboard_source_up", "1 when the last pass reached the source", ["source"])
API_REQUESTS = Counter("dashboard_api_requests_total", "HTTP API requests", ["endpoint", "method"])


class Hub:
    """The set of connected viewers and the latest snapshot; `publish` sends one text to all."""

    def __init__(self) -> None:
        self.clients: set[WebSocket] = set()
        self.latest: dict[str, Any] | None = None
        self.latest_text: str | None = None
        self.collections = 0
        self.last_collected_at: float | None = None

    async def add(self, ws: WebSocket) -> None:
        self.clients.add(ws)
        WS_CONNECTIONS.set(len(self.clients))

    def remove(self, ws: WebSocket) -> None:
        self.clients.discard(ws)
        WS_CONNECTIONS.set(len(self.clients))

    async def _send(self, ws: WebSocket, text: str) -> WebSocket | None:
        try:
            await asyncio.wait_for(ws.send_text(text), SEND_TIMEOUT_S)
        except Exception:  # a broken or slow viewer is dropped, never blocks the others
            return ws
        return None

    async def publish(self, snapshot: dict[str, Any]) -> None:
        self.latest = snapshot
        self.latest_text = orjson.dumps({"type": "metrics_update", "data": snapshot}).decode()
        self.collections += 1
        self.last_collected_at = time.time()
        clients = list(self.clients)
        if not clients:
            return
        failed = await asyncio.gather(*(self._send(ws, self.latest_text) for ws in clients))
        BROADCASTS.inc(len(clients))
        for ws in failed:
            if ws is not None:
                DROPPED.inc()
                self.remove(ws)
                with contextlib.suppress(Exception):
                    await ws.close(code=1011)


async def collection_loop(collector: Collector, hub: Hub, interval_s: float) -> None:
    """The only place that collects: every `interval_s`, one pass, one broadcast."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        try:
            with COLLECTION_SECONDS.time():
                snapshot = await collector.collect()
            COLLECTIONS.inc()
            for name, store in (("neo4j", "neo4j"), ("postgres", "postgres"), ("rabbitmq", "rabbitmq")):
                SOURCE_UP.labels(name).set(1 if snapshot[store]["status"] == "up" else 0)
            for svc in snapshot["services"]:
                SOURCE_UP.labels(svc["name"]).set(0 if svc["status"] == "down" else 1)
            await hub.publish(snapshot)
        except asyncio.CancelledError:
            raise
        except Exception:  # keep the loop alive whatever one pass does
            log.exception("dashboard_collection_failed")
        await asyncio.sleep(max(0.05, interval_s - (loop.time() - started)))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: DashboardSettings = app.state.settings
    collector = await Collector.create(settings)
    hub: Hub = app.state.hub
    app.state.collector = collector
    task = asyncio.create_task(collection_loop(collector, hub, settings.collect_interval_s), name="collect")
    app.state.loop_task = task
    log.info("dashboard_started", interval_s=settings.collect_interval_s, services=settings.service_urls())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for ws in list(hub.clients):
            with contextlib.suppress(Exception):
                await ws.close(code=1001)
            hub.remove(ws)
        await collector.close()
        log.info("dashboard_stopped")


def create_app(settings: DashboardSettings | None = None) -> FastAPI:
    settings = settings or DashboardSettings()
    app = FastAPI(
        title="Discogsography dashboard",
        version="0.1.0",
        lifespan=lifespan,
        default_response_class=ORJSONResponse,
    )
    app.state.settings = settings
    app.state.hub = Hub()
    app.state.started_at = time.time()
    app.state.loop_task = None

    @app.get("/health", tags=["health"], summary="Process is alive")
    async def health(request: Request) -> dict[str, Any]:
        hub: Hub = request.app.state.hub
        return {
            "status": "healthy",
            "service": SERVICE,
            "timestamp": datetime.now(UTC).isoformat(),
            "uptime_s": round(time.time() - request.app.state.started_at, 1),
            "collections": hub.collections,
            "websocket_connections": len(hub.clients),
        }

    @app.get("/ready", tags=["health"], summary="The collection loop runs (503 otherwise)")
    async def ready(request: Request) -> Response:
        hub: Hub = request.app.state.hub
        task: asyncio.Task[None] | None = request.app.state.loop_task
        interval = request.app.state.settings.collect_interval_s
        checks: dict[str, str] = {}
        checks["collection_loop"] = "ok" if task is not None and not task.done() else "not running"
        fresh = hub.last_collected_at is not None and time.time() - hub.last_collected_at < max(
            10.0, 5 * interval
        )
        checks["last_snapshot"] = "ok" if fresh else "no recent snapshot"
        ok = all(v == "ok" for v in checks.values())
        body = {"status": "ready" if ok else "not_ready", "service": SERVICE, "checks": checks}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/metrics", tags=["dashboard"], summary="The latest snapshot (collected now if none yet)")
    async def latest(request: Request) -> dict[str, Any]:
        API_REQUESTS.labels("/api/metrics", "GET").inc()
        hub: Hub = request.app.state.hub
        if hub.latest is None:
            return await request.app.state.collector.collect()  # type: ignore[no-any-return]
        return hub.latest

    @app.get("/api/history", tags=["dashboard"], summary="Recent throughput points, oldest first")
    async def history(request: Request) -> dict[str, Any]:
        API_REQUESTS.labels("/api/history", "GET").inc()
        return {"points": list(request.app.state.collector.history)}

    @app.websocket("/ws")
    async def ws_endpoint(ws: WebSocket) -> None:
        hub: Hub = ws.app.state.hub
        await ws.accept()
        try:
            history_points = list(ws.app.state.collector.history)
            await ws.send_text(orjson.dumps({"type": "history", "data": history_points}).decode())
            if hub.latest_text is not None:
                await ws.send_text(hub.latest_text)
            await hub.add(ws)
            while True:  # the client may send pings; anything it sends is read and ignored
                message = await ws.receive_text()
                if message == "ping":
                    await ws.send_text('{"type":"pong"}')
        except WebSocketDisconnect:
            pass
        except Exception as exc:  # a viewer's socket failing is its own problem, not the server's
            log.debug("dashboard_ws_closed", error=str(exc))
        finally:
            hub.remove(ws)

    if STATIC_DIR.is_dir():
        app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    return app
