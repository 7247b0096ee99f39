"""The curator as a process: only its health server listens; a crash mid-sync is picked up again;
rows left `running` are re-queued or failed at start-up; bad messages are dead-lettered."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from neo4j import AsyncDriver

from common.amqp import (
    DLQ_REASON_HEADER,
    SYNC_EXCHANGE,
    SYNC_QUEUE,
    SYNC_ROUTING_KEY,
    declare_sync_topology,
    dlq_name,
)
from common.clients import create_amqp_connection
from common.settings import AmqpSettings
from tests.conftest import free_port
from tests.fakes.discogs_api import FakeDiscogs
from tests.integration.discogs_support import (
    CuratorProcess,
    api_settings,
    configure_consumer_key,
    link_discogs,
    new_user,
    purge_sync_queue,
    running_api,
    wait_for_sync,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscogs]:
    server = FakeDiscogs()
    await server.start(free_port())
    yield server
    await server.stop()


@pytest.fixture
async def stores(
    clean_postgres: Any, clean_neo4j: AsyncDriver, clean_redis: aioredis.Redis, amqp_connection: Any
) -> None:
    await purge_sync_queue(amqp_connection)
    channel = await amqp_connection.channel()
    await (await channel.declare_queue(dlq_name(SYNC_QUEUE), passive=True)).purge()
    await channel.close()


@pytest.fixture
async def api(fake: FakeDiscogs, stores: None) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_api(api_settings(fake)) as pair:
        yield pair


def listening_ports(pid: int) -> set[int]:
    """TCP ports the process listens on (from /proc: its socket inodes in LISTEN state)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def test_curator_serves_only_its_health_server(fake: FakeDiscogs, stores: None) -> None:
    curator = CuratorProcess(fake)
    await curator.start()
    try:
        assert curator.proc is not None
        assert listening_ports(curator.proc.pid) == {curator.health_port}
        async with httpx.AsyncClient(base_url=curator.health_url) as http:
            health = (await http.get("/health")).json()
            assert health["status"] == "healthy" and health["service"] == "curator"
            assert health["active_syncs"] == 0
            ready = await http.get("/ready")
            assert ready.status_code == 200
            assert set(ready.json()["checks"]) == {"postgresql", "neo4j", "rabbitmq"}
            assert "curator_syncs_total" in (await http.get("/metrics")).text
            for path in ("/api/sync", "/api/sync/status", "/docs", "/"):
                assert (await http.get(path)).status_code == 404
    finally:
        await curator.stop()
    assert curator.proc.returncode == 0  # SIGTERM is a clean shutdown


async def test_a_crash_mid_sync_is_picked_up_by_the_next_worker(
    api: tuple[FastAPI, httpx.AsyncClient], fake: FakeDiscogs, pg_pool: Any
) -> None:
    _, client = api
    user = fake.add_user("crashy")
    for n in range(1, 801):
        user.add_collected(n, f"R{n}")
    await configure_consumer_key(client, pg_pool, fake)
    _, headers = await new_user(client)
    await link_discogs(client, fake, headers, "crashy")
    fake.delay_s = 0.4  # a slow Discogs: 8 collection pages take a few seconds

    first = CuratorProcess(fake, DISCOGS_RATE_LIMIT=60, DISCOGS_RATE_WINDOW_S=60)
    await first.start()
    try:
        sync_id = (await client.post("/api/sync", headers=headers)).json()["sync_id"]
        deadline = asyncio.get_running_loop().time() + 60
        while True:  # wait until the worker is inside the sync (it heartbeats page counts)
            body = (await client.get(f"/api/sync/{sync_id}", headers=headers)).json()
            if body["status"] == "running" and (body["pages_fetched"] or 0) >= 1:
                break
            assert asyncio.get_running_loop().time() < deadline, body
            await asyncio.sleep(0.1)
    finally:
        first.kill()  # no clean-up, no ack: the row stays `running`, the message unacked
    assert (await client.get(f"/api/sync/{sync_id}", headers=headers)).json()["status"] == "running"

    fake.delay_s = 0.0
    second = CuratorProcess(fake, DISCOGS_RATE_LIMIT=60, DISCOGS_RATE_WINDOW_S=60)
    await second.start()
    try:
        result = await wait_for_sync(client, headers, sync_id)
    finally:
        await second.stop()
    assert result["status"] == "completed", result
    assert result["collection_count"] == 800
    async with pg_pool.connection() as conn:
        row = await (
            await conn.execute("SELECT attempts FROM sync_history WHERE id = %s", (sync_id,))
        ).fetchone()
    assert row == {"attempts": 2}


async def test_graceful_shutdown_hands_the_sync_back(
    api: tuple[FastAPI, httpx.AsyncClient], fake: FakeDiscogs, pg_pool: Any
) -> None:
    _, client = api
    user = fake.add_user("patient")
    for n in range(1, 501):
        user.add_collected(n, f"R{n}")
    await configure_consumer_key(client, pg_pool, fake)
    _, headers = await new_user(client)
    await link_discogs(client, fake, headers, "patient")
    fake.delay_s = 0.5
    worker = CuratorProcess(fake, DISCOGS_RATE_LIMIT=60, DISCOGS_RATE_WINDOW_S=60)
    await worker.start()
    sync_id = (await client.post("/api/sync", headers=headers)).json()["sync_id"]
    for _ in range(600):
        if (await client.get(f"/api/sync/{sync_id}", headers=headers)).json()["status"] == "running":
            break
        await asyncio.sleep(0.1)
    await worker.stop()
    assert worker.proc is not None and worker.proc.returncode == 0
    assert (await client.get(f"/api/sync/{sync_id}", headers=headers)).json()["status"] == "queued"

    fake.delay_s = 0.0
    worker = CuratorProcess(fake, DISCOGS_RATE_LIMIT=60, DISCOGS_RATE_WINDOW_S=60)
    await worker.start()
    try:
        result = await wait_for_sync(client, headers, sync_id)
    finally:
        await worker.stop()
    assert result["status"] == "completed" and result["collection_count"] == 500


async def test_stale_running_rows_are_requeued_or_failed_at_start_up(
    fake: FakeDiscogs, stores: None, pg_pool: Any
) -> None:
    async with pg_pool.connection() as conn:
        users = []
        for n in range(2):
            cur = await conn.execute(
                "INSERT INTO users (email, hashed_password) VALUES (%s, 'x') RETURNING id",
                (f"s{n}@example.com",),
            )
            users.append((await cur.fetchone())["id"])
        # Worker died long ago, attempts left -> re-queued and run (this user has no Discogs link).
        cur = await conn.execute(
            """INSERT INTO sync_history (user_id, status, started_at, heartbeat_at, attempts)
               VALUES (%s, 'running', now() - interval '1 hour', now() - interval '1 hour', 1)
               RETURNING id""",
            (users[0],),
        )
        retried = (await cur.fetchone())["id"]
        # Worker died on its last attempt -> failed with a readable error.
        cur = await conn.execute(
            """INSERT INTO sync_history (user_id, status, started_at, heartbeat_at, attempts)
               VALUES (%s, 'running', now() - interval '1 hour', now() - interval '1 hour', 3)
               RETURNING id""",
            (users[1],),
        )
        exhausted = (await cur.fetchone())["id"]

    curator = CuratorProcess(fake, SYNC_MAX_ATTEMPTS=3)
    await curator.start()
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            async with pg_pool.connection() as conn:
                rows = await (
                    await conn.execute(
                        "SELECT id, status, error_message, attempts FROM sync_history ORDER BY attempts"
                    )
                ).fetchall()
            by_id = {r["id"]: r for r in rows}
            if by_id[retried]["status"] in {"completed", "failed"}:
                break
            assert asyncio.get_running_loop().time() < deadline, rows
            await asyncio.sleep(0.2)
    finally:
        await curator.stop()
    assert by_id[exhausted]["status"] == "failed"
    assert "interrupted 3 time(s)" in by_id[exhausted]["error_message"]
    # Picked up again (second attempt), then failed for a reason the user can act on.
    assert by_id[retried]["attempts"] == 2
    assert by_id[retried]["status"] == "failed"
    assert "connect Discogs first" in by_id[retried]["error_message"]


@pytest.mark.parametrize("dlq_deleted", [False, True], ids=["dlq", "dlq-deleted-meanwhile"])
async def test_a_malformed_request_is_dead_lettered_with_the_reason(
    fake: FakeDiscogs, stores: None, amqp_connection: Any, amqp_settings: AmqpSettings, dlq_deleted: bool
) -> None:
    curator = CuratorProcess(fake)
    await curator.start()
    channel = await amqp_connection.channel()
    try:
        if dlq_deleted:  # the curator must declare it again, not have the message confirmed and dropped
            await channel.queue_delete(dlq_name(SYNC_QUEUE))
        exchange = await channel.get_exchange(SYNC_EXCHANGE)
        await exchange.publish(aio_pika.Message(b"not json at all"), routing_key=SYNC_ROUTING_KEY)
        message = await _first_dead_letter(amqp_settings)
        assert message is not None
        assert message.body == b"not json at all"
        assert "not valid JSON" in str(message.headers[DLQ_REASON_HEADER])
    finally:
        await curator.stop()
        await declare_sync_topology(channel)  # for the next tests, whatever happened here
        await channel.close()


async def _first_dead_letter(settings: AmqpSettings) -> aio_pika.abc.AbstractIncomingMessage | None:
    """The first message of the sync DLQ within 10 s, acked. Looked up passively, so a DLQ that
    nobody declared again stays missing. Each look uses its own connection: a quorum queue just
    declared again can answer `noproc` (its process not started yet), and RabbitMQ then closes
    the whole connection."""
    for _ in range(100):
        connection = await create_amqp_connection(settings, attempts=3)
        try:
            channel = await connection.channel()
            dlq = await channel.declare_queue(dlq_name(SYNC_QUEUE), passive=True)
            message: aio_pika.abc.AbstractIncomingMessage | None = await dlq.get(fail=False)
            if message is not None:
                await message.ack()
                return message
        except (aio_pika.exceptions.ChannelNotFoundEntity, aiormq.exceptions.ConnectionInternalError):
            pass  # not declared (yet), or not running yet
        finally:
            await connection.close()
        await asyncio.sleep(0.1)
    return None
