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
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    _inflight[key] = future
    try:
        value = await compute()
    except Exception as exc:
        future.set_exception(exc)
        future.exception()  # retrieved: no "never retrieved" warning when nobody shared it
        raise
    except BaseException:
        future.cancel()
        raise
    else:
        future.set_result(value)
    finally:
        del _inflight[key]
    if value is None:
        return value  # "not found" is not cached: a record ingested a moment later must show up
    try:
        await redis_client.set(key, orjson.dumps(value), ex=ttl_s)
    except Exception as exc:
        log.warning("cache_write_failed", kind=kind, error=str(exc))
    return value
