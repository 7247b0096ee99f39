"""A small JSON response cache in Redis with TTL (shared by every api replica)."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import orjson
import redis.asyncio as aioredis

from api.metrics import CACHE_EVENTS
from common.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")
CACHE_VERSION = "v1"


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
    CACHE_EVENTS.labels(kind, "miss").inc()
    value = await compute()
    try:
        await redis_client.set(key, orjson.dumps(value), ex=ttl_s)
    except Exception as exc:
        log.warning("cache_write_failed", kind=kind, error=str(exc))
    return value
