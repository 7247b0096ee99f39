"""Broker helpers for the consumer tests: clean queues, publish messages, wait for outcomes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import quote

import aio_pika
import httpx

from common.amqp import (
    DATA_TYPES,
    declare_record_queues,
    declare_records_exchange,
    dlq_name,
    record_queue_name,
)
from common.clients import create_amqp_connection
from common.settings import AmqpSettings


async def reset_queues(connection: Any) -> None:
    """Declare both consumers' queues and empty them and their DLQs."""
    channel = await connection.channel()
    for consumer in ("graphinator", "tableinator"):
        await declare_record_queues(channel, consumer)
        for data_type in DATA_TYPES:
            for name in (
                record_queue_name(consumer, data_type),
                dlq_name(record_queue_name(consumer, data_type)),
            ):
                queue = await channel.declare_queue(name, passive=True)
                await queue.purge()
    await channel.close()


async def publish(connection: Any, data_type: str, bodies: Iterable[bytes]) -> int:
    channel = await connection.channel(publisher_confirms=True)
    exchange = await declare_records_exchange(channel)
    sent = [
        exchange.publish(
            aio_pika.Message(
                body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, content_type="application/json"
            ),
            routing_key=data_type,
        )
        for body in bodies
    ]
    await asyncio.gather(*sent)
    await channel.close()
    return len(sent)


async def drain(connection: Any, queue_name: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Take (and ack) every message currently in `queue_name`."""
    channel = await connection.channel()
    queue = await channel.declare_queue(queue_name, passive=True)
    out = []
    while (message := await queue.get(fail=False, timeout=5)) is not None:
        await message.ack()
        out.append(message)
    await channel.close()
    return out


async def queue_depth(connection: Any, queue_name: str) -> int:
    channel = await connection.channel()
    queue = await channel.declare_queue(queue_name, passive=True)
    count = int(queue.declaration_result.message_count or 0)
    await channel.close()
    return count


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 60.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await check():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.1)


async def new_connection() -> Any:
    return await create_amqp_connection(AmqpSettings(), attempts=3)


async def close_client_connections(product: str, at_least: int = 1) -> int:
    """Have RabbitMQ close the client connections whose `product` property is `product` (as a node
    restart or an operator would), through the management API, once at least `at_least` of them
    are listed; returns how many it closed."""
    settings = AmqpSettings()
    auth = (settings.rabbitmq_username, settings.rabbitmq_password.get_secret_value())
    async with httpx.AsyncClient(base_url=settings.rabbitmq_management_url, auth=auth, timeout=10) as api:
        names: list[str] = []
        for _ in range(100):
            names = [
                c["name"]
                for c in (await api.get("/api/connections")).json()
                if c.get("client_properties", {}).get("product") == product
            ]
            if len(names) >= at_least:
                break
            await asyncio.sleep(0.1)
        assert len(names) >= at_least, f"{len(names)} connections of {product}"
        for name in names:
            await api.delete(f"/api/connections/{quote(name, safe='')}")
    return len(names)
