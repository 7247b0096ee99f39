"""Snapshots live in Redis: TTL, node cap, bounds, and shared between app instances."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis.asyncio as aioredis

from tests.integration.api.conftest import assert_envelope, make_settings, running_app

pytestmark = pytest.mark.integration

NODES = [
    {"id": "1", "type": "artist"},
    {"id": "Electronic", "type": "genre"},
    {"id": "1002", "type": "release"},
]
CENTER = {"id": "Aphex Twin", "type": "artist"}


async def test_save_and_restore_round_trip(client: httpx.AsyncClient, redis_client: aioredis.Redis) -> None:
    resp = await client.post("/api/snapshot", json={"nodes": NODES, "center": CENTER})
    assert resp.status_code == 201, resp.text
    saved = resp.json()
    token = saved["token"]
    assert len(token) == 16 and saved["url"] == f"/?snapshot={token}"
    expires = datetime.fromisoformat(saved["expires_at"])
    assert expires - datetime.now(UTC) > timedelta(days=27)
    ttl = await redis_client.ttl(f"snapshot:{token}")
    assert 27 * 86400 < ttl <= 28 * 86400
    resp = await client.get(f"/api/snapshot/{token}")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["nodes"] == NODES and body["center"] == CENTER and body["created_at"]


async def test_tokens_are_unique(client: httpx.AsyncClient) -> None:
    tokens = set()
    for _ in range(5):
        resp = await client.post("/api/snapshot", json={"nodes": NODES, "center": CENTER})
        tokens.add(resp.json()["token"])
    assert len(tokens) == 5


async def test_unknown_and_expired_snapshots_are_404(
    client: httpx.AsyncClient, redis_client: aioredis.Redis
) -> None:
    body = assert_envelope(await client.get("/api/snapshot/doesnotexist1234"), 404, "snapshot_not_found")
    assert "not found" in body["error"]
    resp = await client.post("/api/snapshot", json={"nodes": NODES, "center": CENTER})
    token = resp.json()["token"]
    await redis_client.pexpire(f"snapshot:{token}", 1)
    await redis_client.delete(f"snapshot:{token}")  # what expiry does, without waiting for it
    assert_envelope(await client.get(f"/api/snapshot/{token}"), 404)
    assert_envelope(await client.get("/api/snapshot/bad token!"), 422)


@pytest.mark.parametrize(
    "payload",
    [
        {"nodes": [], "center": CENTER},
        {"nodes": NODES},
        {"center": CENTER},
        {"nodes": [{"id": "1", "type": "spaceship"}], "center": CENTER},
        {"nodes": [{"id": "x" * 257, "type": "artist"}], "center": CENTER},
        {"nodes": [{"id": "", "type": "artist"}], "center": CENTER},
        {"nodes": "nope", "center": CENTER},
    ],
)
async def test_invalid_snapshot_is_422(client: httpx.AsyncClient, payload: dict[str, object]) -> None:
    assert_envelope(await client.post("/api/snapshot", json=payload), 422, "validation_error")


async def test_too_many_nodes_is_422_with_message(client: httpx.AsyncClient) -> None:
    nodes = [{"id": str(i), "type": "release"} for i in range(101)]
    body = assert_envelope(await client.post("/api/snapshot", json={"nodes": nodes, "center": CENTER}), 422)
    assert (
        body["code"] == "too_many_nodes"
        and body["error"].startswith("Too many nodes")
        and "100" in body["error"]
    )
    nodes = nodes[:100]
    assert (await client.post("/api/snapshot", json={"nodes": nodes, "center": CENTER})).status_code == 201


async def test_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/api/snapshot", content=b"x" * (300 * 1024), headers={"Content-Type": "application/json"}
    )
    assert_envelope(resp, 413, "payload_too_large")


async def test_two_app_instances_share_snapshots(redis_client: aioredis.Redis) -> None:
    settings = make_settings(SNAPSHOT_MAX_NODES=5)
    async with running_app(settings) as (_, one), running_app(settings) as (_, two):
        resp = await one.post("/api/snapshot", json={"nodes": NODES, "center": CENTER})
        assert resp.status_code == 201
        token = resp.json()["token"]
        resp = await two.get(f"/api/snapshot/{token}")
        assert resp.status_code == 200 and resp.json()["nodes"] == NODES
        resp = await two.post("/api/snapshot", json={"nodes": NODES[:1], "center": CENTER})
        assert (await one.get(f"/api/snapshot/{resp.json()['token']}")).json()["nodes"] == NODES[:1]


async def test_snapshot_saves_are_rate_limited(redis_client: aioredis.Redis) -> None:
    await redis_client.flushdb()
    async with running_app(make_settings(SNAPSHOT_RATE_LIMIT=2)) as (_, client):
        for _ in range(2):
            assert (
                await client.post("/api/snapshot", json={"nodes": NODES, "center": CENTER})
            ).status_code == 201
        resp = await client.post("/api/snapshot", json={"nodes": NODES, "center": CENTER})
        assert_envelope(resp, 429, "rate_limited")
        assert "retry-after" in resp.headers
    await redis_client.flushdb()
