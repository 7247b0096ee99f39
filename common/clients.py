"""Client factories for the stores and the broker. Called from a lifespan or worker start-up,
never at import time; each retries a bounded number of times and then fails with one line that
names the address it could not reach."""

from __future__ import annotations

from typing import Any

import aio_pika
import redis.asyncio as aioredis
from neo4j import AsyncDriver, AsyncGraphDatabase, NotificationDisabledClassification
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from common.retry import connect_with_retry
from common.settings import AmqpSettings, Neo4jSettings, PostgresSettings, RedisSettings


def _redact_amqp(url: str) -> str:
    """amqp://user:pass@host:port/vhost -> amqp://host:port/vhost (never log a password)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


async def create_neo4j_driver(
    settings: Neo4jSettings, attempts: int = 10, **driver_options: Any
) -> AsyncDriver:
    """An async Neo4j driver whose connectivity has been verified.

    Notifications of the UNRECOGNIZED class are off: our statements are constants, so "this label
    or property does not exist (yet)" only means a young store (every query of a fresh database
    logged one: graphinator's hash check reads `sha256` before the first record is written)."""
    options: dict[str, Any] = {
        "max_connection_pool_size": 50,
        "connection_acquisition_timeout": 30.0,
        "notifications_disabled_classifications": [NotificationDisabledClassification.UNRECOGNIZED],
        **driver_options,
    }

    async def connect() -> AsyncDriver:
        driver = AsyncGraphDatabase.driver(
            settings.neo4j_uri,
            auth=(settings.neo4j_username, settings.neo4j_password.get_secret_value()),
            **options,
        )
        try:
            await driver.verify_connectivity()
        except BaseException:
            await driver.close()
            raise
        return driver

    return await connect_with_retry("neo4j", settings.neo4j_uri, connect, attempts)


async def create_postgres_pool(
    settings: PostgresSettings, min_size: int = 1, max_size: int = 10, attempts: int = 10
) -> AsyncConnectionPool[AsyncConnection[dict[str, Any]]]:
    """An open psycopg pool whose connections return rows as dicts."""
    host, port = settings.postgres_host_port

    async def connect() -> AsyncConnectionPool[AsyncConnection[dict[str, Any]]]:
        pool: AsyncConnectionPool[AsyncConnection[dict[str, Any]]] = AsyncConnectionPool(
            settings.postgres_conninfo(),
            min_size=min_size,
            max_size=max_size,
            open=False,
            kwargs={"row_factory": dict_row},
            connection_class=AsyncConnection[dict[str, Any]],
            timeout=10.0,
            name="discogsography",
        )
        try:
            await pool.open(wait=True, timeout=10.0)
        except BaseException:
            await pool.close()
            raise
        return pool

    return await connect_with_retry("postgresql", f"{host}:{port}", connect, attempts)


async def create_redis(settings: RedisSettings, attempts: int = 10) -> aioredis.Redis:
    """A Redis client (str responses) that has answered PING."""

    async def connect() -> aioredis.Redis:
        client = aioredis.from_url(settings.redis_url, decode_responses=True, socket_connect_timeout=5)
        try:
            await client.ping()
        except BaseException:
            await client.aclose()
            raise
        return client

    return await connect_with_retry("redis", settings.redis_url, connect, attempts)


async def create_amqp_connection(
    settings: AmqpSettings, attempts: int = 10
) -> aio_pika.abc.AbstractRobustConnection:
    """A robust aio-pika connection (it reconnects by itself after the first success)."""
    url = settings.amqp_url.get_secret_value()

    async def connect() -> aio_pika.abc.AbstractRobustConnection:
        return await aio_pika.connect_robust(url, timeout=10)

    return await connect_with_retry("rabbitmq", _redact_amqp(url), connect, attempts)
