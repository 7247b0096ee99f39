"""Sliding-window rate limits per client address, kept in Redis (shared by every replica).

Each scope and address has a sorted set of the times of its admitted requests in the last
`window_s` seconds. A fixed window (a counter per clock minute) would let a client through twice
its limit across a window boundary, and reset a blocked one at an arbitrary moment; the log admits
at most `limit` requests in any `window_s` seconds and says exactly when the next one may come.
"""

from __future__ import annotations

import math
import time
import uuid

import redis.asyncio as aioredis
from fastapi import Request

from api.errors import ApiError


def client_address(request: Request, trust_forwarded_for: bool = False) -> str:
    if trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for", "")
        first = forwarded.split(",")[0].strip()
        if first:
            return first[:64]
    return request.client.host if request.client else "unknown"


async def enforce_rate_limit(
    redis_client: aioredis.Redis, scope: str, address: str, limit: int, window_s: int
) -> None:
    """Admit this request, or raise 429 with Retry-After when `limit` requests were admitted in
    the last `window_s` seconds. A refused request is not counted: waiting Retry-After is enough."""
    now = time.time()
    key = f"ratelimit:{scope}:{address}"
    member = f"{now:.6f}:{uuid.uuid4().hex[:8]}"  # unique even for simultaneous requests
    async with redis_client.pipeline(transaction=True) as pipe:
        pipe.zremrangebyscore(key, "-inf", now - window_s)
        pipe.zadd(key, {member: now})
        pipe.zcard(key)
        pipe.expire(key, window_s + 1)
        _, _, count, _ = await pipe.execute()
    if int(count) <= limit:
        return
    async with redis_client.pipeline(transaction=True) as pipe:
        pipe.zrem(key, member)
        pipe.zrange(key, 0, 0, withscores=True)
        _, oldest = await pipe.execute()
    first = float(oldest[0][1]) if oldest else now
    retry_after = max(1, math.ceil(first + window_s - now))
    raise ApiError(
        429,
        "rate_limited",
        f"Too many requests; try again in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )
