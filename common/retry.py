"""Bounded retry with exponential back-off and jitter, for connecting to stores at start-up."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from common.errors import ServiceUnavailableError
from common.logging import get_logger

T = TypeVar("T")
log = get_logger(__name__)


async def event_set_within(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds` for `event`; True when it is set. An interruptible sleep for loops that
    stop on an event (stopping by event, not by cancelling, also avoids Python 3.11's wait_for
    losing a cancellation, CPython gh-86296)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    return event.is_set()


def backoff_delay(attempt: int, base: float = 0.5, cap: float = 10.0) -> float:
    """Delay before retry number `attempt` (1-based): base * 2^(attempt-1), capped, plus up to 25% jitter."""
    delay: float = min(cap, base * (2 ** (attempt - 1)))
    return delay + random.uniform(0, delay / 4)


async def connect_with_retry(
    service: str,
    address: str,
    connect: Callable[[], Awaitable[T]],
    attempts: int = 10,
    backoff_cap: float = 10.0,
) -> T:
    """Call `connect` until it succeeds; after `attempts` failures raise one error naming the address."""
    last: BaseException | None = None
    for attempt in range(1, attempts + 1):
        try:
            return await connect()
        except Exception as exc:  # any failure to connect is retried, then reported once
            last = exc
            if attempt == attempts:
                break
            delay = backoff_delay(attempt, cap=backoff_cap)
            log.warning(
                "connect_retry",
                target=service,
                address=address,
                attempt=attempt,
                delay_s=round(delay, 2),
                error=str(exc),
            )
            await asyncio.sleep(delay)
    raise ServiceUnavailableError(service, address, last)
