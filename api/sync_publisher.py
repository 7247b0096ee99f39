"""Publishing sync requests to RabbitMQ (design §4: `discogsography.sync` -> `curator.sync-requests`).

The api must not die because the broker is down: the lifespan tries to connect once, and
`publish` (re)connects lazily. Every message is persistent and confirmed by the broker (publisher
confirms; `mandatory`, and a sync queue deleted while the api runs is declared again, so a
request is never confirmed and dropped).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Annotated

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from fastapi import Depends, Request

from api.errors import ApiError
from common.amqp import SYNC_ROUTING_KEY, declare_sync_topology, open_confirming_channel, publish_routed
from common.clients import create_amqp_connection
from common.logging import get_logger
from common.messages import SyncRequest
from common.settings import AmqpSettings

log = get_logger(__name__)


class SyncPublisherError(Exception):
    """The broker could not take the sync request."""


class SyncPublisher:
    def __init__(self, settings: AmqpSettings, connect_attempts: int = 1) -> None:
        self.settings = settings
        self.connect_attempts = connect_attempts
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Connect now if the broker answers; otherwise the first publish tries again."""
        try:
            await self._ensure()
        except Exception as exc:  # the api serves everything else without the broker
            log.warning("sync_publisher_not_connected", error=str(exc))

    async def _ensure(self) -> tuple[AbstractChannel, AbstractExchange]:
        async with self._lock:
            if self._exchange is not None and self._channel is not None and not self._channel.is_closed:
                return self._channel, self._exchange
            if self._connection is None or self._connection.is_closed:
                self._connection = await create_amqp_connection(self.settings, attempts=self.connect_attempts)
            self._channel = await open_confirming_channel(self._connection)
            self._exchange, _ = await declare_sync_topology(self._channel)
            return self._channel, self._exchange

    async def publish(self, request: SyncRequest) -> None:
        try:
            channel, exchange = await self._ensure()
            message = aio_pika.Message(
                request.to_bytes(),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                content_type="application/json",
                message_id=request.sync_id,
            )
            redeclare = functools.partial(declare_sync_topology, channel)
            await publish_routed(exchange, message, SYNC_ROUTING_KEY, redeclare, timeout=10)
        except Exception as exc:
            self._exchange = None  # reopen the channel next time
            raise SyncPublisherError(str(exc) or type(exc).__name__) from exc

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


async def get_sync_publisher(request: Request) -> SyncPublisher:
    publisher: SyncPublisher | None = getattr(request.app.state, "sync_publisher", None)
    if publisher is None:
        raise ApiError(503, "service_unavailable", "Service not ready")
    return publisher


SyncPublisherDep = Annotated[SyncPublisher, Depends(get_sync_publisher)]
