"""Health, readiness (503 when a store is down), metrics, OpenAPI, static UI and error envelope."""

from __future__ import annotations

import os
import subprocess

import httpx
import pytest
import redis.asyncio as aioredis

from api.api import create_app
from tests.conftest import REPO_ROOT, free_port
from tests.integration.api.conftest import assert_envelope, make_settings, running_app

pytestmark = pytest.mark.integration


async def test_health_ready_and_metrics(client: httpx.AsyncClient) -> None:
    resp = await client.get("/health")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "healthy" and body["service"] == "api" and body["timestamp"]
    resp = await client.get("/ready")
    assert resp.status_code == 200
    assert resp.json()["checks"] == {"postgresql": "ok", "redis": "ok", "neo4j": "ok"}
    resp = await client.get("/metrics")
    assert resp.status_code == 200 and "api_http_requests_total" in resp.text


async def test_separate_health_server(redis_client: aioredis.Redis) -> None:
    port = free_port()
    settings = make_settings(HEALTH_PORT=port)
    async with running_app(settings, start_health_server=True), httpx.AsyncClient() as http:
        base = f"http://127.0.0.1:{port}"
        assert (await http.get(f"{base}/health")).json()["service"] == "api"
        ready = await http.get(f"{base}/ready")
        assert ready.status_code == 200 and set(ready.json()["checks"]) == {"postgresql", "redis", "neo4j"}
        assert (await http.get(f"{base}/metrics")).status_code == 200


def _infra(action: str) -> None:
    subprocess.run([str(REPO_ROOT / "scripts" / "infra.sh"), action], check=True, env=os.environ, timeout=120)


async def test_ready_is_503_while_redis_is_down(redis_client: aioredis.Redis) -> None:
    port = free_port()
    async with running_app(make_settings(HEALTH_PORT=port), start_health_server=True) as (_, client):
        _infra("stop-redis")
        try:
            resp = await client.get("/ready")
            assert resp.status_code == 503
            assert resp.json()["status"] == "not_ready" and resp.json()["checks"]["redis"] != "ok"
            assert resp.json()["checks"]["postgresql"] == "ok"
            async with httpx.AsyncClient() as http:
                assert (await http.get(f"http://127.0.0.1:{port}/ready")).status_code == 503
                assert (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200
            # Routes that need Redis answer 503 in the envelope, never 500.
            resp = await client.post("/api/auth/login", json={"email": "a@b.co", "password": "x"})
            assert_envelope(resp, 503, "redis_unavailable")
        finally:
            _infra("start-redis")
            await redis_client.connection_pool.disconnect()  # the shared client reconnects cleanly
        resp = await client.get("/ready")
        assert resp.status_code == 200


def test_openapi_documents_every_route_and_the_error_envelope() -> None:
    spec = create_app(make_settings()).openapi()
    paths = spec["paths"]
    for path in [
        "/health", "/ready", "/api/auth/register", "/api/auth/login", "/api/auth/me", "/api/auth/logout",
        "/api/admin/config", "/api/admin/config/{key}", "/api/autocomplete", "/api/explore", "/api/expand",
        "/api/node/{node_id}", "/api/trends", "/api/snapshot", "/api/snapshot/{token}",
        "/api/user/collection", "/api/user/wantlist", "/api/user/recommendations",
        "/api/user/collection/stats", "/api/user/status",
    ]:  # fmt: skip
        assert path in paths, path
    assert "ErrorResponse" in spec["components"]["schemas"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    ref = paths["/api/expand"]["get"]["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/ErrorResponse")


async def test_unknown_routes_and_methods_use_the_envelope(client: httpx.AsyncClient) -> None:
    assert_envelope(await client.get("/api/nope"), 404, "not_found")
    assert_envelope(await client.delete("/api/explore"), 405, "method_not_allowed")


async def test_static_ui_is_served_at_root(client: httpx.AsyncClient) -> None:
    resp = await client.get("/")
    assert resp.status_code == 200 and "text/html" in resp.headers["content-type"]
    assert "Discogsography" in resp.text
