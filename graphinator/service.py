"""graphinator: consume record batches and write them to Neo4j (design §4-§5)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from neo4j import AsyncDriver
from neo4j.exceptions import DriverError, Neo4jError, ServiceUnavailable, SessionExpired, TransientError
from pydantic import Field

from common.clients import create_amqp_connection, create_neo4j_driver
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
from common.readiness import neo4j_check
from common.settings import AmqpSettings, BaseServiceSettings, ConnectRetrySettings, Neo4jSettings
from common.writes import WriteResult
from graphinator.writer import LABELS, ConcurrentWriteError, await_fulltext_refresh, remove_stale, write_batch

log = get_logger(__name__)

# A transaction that outlasted NEO4J_TX_TIMEOUT: Neo4j says TransactionTimedOut... when it was
# running then, LockClientStopped when it was waiting for a lock (that code also reports a killed
# connection, rare enough to count too). Retried only MAX_TIMEOUTS times: a batch too big to commit
# in time is then split, down to the record.
_TIMEOUT_CODES = ("Transaction.TransactionTimedOut", "Transaction.LockClientStopped")
# Codes that mean "try again": those timeouts, a lock wait timeout, a unique-constraint race between
# two concurrent MERGEs of the same stub (the retry finds the node), and a transaction the server
# terminated (an operator stopped it, the database is shutting down): the driver reports those as
# client errors, but the records in them are fine.
_TRANSIENT_CODES = (
    *_TIMEOUT_CODES,
    "LockAcquisitionTimeout",
    "ConstraintValidationFailed",
    "Transaction.Terminated",
)


class GraphinatorSettings(
    BaseServiceSettings, Neo4jSettings, AmqpSettings, ConnectRetrySettings, ConsumerSettings
):
    health_port: int = Field(8001, alias="HEALTH_PORT")
    batch_size: int = Field(1000, alias="BATCH_SIZE", ge=1, le=50_000)
    # Two batches commit at once per type: Neo4j keeps both cores busy while Python maps the next
    # batch (one type drains ~40% faster; a record id still committing holds the next batch back).
    batch_concurrency: int = Field(2, alias="BATCH_CONCURRENCY", ge=1, le=8)
    # ... except artists and labels: their records point at records of their own type (aliases,
    # members, groups; parent and sublabels), so two batches at once create each other's nodes and
    # deadlock (11 deadlocks in 150 artist batches, each retried after ~1 s by the driver): one at
    # a time writes artists at 9,400/s instead of 5,500-7,000/s, labels at 10,000/s instead of 8,500/s.
    serial_types: str = Field("artists,labels", alias="SERIAL_TYPES")
    # Releases wait while artists, labels or masters have work (masters wait for artists): without
    # it, releases batches hold the artist locks and starve the artists type, and every credit of
    # a not yet written artist creates a stub that is filled in later.
    ordered_types: bool = Field(True, alias="ORDERED_TYPES")
    tx_timeout_s: float = Field(120.0, alias="NEO4J_TX_TIMEOUT", gt=0)
    sweep_quiet_s: float = Field(5.0, alias="SWEEP_QUIET_SECONDS", ge=0)
    write_parallelism: int = Field(
        1, alias="WRITE_PARALLELISM", ge=1, le=8, description="transactions one batch is split into"
    )


def is_transient(exc: BaseException) -> bool:
    """Connection loss, deadlocks, timeouts, a record written meanwhile by another transaction and
    anything the driver marks retryable: retry."""
    if isinstance(exc, TransientError | ServiceUnavailable | SessionExpired | ConcurrentWriteError):
        return True
    if isinstance(exc, Neo4jError) and any(code in (exc.code or "") for code in _TRANSIENT_CODES):
        return True
    if isinstance(exc, Neo4jError | DriverError) and exc.is_retryable():
        return True
    return isinstance(exc, OSError | TimeoutError | ConnectionError)


def is_timeout(exc: BaseException) -> bool:
    """The write's transaction outlasted its timeout (see _TIMEOUT_CODES)."""
    return isinstance(exc, Neo4jError) and any(code in (exc.code or "") for code in _TIMEOUT_CODES)


def build_consumer(driver: AsyncDriver, connection: Any, settings: GraphinatorSettings) -> BatchConsumer:
    async def write(data_type: str, messages: Sequence[RecordMessage | RawRecord]) -> WriteResult:
        return await write_batch(
            driver,
            data_type,
            messages,
            database=settings.neo4j_database,
            timeout=settings.tx_timeout_s,
            parallel=settings.write_parallelism,
        )

    async def on_file_complete(message: FileComplete) -> None:
        log.info(
            "file_complete", data_type=message.type, version=message.version, records=message.record_count
        )

    async def on_extraction_complete(message: ExtractionComplete) -> None:
        label = LABELS[message.type]
        expected = message.record_counts.get(message.type, 0)

        async def seen() -> int:
            records, _, _ = await driver.execute_query(
                f"MATCH (n:{label}) WHERE n.dump_version >= $v RETURN count(n) AS c",
                {"v": message.version},
                database_=settings.neo4j_database,
            )
            return int(records[0]["c"])

        count = await wait_until_settled(seen, expected, quiet=settings.sweep_quiet_s)
        if expected <= 0 or count == 0:
            log.error(
                "sweep_skipped",
                data_type=message.type,
                version=message.version,
                seen=count,
                expected=expected,
            )
        else:
            await remove_stale(driver, message.type, message.version, database=settings.neo4j_database)
        # A version reported done is searchable too.
        await await_fulltext_refresh(driver, database=settings.neo4j_database)

    return BatchConsumer(
        "graphinator",
        connection,
        write,
        is_transient,
        settings,
        on_file_complete=on_file_complete,
        on_extraction_complete=on_extraction_complete,
        is_timeout=is_timeout,
        decode=decode_message,
    )


async def run(settings: GraphinatorSettings | None = None) -> None:
    settings = settings or GraphinatorSettings()
    configure_logging("graphinator", settings.log_level, settings.log_format, settings.environment)
    tune_gc_for_batches()
    driver = await create_neo4j_driver(settings, attempts=settings.connect_attempts)
    connection = await create_amqp_connection(settings, attempts=settings.connect_attempts)
    consumer = build_consumer(driver, connection, settings)
    try:
        await serve_until_stopped(
            consumer, connection, settings.health_host, settings.health_port, {"neo4j": neo4j_check(driver)}
        )
    finally:
        await connection.close()
        await driver.close()
