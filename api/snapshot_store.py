"""Shareable graph snapshots stored in Redis (`snapshot:<token>`, TTL = SNAPSHOT_TTL_DAYS), so every
api replica serves every snapshot and they survive restarts (reference §7 [R])."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import redis.asyncio as aioredis

KEY_PREFIX = "snapshot:"
TOKEN_BYTES = 12  # 16 url-safe characters, 96 random bits


class TooManyNodesError(ValueError):
    def __init__(self, count: int, maximum: int) -> None:
        super().__init__(f"Too many nodes: {count} (max {maximum})")
        self.count = count
        self.maximum = maximum


@dataclass(frozen=True)
class SavedSnapshot:
    token: str
    created_at: datetime
    expires_at: datetime


class SnapshotStore:
    def __init__(self, redis_client: aioredis.Redis, ttl_days: int, max_nodes: int) -> None:
        self.redis = redis_client
        self.ttl = timedelta(days=ttl_days)
        self.max_nodes = max_nodes

    async def save(self, nodes: list[dict[str, Any]], center: dict[str, Any]) -> SavedSnapshot:
        if len(nodes) > self.max_nodes:
            raise TooManyNodesError(len(nodes), self.max_nodes)
        created = datetime.now(UTC)
        expires = created + self.ttl
        entry = orjson.dumps(
            {
                "nodes": nodes,
                "center": center,
                "created_at": created.isoformat(),
                "expires_at": expires.isoformat(),
            }
        )
        while True:  # SET NX: a (practically impossible) token collision never overwrites a snapshot
            token = secrets.token_urlsafe(TOKEN_BYTES)
            if await self.redis.set(KEY_PREFIX + token, entry, ex=int(self.ttl.total_seconds()), nx=True):
                return SavedSnapshot(token, created, expires)

    async def load(self, token: str) -> dict[str, Any] | None:
        raw = await self.redis.get(KEY_PREFIX + token)
        if raw is None:
            return None
        entry: dict[str, Any] = orjson.loads(raw)
        return entry
