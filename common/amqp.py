"""The AMQP topology of design §4, declared in one place.

Records flow through the topic exchange `discogsography.records` with the data type as routing
key into one quorum queue per (consumer, type). Each queue dead-letters into its *own* DLQ via the
default exchange (`x-dead-letter-routing-key = <queue>.dlq`), so one consumer's failures never
land in another's DLQ. Sync requests use `discogsography.sync` -> `curator.sync-requests`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, Literal

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractMessage, AbstractQueue
from aio_pika.exceptions import PublishError

DATA_TYPES: Final = ("artists", "labels", "masters", "releases")
DataType = Literal["artists", "labels", "masters", "releases"]
RecordConsumer = Literal["graphinator", "tableinator"]

RECORDS_EXCHANGE: Final = "discogsography.records"
SYNC_EXCHANGE: Final = "discogsography.sync"
SYNC_QUEUE: Final = "curator.sync-requests"
SYNC_ROUTING_KEY: Final = "sync.request"
DEFAULT_DELIVERY_LIMIT: Final = 5
# Header a consumer sets on a message it dead-letters itself (it republishes with the reason).
DLQ_REASON_HEADER: Final = "x-discogsography-error"


def record_queue_name(consumer: RecordConsumer, data_type: str) -> str:
    return f"{consumer}.{data_type}"


def dlq_name(queue: str) -> str:
    return f"{queue}.dlq"


async def _declare_queue_with_dlq(
    channel: AbstractChannel, queue: str, delivery_limit: int
) -> tuple[AbstractQueue, AbstractQueue]:
    dlq = await channel.declare_queue(dlq_name(queue), durable=True, arguments={"x-queue-type": "quorum"})
    main = await channel.declare_queue(
        queue,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": delivery_limit,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dlq_name(queue),
        },
    )
    return main, dlq


async def declare_records_exchange(channel: AbstractChannel) -> AbstractExchange:
    return await channel.declare_exchange(RECORDS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)


async def declare_record_queues(
    channel: AbstractChannel,
    consumer: RecordConsumer,
    data_types: tuple[str, ...] = DATA_TYPES,
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT,
) -> dict[str, AbstractQueue]:
    """Declare `<consumer>.<type>` (+ DLQ) for each type, bound to the records exchange; idempotent."""
    exchange = await declare_records_exchange(channel)
    queues: dict[str, AbstractQueue] = {}
    for data_type in data_types:
        main, _ = await _declare_queue_with_dlq(
            channel, record_queue_name(consumer, data_type), delivery_limit
        )
        await main.bind(exchange, routing_key=data_type)
        queues[data_type] = main
    return queues


async def declare_all_record_topology(
    channel: AbstractChannel, delivery_limit: int = DEFAULT_DELIVERY_LIMIT
) -> None:
    """Everything the extractor needs to exist before publishing, so no record is unroutable."""
    for consumer in ("graphinator", "tableinator"):
        await declare_record_queues(channel, consumer, delivery_limit=delivery_limit)


async def declare_sync_topology(
    channel: AbstractChannel, delivery_limit: int = DEFAULT_DELIVERY_LIMIT
) -> tuple[AbstractExchange, AbstractQueue]:
    exchange = await channel.declare_exchange(SYNC_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True)
    main, _ = await _declare_queue_with_dlq(channel, SYNC_QUEUE, delivery_limit)
    await main.bind(exchange, routing_key=SYNC_ROUTING_KEY)
    return exchange, main


async def open_confirming_channel(connection: AbstractConnection) -> AbstractChannel:
    """A channel whose publishes wait for the broker's confirm and raise `PublishError` when a
    `mandatory` message comes back unroutable. aio-pika's default (`on_return_raises=False`) has
    the broker return the message and then confirm it, so `publish` succeeds and the message is
    gone."""
    return await connection.channel(publisher_confirms=True, on_return_raises=True)


async def publish_routed(
    exchange: AbstractExchange,
    message: AbstractMessage,
    routing_key: str,
    redeclare: Callable[[], Awaitable[object]],
    timeout: float | None = None,
) -> None:
    """Publish `message` (`mandatory`, on a channel from `open_confirming_channel`). When no queue
    takes it (one was deleted by hand while we ran), declare the topology again with `redeclare`
    and publish once more; a second return raises `PublishError`, so the caller never treats a
    dropped message as delivered."""
    try:
        await exchange.publish(message, routing_key=routing_key, mandatory=True, timeout=timeout)
    except PublishError:
        await redeclare()
        await exchange.publish(message, routing_key=routing_key, mandatory=True, timeout=timeout)
