"""A batching record consumer, shared by graphinator and tableinator (design §3-§4).

Per data type: its own AMQP connection (`common.lean_amqp`: deliveries decoded by hand, no
per-message objects beyond the body), its own queue `<consumer>.<type>`, and one worker task.
Batches are counted in records: a `records` message (several records, what the extractor sends)
weighs its `count`, any other message 1. Deliveries are appended to a buffer by the socket reader;
the worker takes whole deliveries when the buffer holds `batch_size` records (or as many messages
as the prefetch lets arrive) or its oldest has waited `batch_max_latency` seconds (one timer per
batch, none per message), decodes them (`decode` hook: the service's own fast form of a record, a
list of them, or a `RecordMessage`), and hands the records to the writer. The prefetch (in
messages) follows the records per message seen, so it always holds about
(batch concurrency + 1) x batch size records. Up to `batch_concurrency` batches commit while the
next one is received and decoded. With `ordered_types`, a type waits while a type it references
has work (REFERENCED_TYPES).

Delivery guarantees:
- A record is acked only after the store transaction that contains it committed (one
  `basic.ack(multiple)` per batch on its last delivery tag, after every earlier delivery on that
  connection was settled: batches commit and ack in order, dead letters are acked one by one first).
- Transient store errors (connection lost, deadlock, timeout; the writer's `is_transient` decides)
  retry the batch with capped exponential back-off, forever, while the service runs; nothing is
  dead-lettered for them. On shutdown a batch still failing is left unacked (the broker redelivers).
  The exception: a write that ran out of time (the writer's `is_timeout`) may never fit in it, so
  after `MAX_TIMEOUTS` of them the batch is treated as failing permanently (below): its halves get
  their own chances, and only a record that times out alone that often is dead-lettered.
- Permanent errors go to this consumer's own DLQ `<queue>.dlq` (republished through the default
  exchange with the reason in `DLQ_REASON_HEADER`, confirmed and `mandatory`: a DLQ deleted while
  the consumer runs is declared again, never a silent drop; then the original is acked): a body
  that is not a valid message at once; a record the writer rejects by itself; and when a whole
  batch fails permanently, the batch is bisected until the failing record(s) are isolated, so the
  rest of the batch lands. A failing record of a `records` message is dead-lettered alone, as a
  single `record` message; the other records of its message land.
- Control messages (`file_complete`, `extraction_complete`) flush the pending records first, then
  run the hook, then are acked.
- A lost broker connection drops the deliveries not yet committed (the broker redelivers them; an
  ack for a delivery of a dead connection is never sent) and reconnects with back-off.
- Writes are idempotent, so redelivery after a crash and competing replicas are harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import os
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.amqp import (
    DATA_TYPES,
    DLQ_REASON_HEADER,
    RecordConsumer,
    declare_record_queues,
    dlq_name,
    open_confirming_channel,
    publish_routed,
    record_queue_name,
)
from common.health import HealthServer, ReadyCheck
from common.lean_amqp import Delivery, LeanConsumer
from common.logging import get_logger
from common.messages import (
    RECORDS_BODY_PREFIX,
    ExtractionComplete,
    FileComplete,
    decode_pipeline_message,
    records_count_hint,
    single_record_body,
)
from common.readiness import amqp_check
from common.retry import backoff_delay, event_set_within
from common.writes import WriteResult

log = get_logger(__name__)

WriteFn = Callable[[str, Sequence[Any]], Awaitable[WriteResult]]
# bytes -> a record (whatever the writer takes), a list of them (a `records` message), FileComplete
# or ExtractionComplete; ValueError = invalid.
DecodeFn = Callable[[bytes], Any]
TransientFn = Callable[[BaseException], bool]
TimeoutFn = Callable[[BaseException], bool]
FileHook = Callable[[FileComplete], Awaitable[None]]
ExtractionHook = Callable[[ExtractionComplete], Awaitable[None]]

CONSUMER_HEADER: Final = "x-discogsography-consumer"
ROUTING_KEY_HEADER: Final = "x-discogsography-routing-key"
_CONTROL: Final = (FileComplete, ExtractionComplete)
# `"kind": "file_complete"` / `"extraction_complete"`: a small body with this mark ends the batch
# early (a record that merely contains it only costs an early flush).
_CONTROL_MARK: Final = b'_complete"'
_CONTROL_MAX_BYTES: Final = 1024
# Until deliveries say otherwise, expect `records` messages of about this many records (the
# extractor's default): the first prefetch is then small, never thousands of big messages.
INITIAL_RECORDS_PER_MESSAGE: Final = 100.0
# The types whose records a type's records point at (credits, labels, masters). With
# `ORDERED_TYPES`, a type's batches wait while one of these has work: its targets then exist when
# it is written (no stub created now and filled in later), and the two never wait for each other's
# locks (in Neo4j a releases batch locks every artist it links to).
REFERENCED_TYPES: Final[dict[str, tuple[str, ...]]] = {
    "masters": ("artists",),
    "releases": ("artists", "labels", "masters"),
}


def _looks_like_control(body: bytes) -> bool:
    return len(body) <= _CONTROL_MAX_BYTES and _CONTROL_MARK in body


class ConsumerSettings(BaseSettings):
    """Batching knobs of a record consumer (env: BATCH_SIZE, BATCH_MAX_LATENCY, ...)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    batch_size: int = Field(1000, alias="BATCH_SIZE", ge=1, le=50_000)
    batch_max_latency: float = Field(0.5, alias="BATCH_MAX_LATENCY", gt=0, le=60)
    prefetch: int = Field(
        0, alias="PREFETCH", ge=0, description="messages; 0 = adapt to the records per message seen"
    )
    batch_concurrency: int = Field(1, alias="BATCH_CONCURRENCY", ge=1, le=8)
    serial_types: str = Field("", alias="SERIAL_TYPES")
    ordered_types: bool = Field(False, alias="ORDERED_TYPES")
    retry_backoff_max: float = Field(30.0, alias="RETRY_BACKOFF_MAX", gt=0)
    max_timeouts: int = Field(
        3,
        alias="MAX_TIMEOUTS",
        ge=1,
        le=1000,
        description="times a batch may time out before it is split (a record alone: dead-lettered)",
    )
    consume_types: str = Field(",".join(DATA_TYPES), alias="CONSUME_TYPES")

    @property
    def effective_prefetch(self) -> int:
        """The most messages ever prefetched: enough single-record messages for every batch in
        flight plus the next one (an explicit PREFETCH below that is raised to it)."""
        floor = self.batch_size * max(2, self.batch_concurrency + 1)
        return max(self.prefetch, floor) if self.prefetch else floor

    def prefetch_for(self, records_per_message: float) -> int:
        """Messages to prefetch when messages carry `records_per_message` records on average:
        the same number of records as `effective_prefetch` single-record messages."""
        if self.prefetch:
            return self.effective_prefetch
        slots = max(2, self.batch_concurrency + 1)
        wanted = -(-self.batch_size * slots // max(1, int(records_per_message)))
        return max(2 * slots, min(self.effective_prefetch, wanted))

    @functools.cached_property
    def _serial(self) -> frozenset[str]:
        return frozenset(t.strip() for t in self.serial_types.split(","))

    def concurrency_for(self, data_type: str) -> int:
        """Batches of `data_type` committing at once: one for SERIAL_TYPES, else BATCH_CONCURRENCY."""
        return 1 if data_type in self._serial else self.batch_concurrency

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
    outdated: int = 0
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
            prefix + "messages_received",
            "Records taken from the queue (a records message counts each)",
            labels,
            registry=registry,
        )
        self.records = Counter(
            prefix + "records", "Records settled, by outcome", [*labels, "outcome"], registry=registry
        )
        self.dlq = Counter(
            prefix + "dead_lettered", "Messages sent to this consumer's DLQ", labels, registry=registry
        )
        self.batches = Counter(prefix + "batches", "Batches committed", labels, registry=registry)
        self.retries = Counter(
            prefix + "transient_retries",
            "Batch retries after a transient error (the consumer's and the writer's own)",
            labels,
            registry=registry,
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


@dataclass(eq=False)
class _Lane:
    """One data type: its own connection, the deliveries not yet taken, the batch committing."""

    source: LeanConsumer = field(init=False)
    buffer: deque[Delivery] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # the buffer is no longer empty
    full: asyncio.Event = field(default_factory=asyncio.Event)  # the buffer holds a whole batch
    urgent: bool = False  # a control message is buffered: take the batch without waiting
    active: bool = False  # a taken batch is being decoded or a control message handled
    weight: int = 0  # records in the buffer (a `records` message counts as its records)
    per_message: float = INITIAL_RECORDS_PER_MESSAGE  # running mean of records per message
    seen: int = 0  # deliveries in that mean (capped: it follows a change of producer)
    first_at: float = 0.0  # time.monotonic() when the oldest buffered delivery arrived
    # batches committing, oldest first (at most `batch_concurrency`); each acks after the one before
    inflight: deque[asyncio.Task[list[tuple[Delivery, Any]]]] = field(default_factory=deque)
    # record ids of the batches committing (only with batch concurrency > 1)
    batch_ids: dict[asyncio.Task[list[tuple[Delivery, Any]]], set[Any]] = field(default_factory=dict)


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
        decode: DecodeFn | None = None,
        is_timeout: TimeoutFn | None = None,
    ) -> None:
        self.name = name
        self._decode: DecodeFn = decode or decode_pipeline_message
        self.connection = connection
        self.settings = settings or ConsumerSettings()
        self.data_types = self.settings.data_types
        self._write = write
        self._is_transient = is_transient
        # A transient error that may be the batch's own fault (it ran out of time): bounded.
        self._is_timeout: TimeoutFn = is_timeout or (lambda _exc: False)
        self._on_file_complete = on_file_complete
        self._on_extraction_complete = on_extraction_complete
        self.registry = registry or CollectorRegistry()
        self.metrics = _Metrics(self.registry, name)
        self.stats: dict[str, TypeStats] = {t: TypeStats() for t in self.data_types}
        self.state = "starting"
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._draining = asyncio.Event()
        self._lanes: dict[str, _Lane] = {}
        self._reconnects: set[asyncio.Task[None]] = set()
        self._publish_channel: AbstractChannel | None = None
        self._publish_channel_lock = asyncio.Lock()  # dead letters of a batch publish concurrently
        self._workers: list[asyncio.Task[None]] = []
        self._started_at = time.time()
        # Set whenever a lane may have run out of work (ORDERED_TYPES waits on it).
        self._progress = asyncio.Event()

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Declare the topology and start consuming every configured type."""
        self._publish_channel = await open_confirming_channel(self.connection)
        if not isinstance(self.connection, aio_pika.Connection):
            raise TypeError("BatchConsumer needs an aio-pika connection (its URL is reused)")
        url = str(self.connection.url)
        for data_type in self.data_types:
            await self._declare(data_type)
            lane = _Lane()
            lane.source = LeanConsumer(
                url,
                record_queue_name(self.name, data_type),
                self.settings.prefetch_for(lane.per_message),
                on_delivery=functools.partial(self._on_delivery, lane, self.stats[data_type]),
                on_lost=functools.partial(self._on_lost, data_type),
                consumer_tag=f"{self.name}.{data_type}-{os.getpid()}-{id(self):x}",
            )
            self._lanes[data_type] = lane
            await lane.source.start()
            self._workers.append(asyncio.create_task(self._work(data_type), name=f"{self.name}-{data_type}"))
        self.state = "consuming"
        self.metrics.up.set(1)
        log.info(
            "consumer_started",
            consumer=self.name,
            types=list(self.data_types),
            batch_size=self.settings.batch_size,
            prefetch=self.settings.prefetch_for(INITIAL_RECORDS_PER_MESSAGE),
            prefetch_max=self.settings.effective_prefetch,
        )

    async def _declare(self, data_type: str) -> None:
        channel = await self.connection.channel()
        try:
            await declare_record_queues(channel, self.name, (data_type,))
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    async def stop(self) -> None:
        """Stop taking deliveries, flush and ack what was received, close the connections."""
        if self._stopping.is_set():
            return
        self.state = "stopping"
        self._stopping.set()
        self._progress.set()
        for lane in self._lanes.values():
            lane.wake.set()
            lane.full.set()
        await asyncio.gather(*(lane.source.cancel() for lane in self._lanes.values()), return_exceptions=True)
        self._draining.set()
        for lane in self._lanes.values():
            lane.wake.set()
        await asyncio.gather(*self._workers, return_exceptions=True)
        for task in list(self._reconnects):
            task.cancel()
        await asyncio.gather(*self._reconnects, return_exceptions=True)
        await asyncio.gather(*(lane.source.close() for lane in self._lanes.values()), return_exceptions=True)
        if self._publish_channel is not None:
            with contextlib.suppress(Exception):
                await self._publish_channel.close()
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

    # ---- deliveries (called synchronously from the socket reader) -------------------------------

    def _on_delivery(self, lane: _Lane, stats: TypeStats, delivery: Delivery) -> None:
        buffer = lane.buffer
        buffer.append(delivery)
        weight = records_count_hint(delivery.body)
        lane.weight += weight
        stats.received += weight
        self._adapt_prefetch(lane, weight)
        stats.last_message_at = now = time.time()
        if stats.first_message_at is None:
            stats.first_message_at = now
        size = len(buffer)
        if size == 1:
            lane.first_at = time.monotonic()
            lane.wake.set()
        if lane.weight >= self.settings.batch_size or size >= self._batch_messages(lane):
            lane.full.set()
        elif _looks_like_control(delivery.body):
            lane.urgent = True  # (probably) a control message: settle what is before it now
            lane.full.set()

    def _on_lost(self, data_type: str, exc: BaseException) -> None:
        """The connection of `data_type` died: what it delivered is redelivered by the broker."""
        lane = self._lanes[data_type]
        lane.buffer.clear()
        lane.weight = 0
        lane.wake.set()
        if self._stopping.is_set():
            return
        task = asyncio.get_running_loop().create_task(self._reconnect(data_type, exc))
        self._reconnects.add(task)
        task.add_done_callback(self._reconnects.discard)

    async def _reconnect(self, data_type: str, exc: BaseException) -> None:
        lane = self._lanes[data_type]
        attempt = 0
        while not self._stopping.is_set():
            attempt += 1
            delay = backoff_delay(attempt, base=0.5, cap=self.settings.retry_backoff_max)
            log.warning(
                "consumer_reconnecting",
                consumer=self.name,
                data_type=data_type,
                attempt=attempt,
                delay_s=round(delay, 2),
                error=f"{type(exc).__name__}: {exc}",
            )
            if await event_set_within(self._stopping, delay):
                return
            try:
                await self._declare(data_type)
                await lane.source.start()
            except Exception as error:
                exc = error
                continue
            log.info("consumer_reconnected", consumer=self.name, data_type=data_type, attempt=attempt)
            return

    def _batch_messages(self, lane: _Lane) -> int:
        """Messages that make a full batch when the records do not: the prefetch shared by the
        batches in flight and the next one (more never arrive before an ack)."""
        slots = max(2, self.settings.batch_concurrency + 1)
        return max(1, lane.source.prefetch // slots)

    def _adapt_prefetch(self, lane: _Lane, weight: int) -> None:
        """Follow the records per message seen (the first delivery sets it; later ones move a
        running mean), so the prefetch always holds about the same number of records:
        single-record messages from older producers and tests still batch well."""
        lane.seen = min(lane.seen + 1, 32)
        lane.per_message += (weight - lane.per_message) / lane.seen
        wanted = self.settings.prefetch_for(lane.per_message)
        current = lane.source.prefetch
        if wanted > current * 1.5 or wanted < current / 1.5:
            lane.source.set_prefetch(wanted)

    # ---- health ------------------------------------------------------------------------------

    def consuming_check(self) -> ReadyCheck:
        """/ready: every type's own consumer connection is up. The shared connection (checked as
        "rabbitmq") can be fine while one type's connection is down and reconnecting."""

        async def check() -> None:
            down = [t for t, lane in self._lanes.items() if not lane.source.connected]
            if down:
                raise ConnectionError(f"not consuming {', '.join(down)} (reconnecting)")

        return check

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
            "outdated": {t: s.outdated for t, s in self.stats.items()},
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
        lane = self._lanes[data_type]
        stats = self.stats[data_type]
        batch_size = self.settings.batch_size
        latency = self.settings.batch_max_latency
        received = self.metrics.received.labels(data_type)
        last_message = self.metrics.last_message.labels(data_type)
        buffer = lane.buffer
        try:
            while True:
                if not buffer:
                    if self._draining.is_set():
                        break
                    lane.wake.clear()
                    await lane.wake.wait()
                    continue
                # A full batch, or whatever arrived once the oldest waited `latency` (one timer per
                # batch, none per message); on stop, whatever is there.
                while (
                    lane.weight < batch_size
                    and len(buffer) < self._batch_messages(lane)
                    and not lane.urgent
                    and not self._stopping.is_set()
                ):
                    left = lane.first_at + latency - time.monotonic()
                    if left <= 0:
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lane.full.wait(), left)
                    lane.full.clear()
                if not buffer:
                    continue
                if self.settings.ordered_types:
                    await self._wait_for_referenced_types(data_type)
                lane.full.clear()
                batch, weight = _take_batch(buffer, batch_size)
                lane.weight = max(0, lane.weight - weight)
                if buffer:
                    lane.first_at = time.monotonic()
                if lane.urgent:
                    lane.urgent = any(_looks_like_control(d.body) for d in buffer)
                received.inc(weight)
                last_message.set(stats.last_message_at or time.time())
                lane.active = True
                try:
                    if not await self._process(data_type, lane, batch):
                        break  # stopping while a batch was still failing: the rest is redelivered
                finally:
                    lane.active = False
                    self._progress.set()
        finally:
            await self._settle_inflight(data_type, lane)
            self._progress.set()

    @staticmethod
    def _has_work(lane: _Lane) -> bool:
        return bool(lane.buffer) or lane.active or any(not task.done() for task in lane.inflight)

    async def _wait_for_referenced_types(self, data_type: str) -> None:
        """Hold this type's next batch while a type its records point at has work (see
        REFERENCED_TYPES); never while stopping."""
        lanes = [self._lanes[t] for t in REFERENCED_TYPES.get(data_type, ()) if t in self._lanes]
        if not any(self._has_work(lane) for lane in lanes):
            return
        started = time.monotonic()
        log.info("batch_waits_for_referenced_types", consumer=self.name, data_type=data_type)
        while not self._stopping.is_set() and any(self._has_work(lane) for lane in lanes):
            self._progress.clear()
            await event_set_within(self._progress, 1.0)  # a safety net: the state is checked again
        log.info(
            "batch_resumed_after_referenced_types",
            consumer=self.name,
            data_type=data_type,
            waited_s=round(time.monotonic() - started, 2),
        )

    async def _process(self, data_type: str, lane: _Lane, batch: list[Delivery]) -> bool:
        """Decode a batch taken from the buffer; records are flushed (overlapping with the next
        batch), control messages flush everything before them first. False = stop this worker."""
        records: list[tuple[Delivery, Any]] = []
        generation = lane.source.generation
        decode = self._decode
        for delivery in batch:
            if delivery.generation != generation:
                continue  # its connection is gone: the broker redelivers it
            try:
                message = decode(delivery.body)
            except ValueError as exc:
                await self._dead_letter(data_type, delivery, f"invalid message: {exc}")
                continue
            if isinstance(message, list):  # a `records` message
                records.extend((delivery, m) for m in message)
                continue
            if not isinstance(message, _CONTROL):
                records.append((delivery, message))
                continue
            # A control message: everything before it is settled first.
            if not await self._settle_inflight(data_type, lane):
                return False
            if records and await self._flush_safely(data_type, records):
                return False
            records = []
            await self._control(data_type, delivery, message)
        if not records:
            return True
        # Up to `batch_concurrency` batches commit while the next is received and decoded; each
        # acks only after the one before it settled, so acks stay in order. A record id that is
        # still committing in another batch waits for it here rather than on the store: the
        # writer would not write it twice (graphinator notices a record created meanwhile), but
        # the second batch would block on it and then find it unchanged.
        ids = {getattr(m, "id", None) for _, m in records}
        overlapping = any(not ids.isdisjoint(lane.batch_ids.get(task, ())) for task in lane.inflight)
        if overlapping and not await self._settle_inflight(data_type, lane):
            return False
        concurrency = self.settings.concurrency_for(data_type)
        while len(lane.inflight) >= concurrency:
            if await lane.inflight.popleft():
                await self._settle_inflight(data_type, lane)
                return False
        previous = lane.inflight[-1] if lane.inflight else None
        task = asyncio.create_task(self._flush_safely(data_type, records, previous))
        task.add_done_callback(lambda _: self._progress.set())
        if concurrency > 1:
            lane.batch_ids[task] = ids
            task.add_done_callback(lambda done: lane.batch_ids.pop(done, None))
        lane.inflight.append(task)
        return True

    async def _settle_inflight(self, data_type: str, lane: _Lane) -> bool:
        """Wait for every batch being committed; False if one was abandoned (stopping)."""
        settled = True
        while lane.inflight:
            task = lane.inflight.popleft()
            try:
                abandoned = bool(await task)
            except Exception:  # never expected: _flush_safely handles store errors
                log.exception("batch_flush_crashed", consumer=self.name, data_type=data_type)
                abandoned = True
            settled = settled and not abandoned
        return settled

    async def _flush_safely(
        self,
        data_type: str,
        pending: list[tuple[Delivery, Any]],
        previous: asyncio.Task[list[tuple[Delivery, Any]]] | None = None,
    ) -> list[tuple[Delivery, Any]]:
        """Flush; return what is still pending (empty, unless the batch was abandoned on stop)."""
        if not pending:
            return pending
        try:
            await self._flush(data_type, pending, previous)
        except _AbortedError:
            log.warning("batch_abandoned_on_stop", consumer=self.name, data_type=data_type, size=len(pending))
            return pending
        return []

    async def _flush(
        self,
        data_type: str,
        pending: list[tuple[Delivery, Any]],
        previous: asyncio.Task[list[tuple[Delivery, Any]]] | None = None,
    ) -> None:
        started = time.perf_counter()
        stats = self.stats[data_type]
        result = await self._resolve(data_type, [m for _, m in pending])
        undelivered = False
        if result.rejected:
            # Each rejected record goes to the DLQ alone (its message may carry others that
            # landed); the batch's ack below settles its delivery. They are published at once, not
            # one confirm after another (6,100 a second here instead of 1,900: a store emptied under
            # the extractor's baseline refuses every unchanged item), and logged once per batch.
            by_identity = {id(m): delivery for delivery, m in pending}
            dead: list[Awaitable[bool]] = []
            for message, reason in result.rejected:
                delivery = by_identity.get(id(message))
                if delivery is not None:
                    alone = not delivery.body.startswith(RECORDS_BODY_PREFIX)  # as it came
                    body = None if alone else single_record_body(message)
                    dead.append(
                        self._dead_letter(data_type, delivery, reason, body=body, ack=False, quiet=True)
                    )
            published = await asyncio.gather(*dead)
            log.warning(
                "records_dead_lettered",
                consumer=self.name,
                data_type=data_type,
                count=sum(published),
                examples=[reason[:300] for _, reason in result.rejected[:3]],
            )
            # Stopping while the DLQ was unreachable: nothing of the batch is acked (below).
            undelivered = not all(published)
        if previous is not None:
            try:
                abandoned = bool(await previous)
            except Exception:
                abandoned = True
            if abandoned:  # committed, but an earlier batch is not: leave ours for redelivery too
                raise _AbortedError
        if undelivered:
            raise _AbortedError
        # Every earlier delivery on this connection is settled: one ack covers the batch.
        self._ack(data_type, pending[-1][0], multiple=True)
        stats.written += result.written
        stats.unchanged += result.unchanged
        stats.stale += result.stale
        stats.outdated += result.outdated
        stats.batches += 1
        settled = result.processed
        stats.recent.append((time.monotonic(), len(pending)))
        self.metrics.batches.labels(data_type).inc()
        self.metrics.batch_size.labels(data_type).observe(len(pending))
        for outcome, count in (
            ("written", result.written),
            ("unchanged", result.unchanged),
            ("stale", result.stale),
            ("outdated", result.outdated),
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

    async def _resolve(self, data_type: str, messages: list[Any]) -> WriteResult:
        """Write `messages`; retry transient errors; bisect permanent ones (and a batch that keeps
        running out of time) down to single records."""
        attempt = 0
        timeouts = 0
        while True:
            try:
                result = await self._write(data_type, messages)
            except Exception as exc:
                if self._is_timeout(exc):
                    timeouts += 1
                gave_up = timeouts >= self.settings.max_timeouts  # this error was the last timeout
                if self._is_transient(exc) and not gave_up:
                    attempt += 1
                    await self._backoff(data_type, attempt, exc, len(messages))
                    continue
                reason = f"{type(exc).__name__}: {exc}"
                if gave_up:
                    reason = f"timed out {timeouts} times (MAX_TIMEOUTS), given up: {reason}"
                if len(messages) == 1:
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
                    error=reason,
                )
                mid = len(messages) // 2
                left = await self._resolve(data_type, messages[:mid])
                right = await self._resolve(data_type, messages[mid:])
                return left.merge(right)
            if result.retries:
                # Retries the store client ran inside the write (a deadlock the driver re-ran).
                self._count_retries(data_type, result.retries)
                log.info(
                    "transient_error_retried_by_writer",
                    consumer=self.name,
                    data_type=data_type,
                    retries=result.retries,
                    size=len(messages),
                )
            return result

    def _count_retries(self, data_type: str, count: int) -> None:
        self.stats[data_type].retries += count
        self.metrics.retries.labels(data_type).inc(count)

    async def _backoff(self, data_type: str, attempt: int, exc: BaseException, size: int) -> None:
        self._count_retries(data_type, 1)
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
        await event_set_within(self._stopping, delay)
        if self.state == "retrying":
            self.state = previous
        if self._stopping.is_set():
            raise _AbortedError from exc

    async def _control(
        self, data_type: str, incoming: Delivery, message: FileComplete | ExtractionComplete
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
        self._ack(data_type, incoming)

    # ---- broker side -------------------------------------------------------------------------

    def _ack(self, data_type: str, delivery: Delivery, multiple: bool = False) -> None:
        if not self._lanes[data_type].source.ack(delivery.tag, delivery.generation, multiple):
            # The connection died since: the broker redelivers, and writes are idempotent.
            log.warning("ack_skipped_redelivery_expected", consumer=self.name, data_type=data_type)

    async def _dead_letter(
        self,
        data_type: str,
        incoming: Delivery,
        reason: str,
        *,
        body: bytes | None = None,
        ack: bool = True,
        quiet: bool = False,
    ) -> bool:
        """Republish `body` (default: the delivery's) to `<queue>.dlq` with the reason (confirmed),
        then ack the original unless `ack` is False (a batch ack covers it). False when the service
        stopped before the DLQ took it (nothing acked: the broker redelivers it). `quiet`: the
        caller logs it."""
        queue = f"{self.name}.{data_type}"
        props = incoming.properties()
        headers: dict[str, Any] = dict(props.headers or {})
        headers[DLQ_REASON_HEADER] = reason[:2000]
        headers[CONSUMER_HEADER] = self.name
        headers[ROUTING_KEY_HEADER] = incoming.routing_key or data_type
        dead = aio_pika.Message(
            body=incoming.body if body is None else body,
            headers=headers,
            content_type=props.content_type or "application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=props.message_id,
            timestamp=datetime.now(UTC),
        )
        attempt = 0
        while True:
            try:
                channel = await self._dlq_channel()
                redeclare = functools.partial(self._declare, data_type)
                await publish_routed(channel.default_exchange, dead, dlq_name(queue), redeclare)
                break
            except Exception as exc:
                attempt += 1
                try:
                    await self._backoff(data_type, attempt, exc, 1)
                except _AbortedError:
                    return False  # left unacked: redelivered and dead-lettered again later
        self.stats[data_type].dead_lettered += 1
        self.metrics.dlq.labels(data_type).inc()
        if not quiet:
            log.warning("message_dead_lettered", consumer=self.name, data_type=data_type, reason=reason[:500])
        if ack:
            self._ack(data_type, incoming)
        return True

    async def _dlq_channel(self) -> AbstractChannel:
        """The confirming channel dead letters go through, reopened once when it closed."""
        async with self._publish_channel_lock:
            if self._publish_channel is None or self._publish_channel.is_closed:
                self._publish_channel = await open_confirming_channel(self.connection)
            return self._publish_channel


def _take_batch(buffer: deque[Delivery], batch_size: int) -> tuple[list[Delivery], int]:
    """Whole deliveries from the front of `buffer` until they hold `batch_size` records (at least
    one delivery); returns them and their record count."""
    batch: list[Delivery] = []
    weight = 0
    while buffer and (not batch or weight < batch_size):
        delivery = buffer.popleft()
        batch.append(delivery)
        weight += records_count_hint(delivery.body)
    return batch, weight


# How often a worker runs the cyclic garbage collector it switched off (tune_gc_for_batches).
GC_INTERVAL_S: Final = 10.0


def tune_gc_for_batches() -> None:
    """Switch the automatic cyclic collector off. Thousands of decoded records are alive at once
    (prefetch + batches), and each automatic collection walked them all: 15% of graphinator's CPU
    even with raised thresholds. Records are acyclic and freed by reference counting;
    `serve_until_stopped` collects the few cycles (futures, exceptions) every GC_INTERVAL_S."""
    gc.disable()


async def collect_cycles(stop: asyncio.Event, interval: float) -> None:
    """Run the cyclic garbage collector every `interval` seconds until `stop` is set."""
    while not await event_set_within(stop, interval):
        gc.collect()


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


async def serve_until_stopped(
    consumer: BatchConsumer,
    connection: AbstractRobustConnection,
    health_host: str,
    health_port: int,
    store_checks: dict[str, ReadyCheck],
) -> None:
    """Run a worker's consumer with its health server until SIGTERM/SIGINT, then stop both cleanly
    (pending batches flushed and acked). The caller closes its own clients afterwards."""
    health = HealthServer(
        consumer.name,
        health_host,
        health_port,
        ready_checks={
            **store_checks,
            "rabbitmq": amqp_check(connection),
            "consuming": consumer.consuming_check(),
        },
        status=consumer.status,
        registry=consumer.registry,
    )
    await health.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, consumer.request_stop)
    stopped = asyncio.Event()
    collector = asyncio.create_task(collect_cycles(stopped, GC_INTERVAL_S))
    try:
        await consumer.start()
        # What exists now (modules, clients, settings) lives as long as the process: out of the
        # periodic collection, which then walks only what batches create (it took 80-340 ms, ~9% of
        # graphinator's busy CPU, walking ~94k start-up objects every GC_INTERVAL_S).
        gc.freeze()
        await consumer.run_until_stopped()
    finally:
        stopped.set()  # first: the collector ends even if a stop below raises
        await consumer.stop()
        await health.stop()
        await collector
