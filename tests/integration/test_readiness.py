"""`/ready` turns 503 while a store is stopped and 200 once it is back (common.health + readiness).

Each case really stops one local store with `scripts/infra.sh stop-<store>` and starts it again,
so it runs against the stack of the current environment (see scripts/stack-env.sh).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from neo4j import AsyncDriver
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from common.health import HealthServer
from common.readiness import amqp_check, neo4j_check, postgres_check, redis_check
from tests.conftest import REPO_ROOT, free_port

pytestmark = pytest.mark.integration


def infra(action: str) -> None:
    subprocess.run(
        [str(REPO_ROOT / "scripts" / "infra.sh"), action], check=True, capture_output=True, timeout=240
    )


@pytest.fixture
async def health_url(
    neo4j_driver: AsyncDriver,
    pg_pool: AsyncConnectionPool[AsyncConnection[dict[str, Any]]],
    redis_client: aioredis.Redis,
    amqp_connection: Any,
) -> AsyncIterator[str]:
    port = free_port()
    server = HealthServer(
        "readiness-test",
        "127.0.0.1",
        port,
        ready_checks={
            "neo4j": neo4j_check(neo4j_driver),
            "postgres": postgres_check(pg_pool),
            "redis": redis_check(redis_client),
            "rabbitmq": amqp_check(amqp_connection),
        },
    )
    await server.start()
    yield f"http://127.0.0.1:{port}"
    await server.stop()


async def wait_for_status(
    client: httpx.AsyncClient, url: str, status: int, timeout: float = 90
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await client.get(url)
        if response.status_code == status:
            body: dict[str, Any] = response.json()
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{url} stayed {response.status_code}: {response.text}")
        await asyncio.sleep(0.5)


@pytest.mark.parametrize("store", ["redis", "postgres", "rabbitmq", "neo4j"])
async def test_ready_is_503_while_a_store_is_down(health_url: str, store: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        body = await wait_for_status(client, f"{health_url}/ready", 200)
        assert set(body["checks"].values()) == {"ok"}
        assert (await client.get(f"{health_url}/health")).status_code == 200

        await asyncio.to_thread(infra, f"stop-{store}")
        try:
            body = await wait_for_status(client, f"{health_url}/ready", 503)
            assert body["checks"][store] != "ok"
            # /health only says the process is alive; it stays 200.
            assert (await client.get(f"{health_url}/health")).status_code == 200
        finally:
            await asyncio.to_thread(infra, f"start-{store}")
        body = await wait_for_status(client, f"{health_url}/ready", 200)
        assert body["checks"][store] == "ok"


async def test_metrics_are_prometheus_text(health_url: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{health_url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "python_info" in response.text
