"""A lean AMQP 0-9-1 consumer for the hot path of graphinator/tableinator (one queue per connection).

aio-pika/aiormq cost 40-60 µs of CPU per delivery here (three generic frame decodes, an
IncomingMessage, a task per delivery, a future per ack), which alone caps one process near
15-20k messages/s. This consumer reads the socket in large chunks and decodes the three frames of
a delivery by hand (a few µs): the callback gets a `Delivery` (delivery tag, body, routing key,
raw content-header payload, decoded on demand). Acks are written as pre-packed frames; a whole
batch is settled by one `basic.ack(multiple=True)`. Everything that is not a delivery is decoded
with pamqp (aio-pika's own codec). The topology is declared by the caller (through aio-pika).

Delivery tags belong to one connection: each (re)connection has a new `generation`, and an ack
for a delivery of an older generation is dropped (the broker redelivers those; writes are
idempotent). When the connection is lost, `on_lost` is called and `start()` may be called again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from pamqp import commands, frame
from pamqp.common import FieldTable
from pamqp.header import ContentHeader, ProtocolHeader

from common.logging import get_logger

log = get_logger(__name__)

_CHANNEL: Final = 1
_HEAD: Final = struct.Struct(">BHI")
_CLASS_METHOD: Final = struct.Struct(">HH")
_U64: Final = struct.Struct(">Q")
_ACK: Final = struct.Struct(">BHIHHQB")  # method frame: Basic.Ack (60, 80), delivery tag, multiple
_FRAME_END: Final = 0xCE
_READ_CHUNK: Final = 1 << 18


@dataclass(frozen=True, slots=True)
class AmqpAddress:
    host: str
    port: int
    user: str
    password: str
    vhost: str

    @classmethod
    def from_url(cls, amqp_url: str, who: str) -> AmqpAddress:
        parts = urlsplit(amqp_url)
        if parts.scheme != "amqp":
            raise ValueError(f"{who} speaks plain amqp:// only")
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5672,
            user=unquote(parts.username or "guest"),
            password=unquote(parts.password or "guest"),
            vhost=unquote(path) if path else "/",
        )


async def read_method(reader: asyncio.StreamReader) -> Any:
    """The next method frame (decoded by pamqp), skipping heartbeats and other frames."""
    while True:
        head = await reader.readexactly(7)
        kind, _, size = _HEAD.unpack(head)
        payload = await reader.readexactly(size + 1)
        if kind == 1:
            return frame.unmarshal(head + payload)[2]


async def open_channel(
    address: AmqpAddress, product: str, capabilities: FieldTable, timeout: float = 15.0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    """TCP connect, AMQP handshake (PLAIN, heartbeats off: TCP keepalive detects dead peers) and
    channel 1 opened; returns (reader, writer, frame_max). Used by the lean consumer and the
    extractor's lean publisher, which then set their own channel mode (qos / confirms)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(address.host, address.port), timeout)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def send(value: Any, channel: int) -> None:
        writer.write(frame.marshal(value, channel))

    async def handshake() -> int:
        writer.write(ProtocolHeader().marshal())
        start = await read_method(reader)
        if not isinstance(start, commands.Connection.Start):
            raise ConnectionError(f"unexpected AMQP frame {start!r}")
        send(
            commands.Connection.StartOk(
                client_properties={"product": product, "capabilities": capabilities},
                mechanism="PLAIN",
                response=f"\0{address.user}\0{address.password}",
                locale="en_US",
            ),
            0,
        )
        tune = await read_method(reader)
        if isinstance(tune, commands.Connection.Close):
            raise ConnectionError(f"RabbitMQ refused the connection: {tune.reply_text}")
        if not isinstance(tune, commands.Connection.Tune):
            raise ConnectionError(f"unexpected AMQP frame {tune!r}")
        frame_max = min(tune.frame_max or 131072, 131072)
        send(commands.Connection.TuneOk(channel_max=tune.channel_max, frame_max=frame_max, heartbeat=0), 0)
        send(commands.Connection.Open(virtual_host=address.vhost), 0)
        opened = await read_method(reader)
        if not isinstance(opened, commands.Connection.OpenOk):
            raise ConnectionError(f"cannot open vhost {address.vhost!r}: {opened!r}")
        send(commands.Channel.Open(), _CHANNEL)
        if not isinstance(await read_method(reader), commands.Channel.OpenOk):
            raise ConnectionError("cannot open a channel")
        return frame_max

    try:
        frame_max = await asyncio.wait_for(handshake(), timeout)
    except BaseException:
        writer.close()
        raise
    return reader, writer, frame_max


@dataclass(slots=True)
class Delivery:
    tag: int
    body: bytes
    routing_key: str
    redelivered: bool
    raw_properties: bytes
    generation: int

    def properties(self) -> commands.Basic.Properties:
        """The message properties (headers, content type, message id), decoded from the header frame."""
        header = ContentHeader()
        header.unmarshal(self.raw_properties)
        return header.properties


class LeanConsumer:
    """Consume one queue on its own connection and hand every delivery to `on_delivery`."""

    def __init__(
        self,
        amqp_url: str,
        queue: str,
        prefetch: int,
        on_delivery: Callable[[Delivery], None],
        on_lost: Callable[[BaseException], None],
        consumer_tag: str | None = None,
    ) -> None:
        self._address = AmqpAddress.from_url(amqp_url, "LeanConsumer")
        self.queue = queue
        self.prefetch = prefetch
        self._on_delivery = on_delivery
        self._on_lost = on_lost
        self.consumer_tag = consumer_tag or f"{queue}-{os.getpid()}-{id(self):x}"
        self.generation = 0
        self.connected = False
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._read_task: asyncio.Task[None] | None = None
        self._replies: asyncio.Queue[Any] = asyncio.Queue()
        # One exchange that waits for a reply at a time (consume, prefetch change, cancel, close).
        self._exchange = asyncio.Lock()
        self._cancelled = False
        self._resize: asyncio.Task[None] | None = None
        # The delivery being assembled from its frames.
        self._tag = 0
        self._routing_key = ""
        self._redelivered = False
        self._props = b""
        self._size = 0
        self._parts: list[bytes] = []
        self._got = 0

    # ---- connection --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, open the channel, set the prefetch and start consuming."""
        await self.close()
        self._replies = asyncio.Queue()
        self._cancelled = False
        capabilities: FieldTable = {"consumer_cancel_notify": True, "connection.blocked": True}
        self._reader, self._writer, _ = await open_channel(
            self._address, "discogsography-consumer", capabilities
        )
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        try:
            self._send(commands.Basic.Qos(prefetch_count=min(self.prefetch, 65535)))
            if not isinstance(await asyncio.wait_for(read_method(self._reader), 15), commands.Basic.QosOk):
                raise ConnectionError("basic.qos refused")
        except BaseException:
            await self.close()
            raise
        self.generation += 1
        self.connected = True
        self._parts = []
        self._read_task = asyncio.create_task(self._read_loop(self.generation), name=f"amqp-{self.queue}")
        self._send(
            commands.Basic.Consume(queue=self.queue, consumer_tag=self.consumer_tag, no_ack=False),
        )
        reply = await asyncio.wait_for(self._replies.get(), 15)
        if not isinstance(reply, commands.Basic.ConsumeOk):
            await self.close()
            raise ConnectionError(f"cannot consume {self.queue!r}: {reply!r}")

    def set_prefetch(self, prefetch: int) -> None:
        """Change the prefetch of the running consumer (in the background) and of the next
        connection. RabbitMQ applies a basic.qos only to consumers started after it, so the
        consumer is cancelled and started again on the same channel: deliveries already received
        stay valid and are acked as before (their tags belong to the channel)."""
        prefetch = max(1, prefetch)
        if prefetch == self.prefetch:
            return
        self.prefetch = prefetch
        if self.connected and not self._cancelled and (self._resize is None or self._resize.done()):
            self._resize = asyncio.get_running_loop().create_task(self._reconsume(self.generation))

    async def _reconsume(self, generation: int) -> None:
        async with self._exchange:
            if self._cancelled or not self.connected or generation != self.generation:
                return
            try:
                prefetch = 0
                while prefetch != self.prefetch:  # it may change again meanwhile
                    self._send(commands.Basic.Cancel(consumer_tag=self.consumer_tag))
                    await self._reply(commands.Basic.CancelOk, 15)
                    prefetch = self.prefetch
                    self._send(commands.Basic.Qos(prefetch_count=min(prefetch, 65535)))
                    await self._reply(commands.Basic.QosOk, 15)
                    self._send(
                        commands.Basic.Consume(queue=self.queue, consumer_tag=self.consumer_tag, no_ack=False)
                    )
                    await self._reply(commands.Basic.ConsumeOk, 15)
            except (ConnectionError, TimeoutError) as exc:
                # A lost connection is handled by the read loop; the next start() uses the prefetch.
                log.warning(
                    "amqp_prefetch_change_failed", queue=self.queue, error=f"{type(exc).__name__}: {exc}"
                )
                return
            log.info("amqp_prefetch_changed", queue=self.queue, prefetch=prefetch)

    async def _reply(self, kind: type, timeout: float) -> Any:
        """The next reply of type `kind`; replies nobody waits for (a qos-ok) are skipped."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            reply = await asyncio.wait_for(self._replies.get(), max(0.01, left))
            if isinstance(reply, kind):
                return reply

    def _send(self, value: Any, channel: int = _CHANNEL) -> None:
        if self._writer is None or self._writer.is_closing():
            raise ConnectionError("not connected to RabbitMQ")
        self._writer.write(frame.marshal(value, channel))

    async def cancel(self, timeout: float = 5.0) -> None:
        """Stop the flow of deliveries (the ones already received are still delivered)."""
        self._cancelled = True  # a prefetch change waiting for its turn then does nothing
        if not self.connected:
            return
        async with self._exchange:
            with contextlib.suppress(Exception):
                self._send(commands.Basic.Cancel(consumer_tag=self.consumer_tag))
                await self._reply(commands.Basic.CancelOk, timeout)

    async def close(self) -> None:
        if self._resize is not None and self._resize is not asyncio.current_task():
            self._resize.cancel()
            with contextlib.suppress(BaseException):
                await self._resize
        self._resize = None
        writer, task = self._writer, self._read_task
        if writer is not None and self.connected:
            with contextlib.suppress(Exception):
                self._send(commands.Connection.Close(reply_code=200, reply_text="bye"), 0)
                await self._reply(commands.Connection.CloseOk, 5)
        self.connected = False
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self._read_task = None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        self._writer = None
        self._reader = None

    # ---- acks --------------------------------------------------------------------------------

    def ack(self, tag: int, generation: int, multiple: bool = False) -> bool:
        """Ack `tag` (and every earlier one with `multiple`); False if the delivery's connection is gone."""
        writer = self._writer
        if generation != self.generation or not self.connected or writer is None or writer.is_closing():
            return False
        writer.write(_ACK.pack(1, _CHANNEL, 13, 60, 80, tag, 1 if multiple else 0) + b"\xce")
        return True

    # ---- incoming frames ---------------------------------------------------------------------

    async def _read_loop(self, generation: int) -> None:
        reader = self._reader
        assert reader is not None
        buffer = bytearray()
        try:
            while True:
                chunk = await reader.read(_READ_CHUNK)
                if not chunk:
                    raise ConnectionError("connection closed by RabbitMQ")
                buffer += chunk
                used = self._parse(buffer)
                if used:
                    del buffer[:used]
        except asyncio.CancelledError:
            raise
        except _ClosedError:
            self.connected = False
        except Exception as exc:
            if self.generation == generation and self.connected:
                self.connected = False
                log.warning(
                    "amqp_consumer_connection_lost", queue=self.queue, error=f"{type(exc).__name__}: {exc}"
                )
                self._on_lost(exc)

    def _parse(self, buf: bytearray) -> int:
        pos = 0
        total = len(buf)
        unpack_head = _HEAD.unpack_from
        while total - pos >= 8:
            kind, _, size = unpack_head(buf, pos)
            end = pos + 7 + size
            if end >= total:
                break
            if buf[end] != _FRAME_END:
                raise ConnectionError("AMQP framing error (no frame end)")
            if kind == 3:  # content body
                part = bytes(buf[pos + 7 : end])
                self._got += len(part)
                if self._got >= self._size and not self._parts:
                    self._deliver(part)
                else:
                    self._parts.append(part)
                    if self._got >= self._size:
                        body = b"".join(self._parts)
                        self._parts = []
                        self._deliver(body)
            elif kind == 2:  # content header: class, weight, body size, properties
                self._size = _U64.unpack_from(buf, pos + 11)[0]
                self._props = bytes(buf[pos + 7 : end])
                self._got = 0
                self._parts = []
                if self._size == 0:
                    self._deliver(b"")
            elif kind == 1:
                class_id, method_id = _CLASS_METHOD.unpack_from(buf, pos + 7)
                if class_id == 60 and method_id == 60:  # basic.deliver
                    p = pos + 11
                    p += 1 + buf[p]  # consumer tag
                    self._tag = _U64.unpack_from(buf, p)[0]
                    self._redelivered = bool(buf[p + 8] & 1)
                    p += 9
                    p += 1 + buf[p]  # exchange
                    length = buf[p]
                    self._routing_key = buf[p + 1 : p + 1 + length].decode()
                else:
                    self._on_method(frame.unmarshal(bytes(buf[pos : end + 1]))[2])
            pos = end + 1
        return pos

    def _deliver(self, body: bytes) -> None:
        self._on_delivery(
            Delivery(self._tag, body, self._routing_key, self._redelivered, self._props, self.generation)
        )

    def _on_method(self, method: Any) -> None:
        if isinstance(method, commands.Channel.Close):
            with contextlib.suppress(Exception):
                self._send(commands.Channel.CloseOk())
            raise ConnectionError(f"channel closed by RabbitMQ: {method.reply_code} {method.reply_text}")
        if isinstance(method, commands.Connection.Close):
            with contextlib.suppress(Exception):
                self._send(commands.Connection.CloseOk(), 0)
            raise ConnectionError(f"connection closed by RabbitMQ: {method.reply_code} {method.reply_text}")
        if isinstance(method, commands.Basic.Cancel):
            raise ConnectionError(f"consumer cancelled by RabbitMQ (queue {self.queue!r} deleted?)")
        if isinstance(method, commands.Connection.Blocked):
            log.warning("amqp_connection_blocked", queue=self.queue, reason=method.reason)
            return
        if isinstance(method, commands.Connection.Unblocked):
            return
        self._replies.put_nowait(method)
        if isinstance(method, commands.Connection.CloseOk):
            raise _ClosedError


class _ClosedError(Exception):
    """We closed the connection ourselves."""
