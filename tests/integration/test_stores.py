"""Each store answers through the `common` factories, and an unreachable one gives one clear error."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import aio_pika
import pytest
import redis.asyncio as aioredis
from neo4j import AsyncDriver, AsyncGraphDatabase, NotificationClassification, ResultSummary
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from common.clients import create_neo4j_driver, create_postgres_pool, create_redis
from common.errors import ServiceUnavailableError
from common.settings import Neo4jSettings, PostgresSettings, RedisSettings
from graphinator.writer import await_fulltext_refresh
from schema_init.neo4j_schema import FULLTEXT_INDEXES, FULLTEXT_STATEMENTS, STATEMENTS, apply_neo4j_schema
from tests.conftest import REPO_ROOT, free_port

pytestmark = pytest.mark.integration


async def test_neo4j_answers_and_has_the_schema(neo4j_driver: AsyncDriver) -> None:
    records, _, _ = await neo4j_driver.execute_query(
        "SHOW CONSTRAINTS YIELD name RETURN collect(name) AS names"
    )
    names = set(records[0]["names"])
    assert {
        "artist_id",
        "label_id",
        "master_id",
        "release_id",
        "user_id",
        "genre_name",
        "style_name",
    } <= names
    records, _, _ = await neo4j_driver.execute_query(
        "SHOW FULLTEXT INDEXES YIELD name, state RETURN collect([name, state]) AS idx"
    )
    states = dict(records[0]["idx"])
    assert states["artist_name_fulltext"] == "ONLINE"


async def fulltext_config(driver: AsyncDriver, name: str) -> dict[str, Any]:
    records, _, _ = await driver.execute_query(
        "SHOW FULLTEXT INDEXES YIELD name, state, options WHERE name = $name "
        "RETURN state, options.indexConfig AS config",
        name=name,
    )
    assert len(records) == 1, f"{name} is missing"
    return {"state": records[0]["state"], **records[0]["config"]}


async def test_schema_init_fails_with_one_clear_line_when_a_constraint_cannot_be_made(
    neo4j_driver: AsyncDriver,
) -> None:
    """Two Style nodes of one name (written while the constraint was missing) make the unique
    constraint fail: `python -m schema_init` exits 1 with the statement and Neo4j's reason in one
    log line, no traceback."""
    await neo4j_driver.execute_query("DROP CONSTRAINT style_name IF EXISTS")
    await neo4j_driver.execute_query("CREATE (:Style {name: 'Twice Over'}), (:Style {name: 'Twice Over'})")
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "schema_init",
            cwd=REPO_ROOT,
            env=dict(os.environ, LOG_FORMAT="json"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 300)
        output = out.decode()
        assert proc.returncode == 1, output
        [failed] = [line for line in output.splitlines() if "schema_init_failed" in line]
        assert "CREATE CONSTRAINT style_name failed: Unable to create Constraint" in failed
        assert "Twice Over" in failed  # Neo4j names the nodes that break it
        assert "Traceback" not in output
    finally:
        await neo4j_driver.execute_query("MATCH (s:Style {name: 'Twice Over'}) DETACH DELETE s")
        await apply_neo4j_schema(neo4j_driver)


async def test_schema_init_rebuilds_a_fulltext_index_of_an_older_schema(neo4j_driver: AsyncDriver) -> None:
    """A database made by an older schema has strictly consistent full-text indexes (each commit
    refreshed Lucene itself); schema-init rebuilds them eventually consistent, with the data in them."""
    await neo4j_driver.execute_query("MATCH (n:Label {id: 987654321}) DETACH DELETE n")
    await neo4j_driver.execute_query("CREATE (:Label {id: 987654321, name: 'Zyxwvut Older Schema Records'})")
    await neo4j_driver.execute_query("DROP INDEX label_name_fulltext IF EXISTS")
    await neo4j_driver.execute_query(
        "CREATE FULLTEXT INDEX label_name_fulltext FOR (n:Label) ON EACH [n.name]"
    )
    await neo4j_driver.execute_query("CALL db.awaitIndexes(60)")
    assert (await fulltext_config(neo4j_driver, "label_name_fulltext"))[
        "fulltext.eventually_consistent"
    ] is False

    statements = await apply_neo4j_schema(neo4j_driver)

    assert statements == len(STATEMENTS) + len(FULLTEXT_STATEMENTS)
    for name in FULLTEXT_INDEXES:
        config = await fulltext_config(neo4j_driver, name)
        assert config["state"] == "ONLINE", (name, config)
        assert config["fulltext.eventually_consistent"] is True, (name, config)
    await await_fulltext_refresh(neo4j_driver)
    records, _, _ = await neo4j_driver.execute_query(
        "CALL db.index.fulltext.queryNodes('label_name_fulltext', 'zyxwvut') YIELD node RETURN node.id AS id"
    )
    assert [r["id"] for r in records] == [987654321]
    await neo4j_driver.execute_query("MATCH (n:Label {id: 987654321}) DETACH DELETE n")


async def test_local_neo4j_keeps_a_bounded_transaction_log(neo4j_driver: AsyncDriver) -> None:
    """tools/neo4j replaces Neo4j's two days of transaction logs (gigabytes after one load) with a
    size bound, enforced at checkpoints every 5 minutes; it stops a transaction within 200 ms of
    its timeout (not 2 s)."""
    records, _, _ = await neo4j_driver.execute_query(
        "SHOW SETTINGS YIELD name, value WHERE name IN ['db.tx_log.rotation.retention_policy', "
        "'db.checkpoint.interval.time', 'db.transaction.monitor.check.interval'] RETURN name, value"
    )
    assert {r["name"]: r["value"] for r in records} == {
        "db.tx_log.rotation.retention_policy": os.environ.get("NEO4J_TX_LOG_RETENTION", "1G size"),
        "db.checkpoint.interval.time": "5m",
        "db.transaction.monitor.check.interval": "200ms",
    }


async def test_neo4j_clients_are_not_told_about_labels_and_properties_a_young_store_lacks(
    neo4j_driver: AsyncDriver, neo4j_settings: Neo4jSettings
) -> None:
    # Every query of a fresh database named something not created yet (graphinator's hash check
    # reads `sha256` before the first write): each logged a multi-line warning.
    query = "MATCH (n:NoSuchLabelYet) RETURN n.no_such_property_yet AS value"
    plain = AsyncGraphDatabase.driver(
        neo4j_settings.neo4j_uri,
        auth=(neo4j_settings.neo4j_username, neo4j_settings.neo4j_password.get_secret_value()),
    )
    try:
        _, told, _ = await plain.execute_query(query)
    finally:
        await plain.close()

    def unrecognized(summary: ResultSummary) -> list[str]:
        return [
            status.status_description
            for status in summary.gql_status_objects
            if status.is_notification and status.classification == NotificationClassification.UNRECOGNIZED
        ]

    assert len(unrecognized(told)) == 2  # the label and the property
    records, summary, _ = await neo4j_driver.execute_query(query)
    assert records == []
    assert unrecognized(summary) == []


async def test_postgres_answers_and_migrations_are_recorded(
    pg_pool: AsyncConnectionPool[AsyncConnection[dict[str, Any]]],
) -> None:
    async with pg_pool.connection() as conn:
        cur = await conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        versions = [row["version"] for row in await cur.fetchall()]
    assert versions[:2] == [1, 2]


async def test_redis_round_trip(redis_client: aioredis.Redis) -> None:
    await redis_client.set("test:foundation", "ok", ex=10)
    assert await redis_client.get("test:foundation") == "ok"


async def test_rabbitmq_round_trip(amqp_connection: Any) -> None:
    channel = await amqp_connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await channel.default_exchange.publish(aio_pika.Message(b"hello"), routing_key=queue.name)
    message = await queue.get(timeout=5)
    assert message is not None
    assert message.body == b"hello"
    await message.ack()
    await channel.close()


@pytest.mark.parametrize(
    ("factory", "settings", "needle"),
    [
        (
            create_redis,
            RedisSettings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"),
            "cannot reach redis at redis://",
        ),
        (
            create_neo4j_driver,
            Neo4jSettings(NEO4J_URI=f"bolt://127.0.0.1:{free_port()}"),
            "cannot reach neo4j at bolt://",
        ),
        (
            create_postgres_pool,
            PostgresSettings(POSTGRES_ADDRESS=f"127.0.0.1:{free_port()}"),
            "cannot reach postgresql at 127.0.0.1:",
        ),
    ],
)
async def test_unreachable_store_gives_one_clear_error(factory: Any, settings: Any, needle: str) -> None:
    with pytest.raises(ServiceUnavailableError) as info:
        await factory(settings, attempts=2)
    assert needle in str(info.value)
