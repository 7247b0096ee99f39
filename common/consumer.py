"""A batching record consumer on aio-pika, shared by graphinator and tableinator (design §3-§4).

Per data type: its own channel (prefetch >= 2 x batch size), its own queue `<consumer>.<type>`,
and one worker task that takes deliveries in order and flushes a batch when it is full or when its
oldest record has waited `batch_max_latency` seconds.

Delivery guarantees:
- A record is acked only after the store transaction that contains it committed (one multiple-ack
  per batch, after every earlier delivery on that channel was settled).
- Transient store errors (connection lost, deadlock, timeout; the writer's `is_transient` decides)
  retry the batch with capped exponential back-off, forever, while the service runs; nothing is
  dead-lettered for them. On shutdown a batch still failing is left unacked (the broker redelivers).
- Permanent errors go to this consumer's own DLQ `<queue>.dlq` (republished through the default
  exchange with the reason in `DLQ_REASON_HEADER`, confirmed, then the original is acked): a body
  that is not a valid message at once; a record the writer rejects by itself; and when a whole
  batch fails permanently, the batch is bisected until the failing record(s) are isolated, so the
  rest of the batch lands.
- Control messages (`file_complete`, `extraction_complete`) flush the pending records first, then
  run the hook, then are acked.
- Writes are idempotent, so redelivery after a crash and competing replicas are harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.amqp import DATA_TYPES, DLQ_REASON_HEADER, RecordConsumer, declare_record_queues, dlq_name
from common.logging import get_logger
from common.messages import ExtractionComplete, FileComplete, RecordMessage, parse_pipeline_message
from common.retry import backoff_delay
from common.writes import WriteResult

log = get_logger(__name__)

WriteFn = Callable[[str, Sequence[RecordMessage]], Awaitable[WriteResult]]
TransientFn = Callable[[BaseException], bool]
FileHook = Callable[[FileComplete], Awaitable[None]]
ExtractionHook = Callable[[ExtractionComplete], Awaitable[None]]

CONSUMER_HEADER: Final = "x-discogsography-consumer"
ROUTING_KEY_HEADER: Final = "x-discogsography-routing-key"
_STOP: Final = object()


class ConsumerSettings(BaseSettings):
    """Batching knobs of a record consumer (env: BATCH_SIZE, BATCH_MAX_LATENCY, ...)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    batch_size: int = Field(1000, alias="BATCH_SIZE", ge=1, le=50_000)
    batch_max_latency: float = Field(0.5, alias="BATCH_MAX_LATENCY", gt=0, le=60)
    prefetch: int = Field(0, alias="PREFETCH", ge=0, description="0 = 2 x batch size")
    retry_backoff_max: float = Field(30.0, alias="RETRY_BACKOFF_MAX", gt=0)
    consume_types: str = Field(",".join(DATA_TYPES), alias="CONSUME_TYPES")

    @property
    def effective_prefetch(self) -> int:
        return max(self.prefetch, self.batch_size * 2) if self.prefetch else self.batch_size * 2

    @property
    def data_types(self) -> tuple[str, ...]:
        types = tuple(t.strip() for t in self.consume_types.split(",") if t.strip())
        unknown = set(types) - set(DATA_TYPES)
        if unknown:
            raise ValueError(f"unknown data types in CONSUME_TYPES: {sorted(unknown)}")
        return types


@dataclass
class TypeStats:
    received: int = 0
    written: int = 0
    unchanged: int = 0
    stale: int = 0
    dead_lettered: int = 0
    batches: int = 0
    retries: int = 0
    last_message_at: float | None = None
    first_message_at: float | None = None
    last_commit_at: float | None = None
    batch_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    completed_versions: list[str] = field(default_factory=list)
    recent: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=256))

    def rate(self, window: float = 10.0) -> float:
        now = time.monotonic()
        total = sum(n for t, n in self.recent if now - t <= window)
        return round(total / window, 1)

    def batch_percentile(self, q: float) -> float | None:
        if not self.batch_seconds:
            return None
        ordered = sorted(self.batch_seconds)
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)


class _Metrics:
    def __init__(self, registry: CollectorRegistry, consumer: str) -> None:
        labels = ["type"]
        prefix = f"{consumer}_"
        self.received = Counter(
            prefix + "messages_received", "Deliveries taken from the queue", labels, registry=registry
        )
        self.records = Counter(
            prefix + "records", "Records settled, by outcome", [*labels, "outcome"], registry=registry
        )
        self.dlq = Counter(
            prefix + "dead_lettered", "Messages sent to this consumer's DLQ", labels, registry=registry
        )
        self.batches = Counter(prefix + "batches", "Batches committed", labels, registry=registry)
        self.retries = Counter(
            prefix + "transient_retries", "Batch retries after a transient error", labels, registry=registry
        )
        self.batch_seconds = Histogram(
            prefix + "batch_seconds",
            "Time to write and ack one batch",
            labels,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.batch_size = Histogram(
            prefix + "batch_records",
            "Records per batch",
            labels,
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
            registry=registry,
        )
        self.last_message = Gauge(
            prefix + "last_message_timestamp_seconds",
            "Unix time of the last delivery",
            labels,
            registry=registry,
        )
        self.up = Gauge(prefix + "consuming", "1 while consuming", registry=registry)


class _AbortedError(Exception):
    """A batch was abandoned because the consumer is stopping (it stays unacked)."""


class BatchConsumer:
    """Consume `<name>.<type>` queues and write batches through `write`."""

    def __init__(
        self,
        name: RecordConsumer,
        connection: AbstractRobustConnection,
        write: WriteFn,
        is_transient: TransientFn,
        settings: ConsumerSettings | None = None,
        on_file_complete: FileHook | None = None,
        on_extraction_complete: ExtractionHook | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.name = name
        self.connection = connection
        self.settings = settings or ConsumerSettings()
        self.data_types = self.settings.data_types
        self._write = write
        self._is_transient = is_transient
        self._on_file_complete = on_file_complete
        self._on_extraction_complete = on_extraction_complete
        self.registry = registry or CollectorRegistry()
        self.metrics = _Metrics(self.registry, name)
        self.stats: dict[str, TypeStats] = {t: TypeStats() for t in self.data_types}
        self.state = "starting"
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._inboxes: dict[str, asyncio.Queue[Any]] = {}
        self._channels: list[AbstractChannel] = []
        self._queues: dict[str, tuple[AbstractQueue, str]] = {}
        self._publish_channel: AbstractChannel | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._started_at = time.time()

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Declare the topology and start consuming every configured type."""
        self._publish_channel = await self.connection.channel(publisher_confirms=True)
        for data_type in self.data_types:
            channel = await self.connection.channel()
            await channel.set_qos(prefetch_count=self.settings.effective_prefetch)
            self._channels.append(channel)
            # Declared on the consuming channel itself, so a robust reconnect re-declares it identically.
            queue = (await declare_record_queues(channel, self.name, (data_type,)))[data_type]
            inbox: asyncio.Queue[Any] = asyncio.Queue()
            self._inboxes[data_type] = inbox

            async def deliver(message: AbstractIncomingMessage, box: asyncio.Queue[Any] = inbox) -> None:
                box.put_nowait(message)

            tag = await queue.consume(deliver)
            self._queues[data_type] = (queue, tag)
            self._workers.append(asyncio.create_task(self._work(data_type), name=f"{self.name}-{data_type}"))
        self.state = "consuming"
        self.metrics.up.set(1)
        log.info(
            "consumer_started",
            consumer=self.name,
            types=list(self.data_types),
            batch_size=self.settings.batch_size,
            prefetch=self.settings.effective_prefetch,
        )

    async def stop(self) -> None:
        """Stop taking deliveries, flush and ack what was received, close the channels."""
        if self._stopping.is_set():
            return
        self.state = "stopping"
        self._stopping.set()
        for queue, tag in self._queues.values():
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
        for inbox in self._inboxes.values():
            inbox.put_nowait(_STOP)
        await asyncio.gather(*self._workers, return_exceptions=True)
        for channel in [*self._channels, self._publish_channel]:
            if channel is not None:
                with contextlib.suppress(Exception):
                    await channel.close()
        self.state = "stopped"
        self._stopped.set()
        self.metrics.up.set(0)
        log.info("consumer_stopped", consumer=self.name)

    async def run_until_stopped(self) -> None:
        """Return once `stop()` has flushed, acked and closed everything."""
        await self._stopped.wait()

    def request_stop(self) -> None:
        """Signal-handler friendly: schedule `stop()`."""
        if not self._stopping.is_set():
            asyncio.get_running_loop().create_task(self.stop())

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # ---- health ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        def iso(ts: float | None) -> str | None:
            return datetime.fromtimestamp(ts, UTC).isoformat() if ts else None

        busy = any(s.last_message_at and time.time() - s.last_message_at < 10 for s in self.stats.values())
        state = self.state
        if state == "consuming":
            state = "processing" if busy else "idle"
        return {
            "service": self.name,
            "state": state,
            "batch_size": self.settings.batch_size,
            "prefetch": self.settings.effective_prefetch,
            "message_counts": {t: s.received for t, s in self.stats.items()},
            "records_per_second": {t: s.rate() for t, s in self.stats.items()},
            "last_message_time": {t: iso(s.last_message_at) for t, s in self.stats.items()},
            "written": {t: s.written for t, s in self.stats.items()},
            "unchanged": {t: s.unchanged for t, s in self.stats.items()},
            "batches": {t: s.batches for t, s in self.stats.items()},
            "dlq_counts": {t: s.dead_lettered for t, s in self.stats.items()},
            "transient_retries": {t: s.retries for t, s in self.stats.items()},
            "completed_versions": {t: s.completed_versions for t, s in self.stats.items()},
            "timing": {
                t: {
                    "first_message_at": s.first_message_at,
                    "last_commit_at": s.last_commit_at,
                    "batch_p50_s": s.batch_percentile(0.5),
                    "batch_p99_s": s.batch_percentile(0.99),
                }
                for t, s in self.stats.items()
            },
        }

    # ---- the per-type worker -----------------------------------------------------------------

    async def _work(self, data_type: str) -> None:
        inbox = self._inboxes[data_type]
        stats = self.stats[data_type]
        loop = asyncio.get_running_loop()
        pending: list[tuple[AbstractIncomingMessage, RecordMessage]] = []
        deadline = 0.0
        received = self.metrics.received.labels(data_type)
        last_message = self.metrics.last_message.labels(data_type)
        while True:
            try:
                if not inbox.empty():  # the common case under load: no task, no timer per message
                    item = inbox.get_nowait()
                elif pending:
                    item = await asyncio.wait_for(inbox.get(), max(0.0, deadline - loop.time()))
                else:
                    item = await inbox.get()
            except TimeoutError:
                pending = await self._flush_safely(data_type, pending)
                continue
            if item is _STOP:
                await self._flush_safely(data_type, pending)
                return
            incoming: AbstractIncomingMessage = item
            stats.received += 1
            stats.last_message_at = time.time()
            if stats.first_message_at is None:
                stats.first_message_at = stats.last_message_at
            received.inc()
            last_message.set(stats.last_message_at)
            try:
                message = parse_pipeline_message(incoming.body)
            except ValueError as exc:
                await self._dead_letter(data_type, incoming, f"invalid message: {exc}")
                continue
            if isinstance(message, RecordMessage):
                if not pending:
                    deadline = loop.time() + self.settings.batch_max_latency
                pending.append((incoming, message))
                if len(pending) >= self.settings.batch_size or loop.time() >= deadline:
                    pending = await self._flush_safely(data_type, pending)
                continue
            # A control message: everything before it is settled first.
            pending = await self._flush_safely(data_type, pending)
            if pending:  # stopping while a flush failed: leave the rest for redelivery
                return
            await self._control(data_type, incoming, message)

    async def _flush_safely(
        self, data_type: str, pending: list[tuple[AbstractIncomingMessage, RecordMessage]]
    ) -> list[tuple[AbstractIncomingMessage, RecordMessage]]:
        """Flush; return what is still pending (empty, unless the batch was abandoned on stop)."""
        if not pending:
            return pending
        try:
            await self._flush(data_type, pending)
        except _AbortedError:
            log.warning("batch_abandoned_on_stop", consumer=self.name, data_type=data_type, size=len(pending))
            return pending
        return []

    async def _flush(
        self, data_type: str, pending: list[tuple[AbstractIncomingMessage, RecordMessage]]
    ) -> None:
        started = time.perf_counter()
        stats = self.stats[data_type]
        result = await self._resolve(data_type, [m for _, m in pending])
        by_identity = {id(m): incoming for incoming, m in pending}
        for message, reason in result.rejected:
            incoming = by_identity.get(id(message))
            if incoming is not None:
                await self._dead_letter(data_type, incoming, reason)
        # Every earlier delivery on this channel is settled: one ack covers the batch.
        await self._ack(pending[-1][0], multiple=True)
        stats.written += result.written
        stats.unchanged += result.unchanged
        stats.stale += result.stale
        stats.batches += 1
        settled = result.written + result.unchanged + result.stale
        stats.recent.append((time.monotonic(), len(pending)))
        self.metrics.batches.labels(data_type).inc()
        self.metrics.batch_size.labels(data_type).observe(len(pending))
        for outcome, count in (
            ("written", result.written),
            ("unchanged", result.unchanged),
            ("stale", result.stale),
        ):
            if count:
                self.metrics.records.labels(data_type, outcome).inc(count)
        elapsed = time.perf_counter() - started
        stats.batch_seconds.append(elapsed)
        stats.last_commit_at = time.time()
        self.metrics.batch_seconds.labels(data_type).observe(elapsed)
        log.debug(
            "batch_committed",
            consumer=self.name,
            data_type=data_type,
            size=len(pending),
            settled=settled,
            written=result.written,
            unchanged=result.unchanged,
            rejected=len(result.rejected),
            seconds=round(elapsed, 4),
        )

    async def _resolve(self, data_type: str, messages: list[RecordMessage]) -> WriteResult:
        """Write `messages`; retry transient errors; bisect permanent ones down to single records."""
        attempt = 0
        while True:
            try:
                return await self._write(data_type, messages)
            except Exception as exc:
                if self._is_transient(exc):
                    attempt += 1
                    await self._backoff(data_type, attempt, exc, len(messages))
                    continue
                if len(messages) == 1:
                    reason = f"{type(exc).__name__}: {exc}"
                    log.warning(
                        "record_failed_permanently",
                        consumer=self.name,
                        data_type=data_type,
                        id=messages[0].id,
                        error=reason,
                    )
                    return WriteResult(rejected=[(messages[0], reason)])
                log.info(
                    "batch_failed_bisecting",
                    consumer=self.name,
                    data_type=data_type,
                    size=len(messages),
                    error=f"{type(exc).__name__}: {exc}",
                )
                mid = len(messages) // 2
                left = await self._resolve(data_type, messages[:mid])
                right = await self._resolve(data_type, messages[mid:])
                return left.merge(right)

    async def _backoff(self, data_type: str, attempt: int, exc: BaseException, size: int) -> None:
        stats = self.stats[data_type]
        stats.retries += 1
        self.metrics.retries.labels(data_type).inc()
        if self._stopping.is_set():
            raise _AbortedError from exc
        delay = backoff_delay(attempt, base=0.2, cap=self.settings.retry_backoff_max)
        previous, self.state = self.state, "retrying"
        log.warning(
            "transient_error_retrying",
            consumer=self.name,
            data_type=data_type,
            attempt=attempt,
            size=size,
            delay_s=round(delay, 2),
            error=f"{type(exc).__name__}: {exc}",
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)
        if self.state == "retrying":
            self.state = previous
        if self._stopping.is_set():
            raise _AbortedError from exc

    async def _control(
        self, data_type: str, incoming: AbstractIncomingMessage, message: FileComplete | ExtractionComplete
    ) -> None:
        hook: Callable[[Any], Awaitable[None]] | None = (
            self._on_file_complete if isinstance(message, FileComplete) else self._on_extraction_complete
        )
        log.info(
            "control_message",
            consumer=self.name,
            data_type=data_type,
            kind=message.kind,
            version=message.version,
        )
        attempt = 0
        while hook is not None:
            try:
                await hook(message)
                break
            except Exception as exc:
                if not self._is_transient(exc):
                    await self._dead_letter(data_type, incoming, f"{message.kind} hook failed: {exc}")
                    return
                attempt += 1
                try:
                    await self._backoff(data_type, attempt, exc, 1)
                except _AbortedError:
                    return
        if isinstance(message, ExtractionComplete | FileComplete):
            self.stats[data_type].completed_versions.append(f"{message.kind}:{message.version}")
            del self.stats[data_type].completed_versions[:-8]
        await self._ack(incoming)

    # ---- broker side -------------------------------------------------------------------------

    async def _ack(self, incoming: AbstractIncomingMessage, multiple: bool = False) -> None:
        try:
            await incoming.ack(multiple=multiple)
        except Exception as exc:  # the channel died: the broker redelivers, and writes are idempotent
            log.warning(
                "ack_failed_redelivery_expected", consumer=self.name, error=f"{type(exc).__name__}: {exc}"
            )

    async def _dead_letter(self, data_type: str, incoming: AbstractIncomingMessage, reason: str) -> None:
        """Republish to `<queue>.dlq` with the reason (confirmed), then ack the original."""
        queue = f"{self.name}.{data_type}"
        headers: dict[str, Any] = dict(incoming.headers or {})
        headers[DLQ_REASON_HEADER] = reason[:2000]
        headers[CONSUMER_HEADER] = self.name
        headers[ROUTING_KEY_HEADER] = incoming.routing_key or data_type
        dead = aio_pika.Message(
            body=incoming.body,
            headers=headers,
            content_type=incoming.content_type or "application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=incoming.message_id,
            timestamp=datetime.now(UTC),
        )
        attempt = 0
        while True:
            try:
                if self._publish_channel is None or self._publish_channel.is_closed:
                    self._publish_channel = await self.connection.channel(publisher_confirms=True)
                await self._publish_channel.default_exchange.publish(dead, routing_key=dlq_name(queue))
                break
            except Exception as exc:
                attempt += 1
                try:
                    await self._backoff(data_type, attempt, exc, 1)
                except _AbortedError:
                    return  # left unacked: redelivered and dead-lettered again later
        self.stats[data_type].dead_lettered += 1
        self.metrics.dlq.labels(data_type).inc()
        log.warning("message_dead_lettered", consumer=self.name, data_type=data_type, reason=reason[:500])
        await self._ack(incoming)


def tune_gc_for_batches() -> None:
    """Thousands of decoded records are alive at once (prefetch + batch); the default generation-0
    threshold (700) would run the collector over all of them every few messages."""
    gc.set_threshold(100_000, 50, 100)


async def wait_until_settled(
    count: Callable[[], Awaitable[int]], expected: int, quiet: float = 5.0, timeout: float = 120.0
) -> int:
    """Poll `count()` until it reaches `expected` or stops growing for `quiet` seconds.

    Used before sweeping stale records: a competing replica may still be committing the last
    batches of the version that just completed.
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    last = await count()
    last_change = loop.time()
    while last < expected and loop.time() < end and loop.time() - last_change < quiet:
        await asyncio.sleep(min(0.5, quiet / 4))
        current = await count()
        if current != last:
            last, last_change = current, loop.time()
    return last
