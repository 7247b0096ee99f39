"""Publishing waits while the consumers are far behind (QUEUE_MAX_RECORDS).

The extractor parses several times faster than graphinator writes, and graphinator holds releases
back until artists, labels and masters are done, so on a first load nearly every release waited
in `graphinator.releases`: the queues held 302 MB at the peak of a 100k-release first load here
(about 3 KB a release), some 57 GB for a full Discogs dump, on the disk the stores share. Bounding
the backlog costs no speed, because the consumers still always have work: the extractor pauses its
file (the parse workers block on their queue) and resumes once the queues drained below the bound.
Bounded at 20,000 records, the same load peaked at 79 MB of queues and took as long (113.0 s
against 112.5 s).

The depth of a consumer queue is read in messages (a passive declare) and converted with
MESSAGE_RECORDS, the most records a message carries; it is read again after every
`check_every` messages or half a second, so the bound is overshot by at most that plus the
publisher's window.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection
from aio_pika.exceptions import AMQPError, ChannelClosed

from common.amqp import record_queue_name
from common.logging import get_logger
from extractor.progress import FileProgress

log = get_logger(__name__)

_CHECK_INTERVAL_S: Final = 0.5
_POLL_S: Final = 1.0
_REPORT_EVERY_S: Final = 60.0


class QueueGate:
    def __init__(self, amqp_url: str, max_records: int, message_records: int) -> None:
        self.amqp_url = amqp_url
        # Records become messages of up to `message_records`: the bound in messages.
        self.max_messages = max(1, -(-max_records // max(1, message_records)))
        self.check_every = max(1, self.max_messages // 10)
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._since_check = 0
        self._last_check = float("-inf")

    async def close(self) -> None:
        if self._connection is not None and not self._connection.is_closed:
            await self._connection.close()
        self._connection = self._channel = None

    async def _open_channel(self) -> AbstractChannel:
        if self._channel is None or self._channel.is_closed:
            if self._connection is None or self._connection.is_closed:
                self._connection = await aio_pika.connect(self.amqp_url, timeout=15)
            self._channel = await self._connection.channel()
        return self._channel

    async def _depths(self, data_type: str) -> dict[str, int]:
        depths: dict[str, int] = {}
        for consumer in ("graphinator", "tableinator"):
            name = record_queue_name(consumer, data_type)
            try:
                queue = await (await self._open_channel()).declare_queue(name, passive=True)
            except ChannelClosed:  # deleted by hand: holds nothing (the publisher declares it again)
                depths[name] = 0
                continue
            depths[name] = int(queue.declaration_result.message_count or 0)
        return depths

    async def _depths_or_none(self, data_type: str) -> dict[str, int] | None:
        """The depths, or None when the broker cannot say: the gate never holds publishing back
        on its own failure (the publisher reports a broker that is gone)."""
        try:
            return await self._depths(data_type)
        except (TimeoutError, AMQPError, OSError) as exc:
            log.warning("queue_depth_unknown", type=data_type, error=str(exc))
            await self.close()
            return None

    async def wait(self, data_type: str, progress: FileProgress | None = None) -> None:
        """Return at once, or when every consumer queue of `data_type` is below the bound
        (`progress.waiting_for_consumers` says so meanwhile)."""
        self._since_check += 1
        now = time.monotonic()
        if self._since_check < self.check_every and now - self._last_check < _CHECK_INTERVAL_S:
            return
        self._since_check, self._last_check = 0, now
        depths = await self._depths_or_none(data_type)
        if depths is None or max(depths.values()) < self.max_messages:
            return
        started = reported = time.monotonic()
        if progress is not None:
            progress.waiting_for_consumers = True
        log.info("publishing_paused", type=data_type, queue_messages=depths, limit_messages=self.max_messages)
        try:
            while depths is not None and max(depths.values()) >= self.max_messages:
                await asyncio.sleep(_POLL_S)
                depths = await self._depths_or_none(data_type)
                if time.monotonic() - reported >= _REPORT_EVERY_S:
                    reported = time.monotonic()
                    log.info(
                        "publishing_still_paused",
                        type=data_type,
                        queue_messages=depths,
                        paused_s=round(reported - started),
                        advice="the consumers are behind or not running (QUEUE_MAX_RECORDS)",
                    )
        finally:
            if progress is not None:
                progress.waiting_for_consumers = False
        log.info("publishing_resumed", type=data_type, paused_s=round(time.monotonic() - started, 1))
