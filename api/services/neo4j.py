"""Neo4j access for the api: every read is a read transaction with a server-side timeout."""

from __future__ import annotations

from typing import Any, Final

from neo4j import READ_ACCESS, AsyncDriver, Query
from neo4j.exceptions import DriverError, Neo4jError

# A read that failed on a retryable error (connection lost, cluster leader change, transient
# server error) is run again, at most this many times in all.
ATTEMPTS: Final = 3


async def read(
    driver: AsyncDriver,
    cypher: str,
    params: dict[str, Any] | None = None,
    *,
    timeout: float,
    database: str = "neo4j",
) -> list[dict[str, Any]]:
    """Run one parameterised read query (routed to readers) and return its rows as dicts.

    An auto-commit read transaction: RUN and PULL go out together and the answer ends the
    transaction, one round trip to the server (a managed transaction adds a COMMIT round trip,
    which under load cost as much as the query itself). Retryable failures are retried here
    the way the driver retries managed transactions (a read has no side effects to repeat).
    """
    query = Query(cypher, timeout=timeout)  # cypher is built from fixed fragments only
    for attempt in range(1, ATTEMPTS + 1):
        try:
            async with driver.session(
                database=database, default_access_mode=READ_ACCESS, bookmark_manager=None
            ) as session:
                result = await session.run(query, params or {})
                rows: list[dict[str, Any]] = await result.data()
                return rows
        except (Neo4jError, DriverError) as exc:
            if attempt == ATTEMPTS or not exc.is_retryable():
                raise
    raise AssertionError("unreachable")
