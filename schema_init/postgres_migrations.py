"""Ordered, versioned PostgreSQL migrations recorded in `schema_migrations`.

Files are `migrations/NNNN_name.sql`; each runs once, in its own transaction, under an advisory
lock so that concurrent schema-init runs (several replicas starting) apply it exactly once. An
applied file whose content changed afterwards is reported, not silently re-run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection

from common.logging import get_logger

log = get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant works; it only has to be the same for every schema-init process.
_ADVISORY_LOCK_KEY = 0x6469_7363_6F67


class MigrationError(RuntimeError):
    """The migration history does not match the files (edited or missing migration)."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file name {path.name!r} is not NNNN_name.sql")
        migrations.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {directory}")
    return migrations


async def apply_migrations(
    conn: AsyncConnection[Any], migrations: list[Migration] | None = None
) -> list[int]:
    """Apply pending migrations; return the versions applied by this call (empty when up to date)."""
    migrations = load_migrations() if migrations is None else migrations
    await conn.set_autocommit(True)
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    await conn.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK_KEY,))
    try:
        cursor = await conn.execute("SELECT version, checksum FROM schema_migrations")
        applied = {
            row[0] if isinstance(row, tuple) else row["version"]: row[1]
            if isinstance(row, tuple)
            else row["checksum"]
            for row in await cursor.fetchall()
        }
        done: list[int] = []
        for migration in migrations:
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} was changed after it was "
                        "applied; add a new migration instead of editing an old one"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql.encode())
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
            log.info("migration_applied", version=migration.version, name=migration.name)
            done.append(migration.version)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (_ADVISORY_LOCK_KEY,))
