"""tableinator: consume record batches and write them to PostgreSQL (design §4-§5)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
import psycopg_pool
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from pydantic import Field

from common.clients import create_amqp_connection, create_postgres_pool
from common.consumer import (
    BatchConsumer,
    ConsumerSettings,
    serve_until_stopped,
    tune_gc_for_batches,
    wait_until_settled,
)
from common.logging import configure_logging, get_logger
from common.messages import ExtractionComplete, FileComplete, RecordMessage
from common.raw_messages import RawRecord, decode_message
from common.readiness import postgres_check
from common.settings import AmqpSettings, BaseServiceSettings, ConnectRetrySettings, PostgresSettings
from common.writes import WriteResult
from tableinator.writer import remove_stale, seen_table, write_batch

log = get_logger(__name__)

Pool = AsyncConnectionPool[AsyncConnection[Any]]


class TableinatorSettings(
    BaseServiceSettings, PostgresSettings, AmqpSettings, ConnectRetrySettings, ConsumerSettings
):
    health_port: int = Field(8002, alias="HEALTH_PORT")
    batch_size: int = Field(2000, alias="BATCH_SIZE", ge=1, le=50_000)
    # Two batches commit at once (on two connections); acks stay in delivery order.
    batch_concurrency: int = Field(2, alias="BATCH_CONCURRENCY", ge=1, le=8)
    lock_timeout_ms: int = Field(10_000, alias="LOCK_TIMEOUT_MS", ge=0)
    sweep_quiet_s: float = Field(5.0, alias="SWEEP_QUIET_SECONDS", ge=0)


def is_transient(exc: BaseException) -> bool:
    """Connection loss, deadlocks, lock and statement timeouts, pool exhaustion: retry."""
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | psycopg_pool.PoolTimeout):
        return True
    return isinstance(exc, OSError | TimeoutError | ConnectionError)


def build_consumer(pool: Pool, connection: Any, settings: TableinatorSettings) -> BatchConsumer:
    async def write(data_type: str, messages: Sequence[RecordMessage | RawRecord]) -> WriteResult:
        return await write_batch(pool, data_type, messages, lock_timeout_ms=settings.lock_timeout_ms)

    async def on_file_complete(message: FileComplete) -> None:
        log.info(
            "file_complete", data_type=message.type, version=message.version, records=message.record_count
        )

    async def on_extraction_complete(message: ExtractionComplete) -> None:
        # `<type>_seen` holds the dump each record was last seen in; the entity table's own
        # dump_version only moves when its content is written, which an unchanged item never does.
        table = seen_table(message.type)
        expected = message.record_counts.get(message.type, 0)

        async def seen() -> int:
            async with pool.connection() as conn:
                cur = await conn.execute(
                    f"SELECT count(*) AS c FROM {table} WHERE dump_version >= %s",
                    (message.version,),
                )
                row = await cur.fetchone()
                return int(row["c"] if isinstance(row, dict) else row[0]) if row else 0

        count = await wait_until_settled(seen, expected, quiet=settings.sweep_quiet_s)
        if expected <= 0 or count == 0:
            log.error(
                "sweep_skipped",
                data_type=message.type,
                version=message.version,
                seen=count,
                expected=expected,
            )
            return
        await remove_stale(pool, message.type, message.version)

    return BatchConsumer(
        "tableinator",
        connection,
        write,
        is_transient,
        settings,
        on_file_complete=on_file_complete,
        on_extraction_complete=on_extraction_complete,
        decode=decode_message,
    )


async def run(settings: TableinatorSettings | None = None) -> None:
    settings = settings or TableinatorSettings()
    configure_logging("tableinator", settings.log_level, settings.log_format, settings.environment)
    tune_gc_for_batches()
    pool = await create_postgres_pool(settings, min_size=2, max_size=8, attempts=settings.connect_attempts)
    connection = await create_amqp_connection(settings, attempts=settings.connect_attempts)
    consumer = build_consumer(pool, connection, settings)
    try:
        await serve_until_stopped(
            consumer,
            connection,
            settings.health_host,
            settings.health_port,
            {"postgres": postgres_check(pool)},
        )
    finally:
        await connection.close()
        await pool.close()
