"""schema_init's PostgreSQL migrations on a database that already holds data: each one run in a
schema of its own, so the shared test schema is never touched."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from common.settings import PostgresSettings
from schema_init.postgres_migrations import apply_migrations, load_migrations

pytestmark = pytest.mark.integration

SCHEMA = "migration_test"


@pytest.fixture
async def scratch(postgres_settings: PostgresSettings) -> AsyncIterator[AsyncConnection[dict[str, Any]]]:
    """A connection whose tables all land in an empty schema dropped afterwards."""
    conn = await AsyncConnection.connect(
        postgres_settings.postgres_conninfo(), autocommit=True, row_factory=dict_row
    )
    await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    await conn.execute(f"CREATE SCHEMA {SCHEMA}")
    await conn.execute(f"SET search_path TO {SCHEMA}")
    yield conn
    await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    await conn.close()


async def test_0004_marks_every_existing_record_seen_in_its_dump_and_drops_the_version_indexes(
    scratch: AsyncConnection[dict[str, Any]],
) -> None:
    migrations = load_migrations()
    assert await apply_migrations(scratch, [m for m in migrations if m.version < 4]) == [1, 2, 3]
    for table, version, first, last in (
        ("artists", "20260101", 1, 10),
        ("releases", "20260201", 1, 10),
        ("releases", "20260301", 11, 12),
    ):
        await scratch.execute(
            f"INSERT INTO {table} (id, sha256, dump_version, data)"
            " SELECT g, 'h' || g, %s, '{}' FROM generate_series(%s::bigint, %s::bigint) g",
            (version, first, last),
        )

    assert 4 in await apply_migrations(scratch, migrations)

    cur = await scratch.execute("SELECT id, dump_version FROM releases_seen ORDER BY id")
    assert [(r["id"], r["dump_version"]) for r in await cur.fetchall()] == [
        *((i, "20260201") for i in range(1, 11)),
        (11, "20260301"),
        (12, "20260301"),
    ]
    cur = await scratch.execute("SELECT count(*) AS n FROM artists_seen WHERE dump_version = '20260101'")
    assert (await cur.fetchone() or {})["n"] == 10
    cur = await scratch.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND indexname LIKE '%%dump_version%%'",
        (SCHEMA,),
    )
    assert await cur.fetchall() == []
    cur = await scratch.execute(
        "SELECT relname, reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE nspname = %s AND relname LIKE '%%\\_seen' ORDER BY relname",
        (SCHEMA,),
    )
    assert [(r["relname"], r["reloptions"]) for r in await cur.fetchall()] == [
        (f"{t}_seen", ["fillfactor=50"]) for t in ("artists", "labels", "masters", "releases")
    ]
    # Applied once: a second run has nothing to do.
    assert await apply_migrations(scratch, migrations) == []
