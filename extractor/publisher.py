"""Pipelined, confirmed publishing to RabbitMQ (design §4, pipeline.md §10 items 5 and 20).

Many publishes are in flight at once (a window, default 2,000); each is tracked with the ordinal
of the record it belongs to. `confirmed_ordinal` is the highest ordinal such that it and every
ordinal before it were confirmed by the broker; that is what the state marker may record. A nack,
an unroutable return (`mandatory`) or a channel error fails the publisher: the caller marks the
file failed and the next run resumes after the last confirmed ordinal.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Final

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection
from pamqp.commands import Basic

from common.amqp import DLQ_REASON_HEADER, RECORDS_EXCHANGE, declare_all_record_topology, dlq_name
from common.logging import get_logger

log = get_logger(__name__)

CONSUMERS: Final = ("graphinator", "tableinator")
_CONTENT_TYPE: Final = "application/json"


class PublishError(Exception):
    """The broker refused (nack), returned (unroutable) or lost a message."""


class RecordPublisher:
    """One connection and one confirm channel; `publish()` returns once the message is written
    and the window has room, not when it is confirmed."""

    def __init__(self, amqp_url: str, window: int = 2000) -> None:
        self.amqp_url = amqp_url
        self.window = max(1, window)
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._raw: Any = None  # the aiormq channel under aio-pika (the fast publish path)
        self._inflight: deque[tuple[int, asyncio.Future[Any]]] = deque()
        self._confirmed_ordinal = 0
        self._failure: BaseException | None = None
        self._seq = 0
        self.published = 0
        self.confirmed = 0

    # --- lifecycle ---------------------------------------------------------------------------

    async def connect(self) -> None:
        self._connection = await aio_pika.connect(self.amqp_url, timeout=15)
        self._channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        await declare_all_record_topology(self._channel)
        self._raw = await self._channel.get_underlay_channel()

    async def ping(self) -> None:
        """Raise unless the connection and channel are open (readiness)."""
        if self._connection is None or self._connection.is_closed:
            raise ConnectionError("not connected to RabbitMQ")
        if self._channel is None or self._channel.is_closed:
            raise ConnectionError("RabbitMQ channel closed")

    async def close(self) -> None:
        if self._connection is not None and not self._connection.is_closed:
            await self._connection.close()
        self._connection = None
        self._channel = None
        self._raw = None

    async def __aenter__(self) -> RecordPublisher:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- publishing --------------------------------------------------------------------------

    def reset_ordinals(self, start: int) -> None:
        """Begin a new file: ordinals restart after `start` (what earlier runs confirmed)."""
        if self._inflight:
            raise RuntimeError("reset_ordinals with publishes in flight")
        self._confirmed_ordinal = start

    @property
    def confirmed_ordinal(self) -> int:
        """Highest ordinal confirmed together with all before it (never raises)."""
        self._advance()
        return self._confirmed_ordinal

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def _advance(self) -> None:
        inflight = self._inflight
        while inflight and inflight[0][1].done():
            ordinal, fut = inflight.popleft()
            if fut.cancelled():
                self._fail(PublishError(f"publish of record #{ordinal} was cancelled"))
            elif (exc := fut.exception()) is not None:
                self._fail(PublishError(f"record #{ordinal} not confirmed: {exc!r}"))
            if self._failure is None:
                self._confirmed_ordinal = ordinal

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc

    async def _send(
        self, body: bytes, exchange: str, routing_key: str, headers: dict[str, Any] | None
    ) -> None:
        self._seq += 1
        properties = Basic.Properties(
            content_type=_CONTENT_TYPE,
            delivery_mode=2,
            message_id=str(self._seq),
            headers=headers,
        )
        result = await self._raw.basic_publish(
            body, exchange=exchange, routing_key=routing_key, properties=properties, mandatory=True
        )
        if isinstance(result, Basic.Nack):
            raise PublishError(f"broker nacked the message to {exchange or '(default)'}/{routing_key}")
        self.confirmed += 1

    async def publish(
        self,
        body: bytes,
        routing_key: str,
        ordinal: int,
        *,
        exchange: str = RECORDS_EXCHANGE,
        headers: dict[str, Any] | None = None,
    ) -> None:
        """Send one persistent JSON message; ordinals must not decrease."""
        if self._raw is None:
            raise PublishError("publisher is not connected")
        if self._failure is not None:
            raise self._failure
        # The window bounds what is tracked, not what is unconfirmed: a slow oldest message (a big
        # one) holds the resume point back however many after it were confirmed.
        while len(self._inflight) >= self.window:
            await self.wait_oldest()
        task = asyncio.ensure_future(self._send(body, exchange, routing_key, headers))
        self._inflight.append((ordinal, task))
        self.published += 1

    async def publish_dead_letter(self, body: bytes, data_type: str, reason: str, ordinal: int) -> None:
        """A malformed record goes straight to BOTH consumers' DLQs of its type, with the reason."""
        headers = {DLQ_REASON_HEADER: reason[:1000], "x-discogsography-type": data_type}
        for consumer in CONSUMERS:
            await self.publish(
                body, dlq_name(f"{consumer}.{data_type}"), ordinal, exchange="", headers=headers
            )

    async def wait_oldest(self) -> None:
        """Wait until the oldest message in flight is settled (confirmed or failed)."""
        if self._inflight:
            await asyncio.wait([self._inflight[0][1]])
        self._advance()
        if self._failure is not None:
            raise self._failure

    async def flush(self) -> int:
        """Wait until every message in flight is confirmed; return the confirmed ordinal."""
        if self._inflight:
            await asyncio.wait([fut for _, fut in self._inflight])
        self._advance()
        if self._failure is not None:
            raise self._failure
        return self._confirmed_ordinal
