"""Fixtures for the api integration tests: an app (real lifespan, real stores of this stack),
an httpx client over ASGI, the fixture graph, and helpers to make users and tokens."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from neo4j import AsyncDriver
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api.api import create_app
from api.queries.user_queries import set_admin
from api.settings import ApiSettings
from tests.integration.api.graph_fixture import load_graph

PgPool = AsyncConnectionPool[AsyncConnection[dict[str, Any]]]


def make_settings(**overrides: Any) -> ApiSettings:
    """Settings for this stack (env from scripts/stack-env.sh) with test-friendly limits."""
    values: dict[str, Any] = {
        "JWT_SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789-ab",  # >= 48 bytes: HS384 too
        "LOGIN_RATE_LIMIT": 100_000,
        "REGISTER_RATE_LIMIT": 100_000,
        "SNAPSHOT_RATE_LIMIT": 100_000,
        "CONNECT_ATTEMPTS": 2,
    }
    values.update(overrides)
    return ApiSettings(**values)


@asynccontextmanager
async def running_app(
    settings: ApiSettings, **kwargs: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings, **kwargs)
    async with LifespanManager(app, startup_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield app, client


@pytest.fixture(scope="module")
async def api_settings() -> ApiSettings:
    return make_settings()


@pytest.fixture(scope="module")
async def graph(neo4j_driver: AsyncDriver) -> AsyncDriver:
    """The fixture graph, loaded once per test module into an emptied database."""
    async with neo4j_driver.session() as session:
        await (
            await session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS")
        ).consume()
    await load_graph(neo4j_driver)
    return neo4j_driver


@pytest.fixture(scope="module")
async def app_client(
    api_settings: ApiSettings, redis_client: aioredis.Redis
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    await redis_client.flushdb()
    async with running_app(api_settings) as pair:
        yield pair


@pytest.fixture(scope="module")
async def client(app_client: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return app_client[1]


UserMaker = Callable[..., Awaitable[tuple[str, str]]]


@pytest.fixture(scope="module")
async def make_user(client: httpx.AsyncClient, pg_pool: PgPool) -> UserMaker:
    """Register and log in a fresh user; returns (user id, bearer token)."""

    async def make(admin: bool = False, password: str = "correct horse battery") -> tuple[str, str]:
        email = f"user-{uuid.uuid4().hex[:12]}@example.com"
        resp = await client.post("/api/auth/register", json={"email": email, "password": password})
        assert resp.status_code == 201, resp.text
        if admin:
            async with pg_pool.connection() as conn:
                assert await set_admin(conn, email, True)
        resp = await client.post("/api/auth/login", json={"email": email, "password": password})
        assert resp.status_code == 200, resp.text
        token = resp.json()["access_token"]
        return _sub(token), token

    return make


def _sub(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_envelope(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert set(body) == {"error", "code", "detail"}, body
    assert isinstance(body["error"], str) and body["error"]
    if code is not None:
        assert body["code"] == code, body
    return body
