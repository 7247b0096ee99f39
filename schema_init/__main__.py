"""`python -m schema_init`: create the PostgreSQL database if missing, apply migrations and the
Neo4j schema. Idempotent; exits non-zero with one clear line when anything fails."""

from __future__ import annotations

import asyncio
import sys

import psycopg
from psycopg import AsyncConnection, sql
from pydantic import Field

from common.clients import create_neo4j_driver
from common.errors import ServiceUnavailableError
from common.logging import configure_logging, get_logger
from common.retry import connect_with_retry
from common.settings import BaseServiceSettings, ConnectRetrySettings, Neo4jSettings, PostgresSettings
from schema_init.neo4j_schema import SchemaError, apply_neo4j_schema
from schema_init.postgres_migrations import MigrationError, apply_migrations

log = get_logger("schema_init")


class SchemaInitSettings(BaseServiceSettings, PostgresSettings, Neo4jSettings, ConnectRetrySettings):
    postgres_admin_database: str = Field("postgres", alias="POSTGRES_ADMIN_DATABASE")


async def ensure_database(settings: SchemaInitSettings) -> None:
    """CREATE DATABASE when it does not exist (needs CREATEDB; skipped when it exists)."""
    host, port = settings.postgres_host_port

    async def connect() -> AsyncConnection[tuple[object, ...]]:
        return await AsyncConnection.connect(
            settings.postgres_conninfo(settings.postgres_admin_database), autocommit=True
        )

    conn = await connect_with_retry("postgresql", f"{host}:{port}", connect, settings.connect_attempts)
    async with conn:
        cur = await conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (settings.postgres_database,)
        )
        if await cur.fetchone() is None:
            await conn.execute(
                sql.SQL("CREATE DATABASE {}").format(sql.Identifier(settings.postgres_database))
            )
            log.info("database_created", database=settings.postgres_database)


async def run(settings: SchemaInitSettings) -> None:
    await ensure_database(settings)
    async with await AsyncConnection.connect(settings.postgres_conninfo()) as conn:
        applied = await apply_migrations(conn)
    log.info("postgres_schema_ready", applied=applied)
    driver = await create_neo4j_driver(settings, attempts=settings.connect_attempts)
    try:
        await apply_neo4j_schema(driver, settings.neo4j_database)
    finally:
        await driver.close()


def main() -> int:
    settings = SchemaInitSettings()
    configure_logging("schema-init", settings.log_level, settings.log_format, settings.environment)
    try:
        asyncio.run(run(settings))
    except (ServiceUnavailableError, MigrationError, SchemaError, psycopg.Error) as exc:
        log.error("schema_init_failed", error=str(exc).strip())
        return 1
    log.info("schema_init_done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
