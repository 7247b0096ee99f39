"""The dashboard collector against the real stores of this stack: RabbitMQ management API queue
depths and DLQs, Neo4j counts per label, PostgreSQL row counts, service /health + /ready (a real
health server that answers, one that is not ready, one that does not exist)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import pytest
from neo4j import AsyncDriver
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from common.health import HealthServer
from dashboard.collector import Collector, classify_queue
from dashboard.settings import DashboardSettings
from tests.conftest import free_port

pytestmark = pytest.mark.integration

EXTRACTOR_HEALTH = {
    "version": "20200806",
    "files": {
        "artists": {
            "phase": "parsing",
            "records": 1200,
            "bytes_read": 250,
            "bytes_total": 1000,
            "records_per_s": 400.5,
            "error": None,
        },
        "masters": {
            "phase": "parsing",
            "records": 300,
            "bytes_read": 30,
            "bytes_total": 100,
            "records_per_s": 0,
            "error": None,
            "waiting_for_consumers": True,
        },
        "labels": {
            "phase": "done",
            "records": 25,
            "bytes_read": 10,
            "bytes_total": 10,
            "records_per_s": 0,
            "error": None,
        },
    },
}


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def settings_with(**overrides: Any) -> DashboardSettings:
    base: dict[str, Any] = {
        "EXTRACTOR_URL": dead_url(),
        "GRAPHINATOR_URL": dead_url(),
        "TABLEINATOR_URL": dead_url(),
        "API_HEALTH_URL": dead_url(),
        "CURATOR_URL": dead_url(),
    }
    base.update(overrides)
    return DashboardSettings(**base)


@pytest.fixture
async def collector_factory() -> AsyncIterator[Callable[[DashboardSettings], Awaitable[Collector]]]:
    made: list[Collector] = []

    async def make(settings: DashboardSettings) -> Collector:
        collector = await Collector.create(settings)
        made.append(collector)
        return collector

    yield make
    for collector in made:
        await collector.close()


@pytest.fixture
async def health_servers() -> AsyncIterator[list[HealthServer]]:
    servers: list[HealthServer] = []
    yield servers
    for server in servers:
        await server.stop()


async def wait_for(
    collector: Collector, predicate: Callable[[dict[str, Any]], bool], attempts: int = 40
) -> dict[str, Any]:
    """Collect until `predicate` holds (the management API refreshes its numbers every few seconds)."""
    snapshot: dict[str, Any] = {}
    for _ in range(attempts):
        snapshot = await collector.collect()
        if predicate(snapshot):
            return snapshot
        await asyncio.sleep(0.5)
    raise AssertionError(f"condition never held; last snapshot: {snapshot}")


def test_queue_names_are_classified() -> None:
    assert classify_queue("graphinator.artists") == ("graphinator", "artists", False)
    assert classify_queue("tableinator.releases.dlq") == ("tableinator", "releases", True)
    assert classify_queue("curator.sync-requests.dlq") == ("curator", None, True)
    assert classify_queue("something.else") == (None, None, False)


async def test_store_counts_from_neo4j_and_postgres(
    clean_neo4j: AsyncDriver,
    clean_postgres: AsyncConnectionPool[AsyncConnection[dict[str, Any]]],
    collector_factory: Callable[[DashboardSettings], Awaitable[Collector]],
) -> None:
    async with clean_neo4j.session() as session:
        await (
            await session.run(
                "UNWIND range(1, 3) AS i CREATE (:Artist {id: i, name: 'a' + i})"
                " WITH count(*) AS _ CREATE (r:Release {id: 1, title: 't'})-[:IS]->(:Genre {name: 'Rock'})"
            )
        ).consume()
    async with clean_postgres.connection() as conn:
        await conn.execute(
            "INSERT INTO artists (id, sha256, dump_version, name, data)"
            " SELECT i, 'h', 'v', 'n' || i, '{}'::jsonb FROM generate_series(1, 5) AS i"
        )
        await conn.execute(
            "INSERT INTO labels (id, sha256, dump_version, name, data) VALUES (1, 'h', 'v', 'l', '{}')"
        )

    collector = await collector_factory(settings_with())
    snapshot = await collector.collect()

    neo4j = snapshot["neo4j"]
    assert neo4j["status"] == "up", neo4j["error"]
    assert neo4j["counts"]["Artist"] == 3
    assert neo4j["counts"]["Release"] == 1
    assert neo4j["counts"]["Genre"] == 1
    assert neo4j["relationships"] == 1
    postgres = snapshot["postgres"]
    assert postgres["status"] == "up", postgres["error"]
    assert postgres["counts"]["artists"] == 5
    assert postgres["counts"]["labels"] == 1
    assert postgres["counts"]["releases"] == 0
    assert "artists" in postgres["exact"]
    assert postgres["rows"] == 6
    assert postgres["connection_count"] >= 1
    assert postgres["size_bytes"] > 0
    by_type = {row["type"]: row for row in snapshot["pipeline"]}
    assert by_type["artists"]["neo4j"] == 3
    assert by_type["artists"]["postgres"] == 5

    # The next pass sees growth and reports it as a rate in the history point.
    async with clean_postgres.connection() as conn:
        await conn.execute(
            "INSERT INTO artists (id, sha256, dump_version, name, data)"
            " SELECT i, 'h', 'v', 'n' || i, '{}'::jsonb FROM generate_series(6, 15) AS i"
        )
    second = await collector.collect()
    assert second["postgres"]["counts"]["artists"] == 15
    assert second["point"]["pg_rows"] == 16
    assert second["point"]["pg_rate"] is not None and second["point"]["pg_rate"] > 0
    assert [p["seq"] for p in collector.history] == [snapshot["seq"], second["seq"]]


async def test_queue_depths_and_dlq_from_the_management_api(
    amqp_connection: aio_pika.abc.AbstractRobustConnection,
    collector_factory: Callable[[DashboardSettings], Awaitable[Collector]],
) -> None:
    name = f"dashboard-test-{uuid.uuid4().hex[:8]}"
    channel = await amqp_connection.channel()
    try:
        await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        await channel.declare_queue(f"{name}.dlq", durable=True, arguments={"x-queue-type": "quorum"})
        for i in range(3):
            await channel.default_exchange.publish(aio_pika.Message(body=f"m{i}".encode()), routing_key=name)
        for i in range(2):
            await channel.default_exchange.publish(
                aio_pika.Message(body=f"d{i}".encode()), routing_key=f"{name}.dlq"
            )

        collector = await collector_factory(settings_with())

        def has_depths(s: dict[str, Any]) -> bool:
            queues = {q["name"]: q for q in s["queues"]}
            depths = (queues.get(name, {}).get("messages"), queues.get(f"{name}.dlq", {}).get("messages"))
            return depths == (3, 2)

        snapshot = await wait_for(collector, has_depths)
        assert snapshot["rabbitmq"]["status"] == "up"
        queues = {q["name"]: q for q in snapshot["queues"]}
        assert queues[name]["dlq"] is False
        assert queues[name]["messages_ready"] == 3
        assert queues[f"{name}.dlq"]["dlq"] is True
        assert snapshot["rabbitmq"]["totals"]["dlq_messages"] >= 2
        assert snapshot["rabbitmq"]["totals"]["messages"] >= 3
    finally:
        await channel.queue_delete(name)
        await channel.queue_delete(f"{name}.dlq")
        await channel.close()


async def test_services_ready_not_ready_and_down(
    health_servers: list[HealthServer],
    collector_factory: Callable[[DashboardSettings], Awaitable[Collector]],
) -> None:
    async def ok() -> None:
        return None

    async def broken() -> None:
        raise ConnectionError("neo4j unreachable")

    extractor = HealthServer(
        "extractor", "127.0.0.1", free_port(), ready_checks={"amqp": ok}, status=lambda: EXTRACTOR_HEALTH
    )
    graphinator = HealthServer(
        "graphinator",
        "127.0.0.1",
        free_port(),
        ready_checks={"neo4j": broken},
        status=lambda: {"message_counts": {"artists": 7}, "records_per_s": 3.5},
    )
    for server in (extractor, graphinator):
        await server.start()
        health_servers.append(server)

    collector = await collector_factory(
        settings_with(
            EXTRACTOR_URL=f"http://127.0.0.1:{extractor.port}",
            GRAPHINATOR_URL=f"http://127.0.0.1:{graphinator.port}/",
        )
    )
    snapshot = await collector.collect()
    services = {s["name"]: s for s in snapshot["services"]}

    assert services["extractor"]["status"] == "ready"
    assert services["extractor"]["alive"] is True
    assert services["extractor"]["checks"] == {"amqp": "ok"}

    assert services["graphinator"]["status"] == "not_ready"
    assert services["graphinator"]["alive"] is True
    assert "neo4j unreachable" in services["graphinator"]["error"]
    assert services["graphinator"]["health"]["message_counts"] == {"artists": 7}

    for name in ("tableinator", "api", "curator"):
        assert services[name]["status"] == "down"
        assert services[name]["alive"] is False
        assert services[name]["error"]

    assert snapshot["overall"]["services_down"] == ["tableinator", "api", "curator"]
    assert snapshot["overall"]["status"] == "degraded"

    progress = snapshot["extractor"]
    assert progress["version"] == "20200806"
    assert progress["files"]["artists"]["progress"] == 0.25
    assert progress["files"]["artists"]["records"] == 1200
    assert progress["records_per_s"] == 400.5
    rows = {row["type"]: row for row in snapshot["pipeline"]}
    assert rows["artists"]["phase"] == "parsing"
    assert rows["masters"]["phase"] == "waiting for consumers"
    assert rows["labels"]["extracted"] == 25

    # A service that goes away is shown as down on the next pass.
    await graphinator.stop()
    health_servers.remove(graphinator)
    snapshot = await collector.collect()
    assert {s["name"]: s for s in snapshot["services"]}["graphinator"]["status"] == "down"


async def test_a_store_that_is_down_is_reported_and_the_others_still_answer(
    collector_factory: Callable[[DashboardSettings], Awaitable[Collector]],
) -> None:
    collector = await collector_factory(
        settings_with(
            NEO4J_URI=f"bolt://127.0.0.1:{free_port()}",
            RABBITMQ_MANAGEMENT_URL=dead_url(),
            POSTGRES_ADDRESS=f"127.0.0.1:{free_port()}",
        )
    )
    snapshot = await collector.collect()
    assert snapshot["neo4j"]["status"] == "down"
    assert snapshot["neo4j"]["error"]
    assert snapshot["rabbitmq"]["status"] == "down"
    assert snapshot["queues"] == []
    assert snapshot["postgres"]["status"] == "down"
    assert snapshot["overall"]["status"] == "degraded"
    assert set(snapshot["overall"]["stores_down"]) == {"Neo4j", "PostgreSQL", "RabbitMQ"}

    healthy = await collector_factory(settings_with())
    snapshot = await healthy.collect()
    assert snapshot["neo4j"]["status"] == "up"
    assert snapshot["postgres"]["status"] == "up"
    assert snapshot["rabbitmq"]["status"] == "up"
