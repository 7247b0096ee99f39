"""The Redis response cache: hits, and one computation for concurrent misses of one key."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from api import cache as cache_module
from api.cache import cache_key, cached

pytestmark = pytest.mark.integration


async def test_concurrent_misses_share_one_computation(redis_client: aioredis.Redis) -> None:
    key = cache_key("test", uuid.uuid4().hex)
    calls = 0
    release = asyncio.Event()

    async def compute() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await release.wait()
        return {"answer": 42}

    tasks = [asyncio.create_task(cached(redis_client, "test", key, 60, compute)) for _ in range(20)]
    await asyncio.sleep(0.05)
    release.set()
    assert await asyncio.gather(*tasks) == [{"answer": 42}] * 20
    assert calls == 1
    # Then it is a plain hit, stored with its TTL.
    assert await cached(redis_client, "test", key, 60, compute) == {"answer": 42}
    assert calls == 1
    assert 0 < await redis_client.ttl(key) <= 60
    await redis_client.delete(key)


async def test_a_miss_answered_just_before_the_value_landed_shares_it(
    redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "SHARE_AFTER_S", 0.3, raising=False)
    key = cache_key("test", uuid.uuid4().hex)
    calls = 0

    async def compute() -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {"answer": calls}

    assert await cached(redis_client, "test", key, 60, compute) == {"answer": 1}
    await redis_client.delete(key)  # as a read that Redis answered before the value arrived
    assert await cached(redis_client, "test", key, 60, compute) == {"answer": 1}  # shared
    assert calls == 1
    await asyncio.sleep(0.5)  # sharing ends; the cache is what answers then
    await redis_client.delete(key)
    assert await cached(redis_client, "test", key, 60, compute) == {"answer": 2}
    await redis_client.delete(key)


async def test_a_failure_reaches_every_waiter_and_is_not_cached(redis_client: aioredis.Redis) -> None:
    key = cache_key("test", uuid.uuid4().hex)
    release = asyncio.Event()

    async def failing() -> int:
        await release.wait()
        raise RuntimeError("store down")

    tasks = [asyncio.create_task(cached(redis_client, "test", key, 60, failing)) for _ in range(3)]
    await asyncio.sleep(0.05)
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)

    async def ok() -> int:
        return 7

    assert await cached(redis_client, "test", key, 60, ok) == 7  # the failure was not stored
    await redis_client.delete(key)


async def test_a_cancelled_leader_leaves_the_waiters_to_compute(redis_client: aioredis.Redis) -> None:
    key = cache_key("test", uuid.uuid4().hex)
    started = asyncio.Event()

    async def slow() -> int:
        started.set()
        await asyncio.sleep(30)
        return 1

    async def fast() -> int:
        return 2

    leader = asyncio.create_task(cached(redis_client, "test", key, 60, slow))
    await started.wait()
    waiter = asyncio.create_task(cached(redis_client, "test", key, 60, fast))
    await asyncio.sleep(0.05)
    leader.cancel()
    assert await waiter == 2
    with pytest.raises(asyncio.CancelledError):
        await leader
    await redis_client.delete(key)


async def test_not_found_is_not_cached(redis_client: aioredis.Redis) -> None:
    key = cache_key("test", uuid.uuid4().hex)
    answers: list[dict[str, int] | None] = [None, {"id": 1}]

    async def lookup() -> dict[str, int] | None:
        return answers.pop(0)

    assert await cached(redis_client, "test", key, 60, lookup) is None
    assert await redis_client.exists(key) == 0
    # The record arrives: the next request sees it at once, not after the TTL.
    assert await cached(redis_client, "test", key, 60, lookup) == {"id": 1}
    assert await redis_client.exists(key) == 1
    await redis_client.delete(key)
