"""Shared fixtures: real clients for the local stores, built through the `common` factories.

A test that needs a store fails (never skips) when the store cannot be reached: run
`make infra-up` first, or `make test`, which does it for you.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from neo4j import AsyncDriver
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from common.clients import create_amqp_connection, create_neo4j_driver, create_postgres_pool, create_redis
from common.settings import AmqpSettings, Neo4jSettings, PostgresSettings, RedisSettings
from tableinator.writer import seen_table

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES = REPO_ROOT / "samples"
ENTITY_TABLES = ("artists", "labels", "masters", "releases")
# each entity table's marks of the dump a record was last seen in
SEEN_TABLES = tuple(map(seen_table, ENTITY_TABLES))
USER_TABLES = ("sync_history", "user_collections", "user_wantlists", "oauth_tokens", "app_config", "users")


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A currently free TCP port on loopback, for services a test starts itself. Never the same
    port twice in a session: the kernel may offer a just-closed port again, and a test that asks
    for two ports before starting either server then bound both to one (seen in CI)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def neo4j_settings() -> Neo4jSettings:
    return Neo4jSettings()


@pytest.fixture(scope="session")
def postgres_settings() -> PostgresSettings:
    return PostgresSettings()


@pytest.fixture(scope="session")
def redis_settings() -> RedisSettings:
    return RedisSettings()


@pytest.fixture(scope="session")
def amqp_settings() -> AmqpSettings:
    return AmqpSettings()


@pytest.fixture(scope="session")
async def neo4j_driver(neo4j_settings: Neo4jSettings) -> AsyncIterator[AsyncDriver]:
    driver = await create_neo4j_driver(neo4j_settings, attempts=3)
    yield driver
    await driver.close()


@pytest.fixture(scope="session")
async def pg_pool(
    postgres_settings: PostgresSettings,
) -> AsyncIterator[AsyncConnectionPool[AsyncConnection[dict[str, Any]]]]:
    pool = await create_postgres_pool(postgres_settings, attempts=3, max_size=10)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def redis_client(redis_settings: RedisSettings) -> AsyncIterator[aioredis.Redis]:
    client = await create_redis(redis_settings, attempts=3)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
async def amqp_connection(amqp_settings: AmqpSettings) -> AsyncIterator[Any]:
    connection = await create_amqp_connection(amqp_settings, attempts=3)
    yield connection
    await connection.close()


@pytest.fixture
async def clean_neo4j(neo4j_driver: AsyncDriver) -> AsyncDriver:
    """An empty graph (schema kept) for this test."""
    async with neo4j_driver.session() as session:
        await (
            await session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS")
        ).consume()
    return neo4j_driver


@pytest.fixture
async def clean_postgres(
    pg_pool: AsyncConnectionPool[AsyncConnection[dict[str, Any]]],
) -> AsyncConnectionPool[AsyncConnection[dict[str, Any]]]:
    """Empty entity and user tables (schema kept) for this test."""
    async with pg_pool.connection() as conn:
        await conn.execute(f"TRUNCATE {', '.join(ENTITY_TABLES + SEEN_TABLES + USER_TABLES)} CASCADE")
    return pg_pool


@pytest.fixture
async def clean_redis(redis_client: aioredis.Redis) -> aioredis.Redis:
    await redis_client.flushdb()
    return redis_client


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}
