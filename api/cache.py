"""A small JSON response cache in Redis with TTL (shared by every api replica)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import orjson
import redis.asyncio as aioredis

from api.metrics import CACHE_EVENTS
from common.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")
CACHE_VERSION = "v1"

# Misses being computed in this process, by key: concurrent requests for the same uncached key
# (a popular genre right after its entry expired) share one database query instead of each
# running it (single flight).
_inflight: dict[str, asyncio.Future[Any]] = {}
# How long a computed value stays shareable once it is written to Redis: a request whose cache
# read was answered "missing" just before the value arrived there then shares it instead of
# computing it again (under load, 8 of 20 concurrent misses computed it).
SHARE_AFTER_S = 2.0


def cache_key(kind: str, *parts: object) -> str:
    digest = hashlib.sha256(orjson.dumps([str(p) for p in parts])).hexdigest()[:32]
    return f"cache:{CACHE_VERSION}:{kind}:{digest}"


async def cached(
    redis_client: aioredis.Redis, kind: str, key: str, ttl_s: int, compute: Callable[[], Awaitable[T]]
) -> T:
    """The cached value for `key`, or compute it, store it for `ttl_s` seconds and return it.
    A Redis failure degrades to computing (the cache is an optimisation, not a dependency)."""
    if ttl_s <= 0:
        return await compute()
    try:
        raw = await redis_client.get(key)
    except Exception as exc:  # the cache must never fail the request
        log.warning("cache_read_failed", kind=kind, error=str(exc))
        raw = None
    if raw is not None:
        CACHE_EVENTS.labels(kind, "hit").inc()
        value: T = orjson.loads(raw)
        return value
    pending = _inflight.get(key)
    if pending is not None:
        CACHE_EVENTS.labels(kind, "shared").inc()
        try:
            return cast(T, await asyncio.shield(pending))
        except asyncio.CancelledError:
            if not pending.cancelled():
                raise  # this request itself was cancelled
            return await compute()  # the request computing it went away: compute it here
    CACHE_EVENTS.labels(kind, "miss").inc()
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    _inflight[key] = future
    try:
        value = await compute()
    except Exception as exc:
        _forget(key, future)
        future.set_exception(exc)
        future.exception()  # retrieved: no "never retrieved" warning when nobody shared it
        raise
    except BaseException:
        _forget(key, future)
        future.cancel()
        raise
    future.set_result(value)
    if value is None:
        _forget(key, future)
        return value  # "not found" is not cached: a record ingested a moment later must show up
    try:
        await redis_client.set(key, orjson.dumps(value), ex=ttl_s)
    except Exception as exc:
        log.warning("cache_write_failed", kind=kind, error=str(exc))
    loop.call_later(SHARE_AFTER_S, _forget, key, future)
    return value


def _forget(key: str, future: asyncio.Future[Any]) -> None:
    """Stop sharing `future` (unless a newer computation of `key` has replaced it)."""
    if _inflight.get(key) is future:
        del _inflight[key]
