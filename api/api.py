"""The api app factory and its lifespan.

`create_app(settings)` builds the FastAPI app; the lifespan opens the PostgreSQL pool, Redis and the
Neo4j driver (through common.clients) and keeps them on `app.state`, where the dependencies in
api.dependencies find them. Nothing connects at import time.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from api.errors import error_responses, install_error_handlers
from api.metrics import BodySizeLimitMiddleware, MetricsMiddleware
from api.models import ErrorResponse, HealthResponse, ReadyResponse
from api.routers import admin, auth, explore, oauth, snapshot, sync, user
from api.settings import ApiSettings
from api.sync_publisher import SyncPublisher
from common.clients import create_neo4j_driver, create_postgres_pool, create_redis
from common.crypto import SecretBox
from common.health import HealthServer, ReadyCheck, run_ready_checks
from common.logging import get_logger
from common.readiness import neo4j_check, postgres_check, redis_check

log = get_logger(__name__)

SERVICE = "api"
STATIC_DIR = Path(__file__).resolve().parent / "static"
API_VERSION = "0.1.0"


def ready_checks(app: FastAPI) -> dict[str, ReadyCheck]:
    state = app.state
    return {
        "postgresql": postgres_check(state.pg_pool),
        "redis": redis_check(state.redis),
        "neo4j": neo4j_check(state.neo4j),
    }


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: ApiSettings = app.state.settings
    attempts = settings.connect_attempts
    app.state.secret_box = SecretBox(settings.encryption_key_list)
    app.state.pg_pool = await create_postgres_pool(settings, min_size=2, max_size=20, attempts=attempts)
    health: HealthServer | None = None
    try:
        app.state.redis = await create_redis(settings, attempts=attempts)
        try:
            app.state.neo4j = await create_neo4j_driver(
                settings,
                attempts=attempts,
                max_connection_pool_size=100,
                connection_acquisition_timeout=10.0,
                # Server notifications (e.g. "relationship type does not exist" on a partial
                # graph) would be logged per query: CPU on the hot path and noise, never an error.
                notifications_min_severity="OFF",
            )
            # Sync requests go to RabbitMQ; the api keeps serving when the broker is down.
            app.state.sync_publisher = SyncPublisher(settings)
            await app.state.sync_publisher.start()
            try:
                if app.state.start_health_server:
                    health = HealthServer(
                        SERVICE, settings.health_host, settings.health_port, ready_checks=ready_checks(app)
                    )
                    await health.start()
                app.state.started_at = datetime.now(UTC)
                if app.state.freeze_gc:
                    freeze_startup_objects()
                log.info("api_started", neo4j=settings.neo4j_uri, redis=settings.redis_url)
                yield
            finally:
                if app.state.freeze_gc:
                    gc.unfreeze()
                if health is not None:
                    await health.stop()
                await app.state.sync_publisher.close()
                await app.state.neo4j.close()
        finally:
            await app.state.redis.aclose()
    finally:
        await app.state.pg_pool.close()
        log.info("api_stopped")


def _use_error_envelope_in_openapi(app: FastAPI) -> None:
    """Every 422 in the schema is the error envelope (FastAPI documents its own default shape
    for routes that do not declare 422 themselves); replace it so clients see what is sent."""
    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = base_openapi()
        ref = "#/components/schemas/ErrorResponse"
        for path_item in spec.get("paths", {}).values():
            for operation in path_item.values():
                response = operation.get("responses", {}).get("422")
                if response is not None:
                    response["content"] = {"application/json": {"schema": {"$ref": ref}}}
                    response["description"] = "Unprocessable Content"
        schemas = spec.get("components", {}).get("schemas", {})
        if "ErrorResponse" not in schemas:
            schemas["ErrorResponse"] = ErrorResponse.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            schemas.update(schemas["ErrorResponse"].pop("$defs", {}))
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def freeze_startup_objects() -> None:
    """Move everything alive after startup (modules, the app, clients: ~125k objects) out of the
    garbage collector's reach. A full collection traversed all of them each time the request
    churn triggered one: a 50-250 ms stop of the event loop every few seconds under load, every
    request in flight waiting for it (most of the p99)."""
    gc.collect()
    gc.freeze()


def create_app(
    settings: ApiSettings | None = None, *, start_health_server: bool = False, freeze_gc: bool = False
) -> FastAPI:
    """Build the api. `start_health_server` also serves /health /ready /metrics on HEALTH_PORT;
    `freeze_gc` (the server process) freezes the startup heap (`freeze_startup_objects`)."""
    settings = settings or ApiSettings()
    app = FastAPI(
        title="Discogsography API",
        version=API_VERSION,
        description="Explore the Discogs knowledge graph; accounts, Discogs sync and personal data.",
        lifespan=lifespan,
        docs_url="/docs" if settings.docs_enabled else None,
        redoc_url="/redoc" if settings.docs_enabled else None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
        responses=error_responses(500),
    )
    app.state.settings = settings
    app.state.start_health_server = start_health_server
    app.state.freeze_gc = freeze_gc
    for name in ("pg_pool", "redis", "neo4j", "secret_box", "sync_publisher"):
        setattr(app.state, name, None)

    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(MetricsMiddleware)
    install_error_handlers(app)

    @app.get("/health", response_model=HealthResponse, tags=["health"], summary="Process is alive")
    async def health(request: Request) -> dict[str, Any]:
        ready = request.app.state.pg_pool is not None
        return {
            "status": "healthy" if ready else "starting",
            "service": SERVICE,
            "timestamp": datetime.now(UTC),
        }

    @app.get(
        "/ready",
        response_model=ReadyResponse,
        tags=["health"],
        summary="PostgreSQL, Redis and Neo4j answer (503 otherwise)",
        responses={503: {"model": ReadyResponse, "description": "A dependency is down"}},
    )
    async def ready(request: Request) -> Response:
        if request.app.state.pg_pool is None:
            return JSONResponse({"status": "not_ready", "service": SERVICE, "checks": {}}, status_code=503)
        ok, checks = await run_ready_checks(ready_checks(request.app))
        body = {"status": "ready" if ok else "not_ready", "service": SERVICE, "checks": checks}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    for module in (auth, admin, oauth, sync, explore, snapshot, user):
        app.include_router(module.router)

    _use_error_envelope_in_openapi(app)

    # The web UI, registered after every API route so it never shadows one.
    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    return app
