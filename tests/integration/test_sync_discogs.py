"""Sync end to end through HTTP: the api (ASGI, real lifespan) queues, the curator (a real
`python -m curator` process) syncs from the fake Discogs server into Neo4j and PostgreSQL, and
the user routes show the result. Real Neo4j, PostgreSQL, Redis and RabbitMQ of this stack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from neo4j import AsyncDriver

from common.amqp import SYNC_QUEUE
from tests.conftest import free_port
from tests.fakes.discogs_api import FakeDiscogs, FakeUser
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


RATE_LIMIT = 3  # the curator's and the fake's: 3 requests per 3 s (= 60 per minute)
RATE_WINDOW_S = 3.0
DUMP_ARTIST = 9001


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscogs]:
    server = FakeDiscogs(rate_limit=RATE_LIMIT, window_s=RATE_WINDOW_S)
    await server.start(free_port())
    yield server
    await server.stop()


@pytest.fixture
async def stores(
    clean_postgres: Any, clean_neo4j: AsyncDriver, clean_redis: aioredis.Redis, amqp_connection: Any
) -> None:
    await purge_sync_queue(amqp_connection)


@pytest.fixture
async def api(fake: FakeDiscogs, stores: None) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_api(api_settings(fake)) as pair:
        yield pair


@pytest.fixture
async def client(api: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return api[1]


@pytest.fixture
async def curator(fake: FakeDiscogs, stores: None) -> AsyncIterator[CuratorProcess]:
    proc = CuratorProcess(
        fake, DISCOGS_RATE_LIMIT=RATE_LIMIT, DISCOGS_RATE_WINDOW_S=RATE_WINDOW_S, DISCOGS_RATE_MARGIN_S=0.1
    )
    await proc.start()
    yield proc
    await proc.stop()


async def seed_dump_catalogue(driver: AsyncDriver) -> None:
    """Releases 1-10 as the dump would have them (by one artist, on one label, genre Rock)."""
    await driver.execute_query(
        """
        MERGE (a:Artist {id: $artist}) SET a.name = 'Dump Artist'
        MERGE (l:Label {id: 7001}) SET l.name = 'Dump Label'
        MERGE (g:Genre {name: 'Rock'})
        WITH a, l, g
        UNWIND range(1, 10) AS n
        MERGE (r:Release {id: n}) SET r.title = 'Dump Release ' + n, r.year = 1970 + n, r.sha256 = 'x'
        MERGE (r)-[:BY]->(a)
        MERGE (r)-[:ON {catno: 'D' + n}]->(l)
        MERGE (r)-[:IS]->(g)
        """,
        artist=DUMP_ARTIST,
    )


def fill(user: FakeUser) -> None:
    """230 collection instances (dump releases 1-5, release 1 twice, 224 stubs 100-323) and 120
    wants (stubs 400-518 and dump release 7)."""
    for n in range(1, 6):
        user.add_collected(n, f"Dump Release {n}", rating=n, artist="Dump Artist", artist_id=DUMP_ARTIST)
    user.add_collected(1, "Dump Release 1", folder_id=3, artist="Dump Artist", artist_id=DUMP_ARTIST)
    for n in range(100, 324):
        user.add_collected(
            n,
            f"Stub {n}",
            year=1990 + n % 20,
            artist=f"Artist {n % 7}",
            artist_id=2000 + n % 7,
            label="Stub Label",
        )
    for n in range(400, 519):
        user.add_wanted(n, f"Wanted {n}", notes="first press", year=2001)
    user.add_wanted(7, "Dump Release 7", artist="Dump Artist", artist_id=DUMP_ARTIST)


async def linked_user(
    client: httpx.AsyncClient, fake: FakeDiscogs, pg_pool: Any, username: str = "collector"
) -> tuple[FakeUser, dict[str, str]]:
    user = fake.add_user(username)
    await configure_consumer_key(client, pg_pool, fake)
    _, headers = await new_user(client)
    await link_discogs(client, fake, headers, username)
    fake.reset_counters()  # measure the curator alone
    return user, headers


async def start_sync(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    resp = await client.post("/api/sync", headers=headers)
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "queued"
    sync_id: str = resp.json()["sync_id"]
    return sync_id


async def graph_state(driver: AsyncDriver, user_id: str) -> dict[str, Any]:
    records, _, _ = await driver.execute_query(
        """
        MATCH (u:User {id: $user_id})
        RETURN u.discogs_username AS username,
               COLLECT { MATCH (u)-[c:COLLECTED]->(r)
                         RETURN [r.id, c.instance_id, c.rating, c.folder_id] } AS collected,
               COLLECT { MATCH (u)-[w:WANTS]->(r) RETURN r.id } AS wanted
        """,
        user_id=user_id,
    )
    return dict(records[0]) if records else {}


async def me(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    user_id: str = (await client.get("/api/auth/me", headers=headers)).json()["id"]
    return user_id


# ---------------------------------------------------------------------------------------------


async def test_sync_refuses_without_a_link_or_a_consumer_key(
    client: httpx.AsyncClient, fake: FakeDiscogs, pg_pool: Any
) -> None:
    assert (await client.post("/api/sync")).status_code == 401
    _, headers = await new_user(client)
    resp = await client.post("/api/sync", headers=headers)
    assert resp.status_code == 409
    assert resp.json()["code"] == "discogs_not_connected"

    await linked_user(client, fake, pg_pool, "someone")
    _, headers = await new_user(client)
    fake.add_user("other")
    await link_discogs(client, fake, headers, "other")
    async with pg_pool.connection() as conn:
        await conn.execute("DELETE FROM app_config WHERE key = 'discogs_consumer_secret'")
    resp = await client.post("/api/sync", headers=headers)
    assert resp.status_code == 503
    assert resp.json()["code"] == "discogs_not_configured"
    assert (await client.get("/api/sync/status", headers=headers)).json() == {"syncs": []}


async def test_sync_fills_graph_and_tables_then_a_second_sync_updates_and_removes(
    client: httpx.AsyncClient,
    fake: FakeDiscogs,
    curator: CuratorProcess,
    pg_pool: Any,
    neo4j_driver: AsyncDriver,
) -> None:
    await seed_dump_catalogue(neo4j_driver)
    user, headers = await linked_user(client, fake, pg_pool)
    fill(user)
    user_id = await me(client, headers)

    sync_id = await start_sync(client, headers)
    result = await wait_for_sync(client, headers, sync_id)
    assert result["status"] == "completed", result
    assert result["collection_count"] == 230
    assert result["wantlist_count"] == 120
    assert result["items_synced"] == 350
    assert result["pages_fetched"] == 5  # 3 collection pages + 2 wantlist pages of 100
    assert result["error"] is None and result["completed_at"]
    assert (await client.get("/api/sync/status", headers=headers)).json()["syncs"][0]["sync_id"] == sync_id

    # The fake's sliding-window counter never saw more than the limit, and nothing was refused.
    assert fake.max_in_window <= RATE_LIMIT
    assert 429 not in fake.status_counts
    assert "HMAC-SHA1" in fake.signature_methods_seen

    # Neo4j: one COLLECTED per instance (release 1 twice), WANTS per release, stubs for the rest.
    state = await graph_state(neo4j_driver, user_id)
    assert state["username"] == "collector"
    assert len(state["collected"]) == 230
    assert sorted(c[0] for c in state["collected"] if c[0] == 1) == [1, 1]
    assert len(state["wanted"]) == 120 and 7 in state["wanted"]
    records, _, _ = await neo4j_driver.execute_query(
        """MATCH (r:Release {id: 150}) RETURN r.title AS title, r.year AS year, r.stub AS stub,
           COLLECT { MATCH (r)-[:BY]->(a) RETURN a.name } AS artists,
           COLLECT { MATCH (r)-[:IS]->(g:Genre) RETURN g.name } AS genres"""
    )
    assert dict(records[0]) == {
        "title": "Stub 150",
        "year": 2000,
        "stub": True,
        "artists": ["Artist 3"],
        "genres": ["Electronic"],
    }
    records, _, _ = await neo4j_driver.execute_query(
        "MATCH (r:Release {id: 3}) RETURN r.title AS title, r.stub AS stub, r.sha256 AS sha"
    )
    assert dict(records[0]) == {"title": "Dump Release 3", "stub": None, "sha": "x"}  # dump data untouched

    # PostgreSQL mirror.
    async with pg_pool.connection() as conn:
        counts = await (
            await conn.execute(
                """SELECT (SELECT count(*) FROM user_collections) AS c,
                          (SELECT count(*) FROM user_wantlists) AS w,
                          (SELECT count(DISTINCT release_id) FROM user_collections) AS cr"""
            )
        ).fetchone()
        row = await (
            await conn.execute(
                "SELECT title, artist, year, format, label, rating, folder_id, date_added "
                "FROM user_collections WHERE release_id = 150"
            )
        ).fetchone()
        want = await (
            await conn.execute("SELECT title, notes, year FROM user_wantlists WHERE release_id = 450")
        ).fetchone()
    assert counts == {"c": 230, "w": 120, "cr": 229}
    assert row["title"] == "Stub 150" and row["artist"] == "Artist 3" and row["year"] == 2000
    assert row["format"] == "Vinyl" and row["label"] == "Stub Label" and row["folder_id"] == 1
    assert row["date_added"] is not None
    assert want == {"title": "Wanted 450", "notes": "first press", "year": 2001}

    # The user routes (api) reflect it.
    coll = (await client.get("/api/user/collection", params={"limit": 200}, headers=headers)).json()
    assert coll["total"] == 230 and coll["has_more"] is True
    wants = (await client.get("/api/user/wantlist", params={"limit": 200}, headers=headers)).json()
    assert wants["total"] == 120
    stats = (await client.get("/api/user/collection/stats", headers=headers)).json()
    assert stats["total"] == 230
    assert {"name": "Rock", "count": 6} in stats["by_genre"]
    assert sum(d["count"] for d in stats["by_decade"]) == 230
    recs = (await client.get("/api/user/recommendations", headers=headers)).json()
    rec_ids = {r["id"] for r in recs["recommendations"]}
    assert {"6", "8", "9", "10"} <= rec_ids  # by the collected dump artist, neither owned nor wanted
    assert not rec_ids & {"1", "2", "3", "4", "5", "7"}
    status = (await client.get("/api/user/status", params={"ids": "1,7,6,150"}, headers=headers)).json()
    assert status["status"] == {
        "1": {"in_collection": True, "in_wantlist": False},
        "7": {"in_collection": False, "in_wantlist": True},
        "6": {"in_collection": False, "in_wantlist": False},
        "150": {"in_collection": True, "in_wantlist": False},
    }

    # Discogs changes: removed, re-rated, added; then a second sync.
    user.collection = [
        i
        for i in user.collection
        if i["id"] != 2 and not (i["id"] == 1 and i["folder_id"] == 3) and not 100 <= i["id"] < 150
    ]
    next(i for i in user.collection if i["id"] == 3)["rating"] = 5
    user.add_collected(600, "New Stub", date_added="2030-01-01T00:00:00-07:00")
    user.add_collected(8, "Dump Release 8", artist="Dump Artist", artist_id=DUMP_ARTIST)
    user.wants = [w for w in user.wants if not 400 <= w["id"] < 410]
    user.add_wanted(10, "Dump Release 10")
    fake.reset_counters()

    second = await wait_for_sync(client, headers, await start_sync(client, headers))
    assert second["status"] == "completed", second
    assert second["collection_count"] == 180 and second["wantlist_count"] == 111
    assert fake.max_in_window <= RATE_LIMIT

    state = await graph_state(neo4j_driver, user_id)
    releases = [c[0] for c in state["collected"]]
    assert len(releases) == 180
    assert 2 not in releases and releases.count(1) == 1 and 600 in releases and 8 in releases
    assert not any(100 <= r < 150 for r in releases)
    assert next(c for c in state["collected"] if c[0] == 3)[2] == 5
    assert len(state["wanted"]) == 111 and 10 in state["wanted"] and 405 not in state["wanted"]
    # Stubs nobody references any more are gone; dump releases stay.
    records, _, _ = await neo4j_driver.execute_query(
        "MATCH (r:Release) WHERE r.id IN [2, 120, 405] RETURN collect(r.id) AS ids"
    )
    assert records[0]["ids"] == [2]
    async with pg_pool.connection() as conn:
        counts = await (
            await conn.execute(
                """SELECT (SELECT count(*) FROM user_collections) AS c,
                          (SELECT count(*) FROM user_wantlists) AS w,
                          (SELECT rating FROM user_collections WHERE release_id = 3) AS r3,
                          (SELECT count(*) FROM user_collections WHERE release_id = 2) AS r2"""
            )
        ).fetchone()
    assert counts == {"c": 180, "w": 111, "r3": 5, "r2": 0}
    coll = (await client.get("/api/user/collection", params={"limit": 1}, headers=headers)).json()
    assert coll["total"] == 180 and coll["releases"][0]["id"] == "600"  # newest first
    history = (await client.get("/api/sync/status", headers=headers)).json()["syncs"]
    assert [s["status"] for s in history] == ["completed", "completed"]


async def test_a_429_is_retried_after_back_off(
    client: httpx.AsyncClient, fake: FakeDiscogs, curator: CuratorProcess, pg_pool: Any
) -> None:
    user, headers = await linked_user(client, fake, pg_pool)
    for n in range(1, 151):
        user.add_collected(n, f"R{n}")
    user.add_wanted(999, "W")
    fake.fail_next(429)
    result = await wait_for_sync(client, headers, await start_sync(client, headers))
    assert result["status"] == "completed", result
    assert result["collection_count"] == 150 and result["wantlist_count"] == 1
    assert fake.status_counts[429] == 1
    first, retry = fake.request_log[0], fake.request_log[1]
    assert first[2] == 429 and retry[2] == 200 and retry[1] == first[1]  # the same page again ...
    assert retry[0] - first[0] >= 1.0  # ... after the configured back-off (DISCOGS_RETRY_AFTER_S=1)
    assert fake.max_in_window <= RATE_LIMIT


async def test_discogs_down_fails_the_sync_with_a_readable_error_and_keeps_the_data(
    client: httpx.AsyncClient, fake: FakeDiscogs, curator: CuratorProcess, pg_pool: Any
) -> None:
    user, headers = await linked_user(client, fake, pg_pool)
    for n in range(1, 4):
        user.add_collected(n, f"R{n}")
    assert (await wait_for_sync(client, headers, await start_sync(client, headers)))["status"] == "completed"

    fake.always_fail = 503
    result = await wait_for_sync(client, headers, await start_sync(client, headers))
    assert result["status"] == "failed"
    assert "Discogs is unavailable: HTTP 503" in result["error"]
    assert result["completed_at"]

    fake.always_fail = None
    fake.access_tokens.clear()  # the user revoked the app on discogs.com
    result = await wait_for_sync(client, headers, await start_sync(client, headers))
    assert result["status"] == "failed"
    assert "reconnect your Discogs account" in result["error"]

    await fake.stop()  # nothing listens any more
    result = await wait_for_sync(client, headers, await start_sync(client, headers))
    assert result["status"] == "failed"
    assert "cannot reach Discogs" in result["error"]

    # Nothing that was synced before was removed by the failed syncs.
    coll = (await client.get("/api/user/collection", headers=headers)).json()
    assert coll["total"] == 3
    async with pg_pool.connection() as conn:
        n = await (await conn.execute("SELECT count(*) AS n FROM user_collections")).fetchone()
    assert n == {"n": 3}
    statuses = [s["status"] for s in (await client.get("/api/sync/status", headers=headers)).json()["syncs"]]
    assert statuses == ["failed", "failed", "failed", "completed"]


async def test_concurrent_requests_make_one_sync_across_replicas(
    fake: FakeDiscogs, stores: None, pg_pool: Any
) -> None:
    # No curator: the first sync stays queued while both replicas are asked at once.
    async with running_api(api_settings(fake)) as (_, one), running_api(api_settings(fake)) as (_, two):
        _, headers = await linked_user(one, fake, pg_pool)
        responses = await asyncio.gather(
            *(c.post("/api/sync", headers=headers) for c in (one, two, one, two))
        )
        assert all(r.status_code == 202 for r in responses), [r.text for r in responses]
        bodies = [r.json() for r in responses]
        assert len({b["sync_id"] for b in bodies}) == 1
        assert sorted(b["status"] for b in bodies) == ["already_running"] * 3 + ["queued"]
        syncs = (await two.get("/api/sync/status", headers=headers)).json()["syncs"]
        assert len(syncs) == 1 and syncs[0]["status"] == "queued"
    async with pg_pool.connection() as conn:
        n = await (await conn.execute("SELECT count(*) AS n FROM sync_history")).fetchone()
    assert n == {"n": 1}


async def test_sync_lookup_is_per_user(client: httpx.AsyncClient, fake: FakeDiscogs, pg_pool: Any) -> None:
    _, alice = await linked_user(client, fake, pg_pool)
    sync_id = await start_sync(client, alice)
    _, bob = await new_user(client, "bob")
    assert (await client.get(f"/api/sync/{sync_id}", headers=bob)).status_code == 404
    assert (await client.get("/api/sync/not-a-uuid", headers=alice)).status_code == 422
    body = (await client.get(f"/api/sync/{sync_id}", headers=alice)).json()
    assert body["status"] == "queued" and body["started_at"] is None


async def test_revoke_with_purge_removes_the_synced_data(
    client: httpx.AsyncClient, fake: FakeDiscogs, curator: CuratorProcess, pg_pool: Any
) -> None:
    user, headers = await linked_user(client, fake, pg_pool)
    user.add_collected(11, "Kept until purge")
    user.add_wanted(12, "Wanted until purge")
    assert (await wait_for_sync(client, headers, await start_sync(client, headers)))["status"] == "completed"
    assert (await client.get("/api/user/collection", headers=headers)).json()["total"] == 1

    resp = await client.delete("/api/oauth/revoke/discogs", params={"purge": "true"}, headers=headers)
    assert resp.json() == {"revoked": True, "purged": True}
    assert (await client.get("/api/user/collection", headers=headers)).json()["total"] == 0
    assert (await client.get("/api/user/wantlist", headers=headers)).json()["total"] == 0
    async with pg_pool.connection() as conn:
        counts = await (
            await conn.execute(
                """SELECT (SELECT count(*) FROM user_collections) AS c,
                          (SELECT count(*) FROM user_wantlists) AS w"""
            )
        ).fetchone()
    assert counts == {"c": 0, "w": 0}
    resp = await client.post("/api/sync", headers=headers)
    assert resp.status_code == 409 and resp.json()["code"] == "discogs_not_connected"


async def test_broker_down_answers_503_and_leaves_no_active_sync(
    fake: FakeDiscogs, stores: None, pg_pool: Any
) -> None:
    closed = f"amqp://discogsography:discogsography@127.0.0.1:{free_port()}/"
    async with running_api(api_settings(fake, AMQP_URL=closed)) as (_, client):
        _, headers = await linked_user(client, fake, pg_pool)
        resp = await client.post("/api/sync", headers=headers)
        assert resp.status_code == 503
        assert resp.json()["code"] == "queue_unavailable"
        syncs = (await client.get("/api/sync/status", headers=headers)).json()["syncs"]
        assert [(s["status"], s["error"]) for s in syncs] == [
            ("failed", "The sync could not be queued (message broker unavailable)")
        ]
        # The failed row does not block the next attempt (still 503 here, not 202 already_running).
        assert (await client.post("/api/sync", headers=headers)).status_code == 503


async def test_a_sync_queue_deleted_while_the_api_runs_is_declared_again_and_takes_the_request(
    client: httpx.AsyncClient, fake: FakeDiscogs, pg_pool: Any, amqp_connection: Any
) -> None:
    _, headers = await linked_user(client, fake, pg_pool)
    channel = await amqp_connection.channel()
    try:
        await channel.queue_delete(SYNC_QUEUE)  # the api's publisher declared it at start
        resp = await client.post("/api/sync", headers=headers)
        assert resp.status_code == 202, resp.text
        queue = await channel.declare_queue(SYNC_QUEUE, passive=True)  # raises if nobody re-declared it
        message = await queue.get(fail=False)
        assert message is not None, "the request was confirmed but dropped"
        assert orjson.loads(message.body)["sync_id"] == resp.json()["sync_id"]
        await message.ack()
    finally:
        await purge_sync_queue(amqp_connection)  # declares the topology again for the next tests
        await channel.close()


async def test_status_lists_the_latest_ten_newest_first(
    client: httpx.AsyncClient, fake: FakeDiscogs, pg_pool: Any
) -> None:
    _, headers = await linked_user(client, fake, pg_pool)
    user_id = await me(client, headers)
    async with pg_pool.connection() as conn:
        for n in range(12):
            await conn.execute(
                """INSERT INTO sync_history (user_id, status, items_synced, created_at, completed_at)
                   VALUES (%s, 'completed', %s, now() - make_interval(mins => %s), now())""",
                (user_id, n, 60 - n),
            )
    syncs = (await client.get("/api/sync/status", headers=headers)).json()["syncs"]
    assert [s["items_synced"] for s in syncs] == [11, 10, 9, 8, 7, 6, 5, 4, 3, 2]
    assert set(syncs[0]) == {
        "sync_id",
        "sync_type",
        "status",
        "items_synced",
        "collection_count",
        "wantlist_count",
        "pages_fetched",
        "error",
        "created_at",
        "started_at",
        "completed_at",
    }
