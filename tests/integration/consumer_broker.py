"""Broker helpers for the consumer tests: clean queues, publish messages, wait for outcomes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aio_pika

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
