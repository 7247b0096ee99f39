"""Fixed-window rate limits per client address, counted in Redis (shared by every replica)."""

from __future__ import annotations

import time

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
    """Count this request; raise 429 with Retry-After once `limit` is exceeded in the window."""
    now = int(time.time())
    window = now // window_s
    key = f"ratelimit:{scope}:{address}:{window}"
    async with redis_client.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, window_s + 1)
        count, _ = await pipe.execute()
    if int(count) > limit:
        retry_after = max(1, (window + 1) * window_s - now)
        raise ApiError(
            429,
            "rate_limited",
            f"Too many requests; try again in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
