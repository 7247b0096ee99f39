"""Neo4j access for the api: every read is a read transaction with a server-side timeout."""

from __future__ import annotations

from typing import Any

from neo4j import AsyncDriver, AsyncResult, Query, RoutingControl


async def _records(result: AsyncResult) -> list[dict[str, Any]]:
    return await result.data()


async def read(
    driver: AsyncDriver,
    cypher: str,
    params: dict[str, Any] | None = None,
    *,
    timeout: float,
    database: str = "neo4j",
) -> list[dict[str, Any]]:
    """Run one parameterised read query (routed to readers) and return its rows as dicts."""
    rows: list[dict[str, Any]] = await driver.execute_query(
        Query(cypher, timeout=timeout),  # cypher is built from fixed fragments only
        parameters_=params or {},
        routing_=RoutingControl.READ,
        database_=database,
        bookmark_manager_=None,
        result_transformer_=_records,
    )
    return rows
