"""The curator worker: consumes `curator.sync-requests`, runs each sync, keeps the history row alive
with a heartbeat, and re-queues or fails syncs whose worker died. No HTTP API: only the common
health server (/health, /ready, /metrics) on HEALTH_PORT.

Message handling (design §3-§4):
- a body that is not a sync request is dead-lettered to `curator.sync-requests.dlq` with the reason
  in a header, then acked;
- the row is claimed `queued -> running` (or taken over when `running` with a stale heartbeat);
  a request for a row that is finished, unknown or alive elsewhere is acked and skipped, so
  redelivered and duplicate requests are harmless;
- the message is acked only after the outcome (`completed` / `failed` with counts and error) is
  committed; a worker that shuts down hands the row back (`queued`) and nacks with requeue.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractQueue
from neo4j import AsyncDriver
from prometheus_client import Counter, Gauge, Histogram
from pydantic import ValidationError

from common.amqp import (
    DLQ_REASON_HEADER,
    SYNC_QUEUE,
    SYNC_ROUTING_KEY,
    declare_sync_topology,
    dlq_name,
    open_confirming_channel,
    publish_routed,
)
from common.clients import create_amqp_connection, create_neo4j_driver, create_postgres_pool
from common.crypto import SecretBox
from common.health import HealthServer
from common.logging import get_logger
from common.messages import SyncRequest
from common.readiness import amqp_check, neo4j_check, postgres_check
from common.retry import event_set_within
from curator import store
from curator.settings import CuratorSettings
from curator.syncer import PgPool, Syncer, SyncFailedError, SyncProgress

log = get_logger(__name__)

SYNCS = Counter("curator_syncs_total", "Syncs finished by this worker", ["status"])
ACTIVE = Gauge("curator_active_syncs", "Syncs running in this worker")
DURATION = Histogram(
    "curator_sync_duration_seconds", "Wall time of one sync", buckets=(1, 5, 15, 60, 300, 900, 3600)
)
REAPED = Counter("curator_reaped_syncs_total", "Stale syncs re-queued or failed", ["action"])


class _LostSyncError(Exception):
    """The history row stopped being ours (re-queued or failed by a reaper)."""


class Curator:
    def __init__(self, settings: CuratorSettings) -> None:
        self.settings = settings
        self.box = SecretBox(settings.encryption_key_list)
        self.pool: PgPool | None = None
        self.driver: AsyncDriver | None = None
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None
        self.channel: AbstractChannel | None = None
        self.exchange: AbstractExchange | None = None
        self.queue: AbstractQueue | None = None
        self.syncer: Syncer | None = None
        self.health: HealthServer | None = None
        self._consumer_tag: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # ---- life cycle

    async def start(self) -> None:
        s = self.settings
        attempts = s.connect_attempts
        self.pool = await create_postgres_pool(
            s, min_size=1, max_size=2 * s.sync_concurrency + 2, attempts=attempts
        )
        self.driver = await create_neo4j_driver(s, attempts=attempts)
        self.connection = await create_amqp_connection(s, attempts=attempts)
        self.channel = await open_confirming_channel(self.connection)
        await self.channel.set_qos(prefetch_count=s.sync_concurrency)
        self.exchange, self.queue = await declare_sync_topology(self.channel)
        self.syncer = Syncer(s, self.pool, self.driver, self.box)
        self.health = HealthServer(
            "curator",
            s.health_host,
            s.health_port,
            ready_checks={
                "postgresql": postgres_check(self.pool),
                "neo4j": neo4j_check(self.driver),
                "rabbitmq": amqp_check(self.connection),
            },
            status=lambda: {"active_syncs": len(self._tasks)},
        )
        await self.health.start()
        await self.reap()  # rows left `running` by a worker that died are handled before consuming
        self._reaper = asyncio.create_task(self._reap_forever(), name="curator-reaper")
        self._consumer_tag = await self.queue.consume(self._on_message)
        log.info(
            "curator_started",
            health_port=s.health_port,
            concurrency=s.sync_concurrency,
            discogs=s.discogs_api_url,
            rate_limit=f"{s.discogs_rate_limit}/{s.discogs_rate_window_s:g}s",
        )

    async def stop(self) -> None:
        if self.queue is not None and self._consumer_tag is not None:
            with contextlib.suppress(Exception):
                await self.queue.cancel(self._consumer_tag)
        self._stopping.set()
        if self._reaper is not None:
            await _finish(self._reaper, 15)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.health is not None:
            await self.health.stop()
        if self.connection is not None:
            await self.connection.close()
        if self.driver is not None:
            await self.driver.close()
        if self.pool is not None:
            await self.pool.close()
        log.info("curator_stopped")

    # ---- reaper

    async def reap(self) -> None:
        assert self.pool is not None
        s = self.settings
        async with self.pool.connection() as conn:
            result = await store.reap_stale(
                conn, s.sync_stale_after_s, s.sync_max_attempts, s.sync_queued_timeout_s
            )
        for sync_id, user_id in result.requeued:
            await self.publish(sync_id, user_id)
            REAPED.labels("requeued").inc()
            log.warning("sync_requeued", sync_id=str(sync_id), reason="stale heartbeat")
        for sync_id in result.failed:
            REAPED.labels("failed").inc()
            log.warning("sync_reaped_failed", sync_id=str(sync_id))

    async def _reap_forever(self) -> None:
        while True:
            if await event_set_within(self._stopping, self.settings.sync_reaper_interval_s):
                return
            try:
                await self.reap()
            except Exception as exc:  # a store hiccup must not kill the reaper; try again later
                log.warning("reaper_failed", error=str(exc))

    async def publish(self, sync_id: UUID, user_id: UUID) -> None:
        assert self.exchange is not None
        body = SyncRequest(
            sync_id=str(sync_id), user_id=str(user_id), requested_at=datetime.now(UTC).isoformat()
        ).to_bytes()
        await self.exchange.publish(
            aio_pika.Message(
                body,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                content_type="application/json",
                message_id=str(sync_id),
            ),
            routing_key=SYNC_ROUTING_KEY,
        )

    # ---- messages

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.create_task(self._handle(message), name="curator-sync")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        assert self.channel is not None
        log.error("sync_request_dead_lettered", reason=reason)
        channel = self.channel
        dead = aio_pika.Message(
            message.body,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers={DLQ_REASON_HEADER: reason[:500]},
            content_type=message.content_type,
        )
        await publish_routed(
            channel.default_exchange, dead, dlq_name(SYNC_QUEUE), lambda: declare_sync_topology(channel)
        )
        await message.ack()

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        try:
            request = _parse(message.body)
        except ValueError as exc:
            await self._dead_letter(message, str(exc))
            return
        try:
            done = await self._process(UUID(request.sync_id))
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            raise
        except Exception as exc:  # the outcome could not be recorded: let the broker redeliver
            log.exception("sync_not_recorded", sync_id=request.sync_id, error=str(exc))
            await asyncio.sleep(1.0)
            await message.nack(requeue=True)
            return
        if done:
            await message.ack()

    async def _process(self, sync_id: UUID) -> bool:
        """Run the sync if it is ours to run; True when the message can be acked."""
        assert self.pool is not None and self.syncer is not None
        s = self.settings
        async with self.pool.connection() as conn:
            claimed = await store.claim_sync(conn, sync_id, s.sync_stale_after_s)
            if claimed is None:
                status = await store.sync_status(conn, sync_id)
                log.info("sync_request_skipped", sync_id=str(sync_id), status=status)
                return True
            if claimed.attempts > s.sync_max_attempts:
                await store.fail_sync(
                    conn,
                    sync_id,
                    f"The sync was interrupted {claimed.attempts - 1} time(s); start a new sync",
                )
                SYNCS.labels("failed").inc()
                return True
        log.info("sync_started", sync_id=str(sync_id), user_id=str(claimed.user_id), attempt=claimed.attempts)
        progress = SyncProgress()
        work = asyncio.create_task(self.syncer.run(sync_id, claimed.user_id, progress))
        lost = asyncio.Event()
        finished = asyncio.Event()
        beat = asyncio.create_task(self._heartbeat(sync_id, progress, work, lost, finished))
        ACTIVE.inc()
        started = asyncio.get_running_loop().time()
        error: str | None = None
        try:
            try:
                await work
            except asyncio.CancelledError:
                if not lost.is_set():
                    await asyncio.shield(self._hand_back(sync_id))
                    raise
                log.warning("sync_lost", sync_id=str(sync_id))
                return True
            except SyncFailedError as exc:
                error = str(exc)
            except Exception as exc:  # an unexpected error still ends the sync with a readable message
                log.exception("sync_crashed", sync_id=str(sync_id))
                error = f"Internal error while syncing ({type(exc).__name__}: {exc}); try again later"
        finally:
            finished.set()
            await _finish(beat, self.settings.sync_heartbeat_interval_s + 15)
            ACTIVE.dec()
        DURATION.observe(asyncio.get_running_loop().time() - started)
        async with self.pool.connection() as conn:
            if error is None:
                recorded = await store.complete_sync(
                    conn, sync_id, progress.collection_count, progress.wantlist_count, progress.pages_fetched
                )
            else:
                recorded = await store.fail_sync(conn, sync_id, error, pages_fetched=progress.pages_fetched)
        status = "completed" if error is None else "failed"
        SYNCS.labels(status).inc()
        log.info(
            "sync_finished",
            sync_id=str(sync_id),
            status=status,
            recorded=recorded,
            collection=progress.collection_count,
            wants=progress.wantlist_count,
            pages=progress.pages_fetched,
            removed=progress.removed,
            error=error,
        )
        return True

    async def _hand_back(self, sync_id: UUID) -> None:
        assert self.pool is not None
        with contextlib.suppress(Exception):
            async with self.pool.connection() as conn:
                await store.requeue_sync(conn, sync_id)
            log.info("sync_handed_back", sync_id=str(sync_id))

    async def _heartbeat(
        self,
        sync_id: UUID,
        progress: SyncProgress,
        work: asyncio.Task[None],
        lost: asyncio.Event,
        finished: asyncio.Event,
    ) -> None:
        """Refresh the row's heartbeat every interval until `finished` is set."""
        assert self.pool is not None
        while True:
            if await event_set_within(finished, self.settings.sync_heartbeat_interval_s):
                return
            try:
                async with self.pool.connection() as conn:
                    alive = await store.heartbeat(conn, sync_id, progress.pages_fetched)
            except Exception as exc:  # keep syncing; the row's fate is decided when we record it
                log.warning("heartbeat_failed", sync_id=str(sync_id), error=str(exc))
                continue
            if not alive:
                lost.set()
                work.cancel()
                return


async def _finish(task: asyncio.Task[None], timeout: float) -> None:
    """Wait for a task that was told to stop (its event set); cancel it only if it is still stuck
    in a store call after `timeout`. Not cancelled first: on Python 3.11 a cancellation that meets
    a database wait completing at that moment can be swallowed (CPython gh-86296), and a heartbeat
    that ran on that way left its finished sync `running` until shutdown."""
    _, pending = await asyncio.wait({task}, timeout=timeout)
    for stuck in pending:
        stuck.cancel()


def _parse(body: bytes) -> SyncRequest:
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("kind") != "sync_request":
        raise ValueError("body is not a sync_request message")
    try:
        request = SyncRequest.model_validate(data)
        UUID(request.sync_id)
    except (ValidationError, ValueError) as exc:
        raise ValueError(f"invalid sync_request: {exc}") from exc
    return request
