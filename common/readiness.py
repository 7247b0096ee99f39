"""Readiness probes for each store, built from live clients (used by every /ready)."""

from __future__ import annotations

from typing import Any

import aio_pika
import redis.asyncio as aioredis
from neo4j import AsyncDriver
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from common.health import ReadyCheck


def neo4j_check(driver: AsyncDriver) -> ReadyCheck:
    async def check() -> None:
        await driver.verify_connectivity()

    return check


def postgres_check(pool: AsyncConnectionPool[AsyncConnection[dict[str, Any]]]) -> ReadyCheck:
    async def check() -> None:
        async with pool.connection(timeout=2.0) as conn:
            await conn.execute("SELECT 1")

    return check


def redis_check(client: aioredis.Redis) -> ReadyCheck:
    async def check() -> None:
        await client.ping()

    return check


def amqp_check(connection: aio_pika.abc.AbstractRobustConnection) -> ReadyCheck:
    async def check() -> None:
        if connection.is_closed:
            raise ConnectionError("AMQP connection is closed (reconnecting)")
        # A robust connection reports "open" while it is still reconnecting; a channel proves it.
        channel = await connection.channel()
        await channel.close()

    return check
