"""common.consumer with the real broker and stores: batches land and are acked, a poison message
goes to that consumer's own DLQ with its reason while the rest of its batch lands, a transient
failure (a row lock held by another connection) is retried, control messages flush then run their
hook, shutdown flushes, and two replicas on one queue end in the same state as one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import orjson
import pytest
from neo4j import AsyncDriver
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from structlog.testing import capture_logs

from common.amqp import (
    DATA_TYPES,
    DLQ_REASON_HEADER,
    declare_record_queues,
    open_confirming_channel,
    publish_routed,
)
from common.consumer import BatchConsumer, ConsumerSettings
from common.messages import (
    ExtractionComplete,
    RecordMessage,
    parse_pipeline_message,
    record_item_bytes,
    records_body,
)
from common.writes import WriteResult
from graphinator.service import GraphinatorSettings
from graphinator.service import build_consumer as build_graphinator
from graphinator.writer import write_batch as write_graph_batch
from tableinator.service import TableinatorSettings
from tableinator.service import build_consumer as build_tableinator
from tableinator.writer import write_batch
from tests.integration.consumer_broker import (
    close_client_connections,
    drain,
    eventually,
    new_connection,
    publish,
    queue_depth,
    reset_queues,
)
from tests.integration.consumer_support import (
    RELEASE_1,
    V1,
    V2,
    changed,
    credit,
    message,
    synthetic_release,
)
from tests.integration.test_graphinator_writer import graph_snapshot

pytestmark = pytest.mark.integration

Pool = AsyncConnectionPool[AsyncConnection[dict[str, Any]]]


@pytest.fixture
async def broker(amqp_connection: Any) -> AsyncIterator[Any]:
    await reset_queues(amqp_connection)
    yield amqp_connection
    await reset_queues(amqp_connection)


def pg_settings(**overrides: Any) -> TableinatorSettings:
    values: dict[str, Any] = {"BATCH_SIZE": 50, "BATCH_MAX_LATENCY": 0.2, "SWEEP_QUIET_SECONDS": 0.5}
    values.update(overrides)
    return TableinatorSettings(**values)


def neo_settings(**overrides: Any) -> GraphinatorSettings:
    values: dict[str, Any] = {"BATCH_SIZE": 50, "BATCH_MAX_LATENCY": 0.2, "SWEEP_QUIET_SECONDS": 0.5}
    values.update(overrides)
    return GraphinatorSettings(**values)


async def started(consumer: BatchConsumer) -> BatchConsumer:
    await consumer.start()
    return consumer


async def count_rows(pool: Pool, table: str = "releases") -> int:
    async with pool.connection() as conn:
        cur = await conn.execute(f"SELECT count(*) AS c FROM {table}")
        row = await cur.fetchone()
        return int(row["c"]) if row else 0


async def table_state(pool: Pool) -> list[tuple[int, str, str]]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT id, sha256, dump_version FROM releases ORDER BY id")
        return [(r["id"], r["sha256"], r["dump_version"]) for r in await cur.fetchall()]


async def test_poison_messages_go_to_the_consumers_own_dlq_and_the_batch_lands(
    broker: Any, clean_postgres: Pool
) -> None:
    good = [message("releases", synthetic_release(i)).to_bytes() for i in range(1, 31)]
    bad_json = b'{"kind": "record", "type": "releases", not json'
    bad_shape = message("releases", changed(RELEASE_1, id=901, year="1999")).to_bytes()
    nul = message("releases", changed(RELEASE_1, id=902, notes="NUL \u0000 inside")).to_bytes()
    # The poison sits in the middle of one batch.
    await publish(broker, "releases", [*good[:10], bad_json, *good[10:20], bad_shape, nul, *good[20:]])

    connection = await new_connection()
    consumer = await started(build_tableinator(clean_postgres, connection, pg_settings()))
    try:
        await eventually(lambda: _equals(count_rows(clean_postgres), 30), what="30 good rows")
        await eventually(
            lambda: _equals(queue_depth(broker, "tableinator.releases.dlq"), 3), what="3 dead letters"
        )
    finally:
        await consumer.stop()
        await connection.close()
    dead = await drain(broker, "tableinator.releases.dlq")
    reasons = {m.body: str((m.headers or {})[DLQ_REASON_HEADER]) for m in dead}
    assert "invalid message" in reasons[bad_json]
    assert "year must be int" in reasons[bad_shape]
    assert "UntranslatableCharacter" in reasons[nul] or "Unicode" in reasons[nul]
    assert consumer.stats["releases"].dead_lettered == 3
    assert await queue_depth(broker, "tableinator.releases") == 0  # everything acked
    assert await queue_depth(broker, "graphinator.releases.dlq") == 0  # not the other consumer's DLQ


async def test_graphinator_poison_record_is_isolated_by_bisection(
    broker: Any, clean_neo4j: AsyncDriver
) -> None:
    good = [message("releases", synthetic_release(i, tracks=1)).to_bytes() for i in range(1, 21)]
    # Neo4j refuses a map as a property value: the batch fails as a whole, bisection isolates it.
    poison = message("releases", changed(RELEASE_1, id=777, country={"not": "a string"})).to_bytes()
    await publish(broker, "releases", [*good[:7], poison, *good[7:]])
    connection = await new_connection()
    consumer = await started(build_graphinator(clean_neo4j, connection, neo_settings()))
    try:

        async def releases() -> int:
            records, _, _ = await clean_neo4j.execute_query("MATCH (r:Release) RETURN count(r) AS c")
            return int(records[0]["c"])

        await eventually(lambda: _equals(releases(), 20), what="20 releases")
        await eventually(
            lambda: _equals(queue_depth(broker, "graphinator.releases.dlq"), 1), what="1 dead letter"
        )
    finally:
        await consumer.stop()
        await connection.close()
    [dead] = await drain(broker, "graphinator.releases.dlq")
    assert dead.body == poison
    assert "Property values can only be of primitive types" in str(
        (dead.headers or {})[DLQ_REASON_HEADER]
    ) or ("TypeError" in str((dead.headers or {})[DLQ_REASON_HEADER]))
    assert await queue_depth(broker, "tableinator.releases.dlq") == 0


def records_message(messages: list[Any]) -> bytes:
    """A `records` body (several records in one broker message), as the extractor sends them."""
    items = [
        record_item_bytes(m.id, m.sha256, orjson.dumps(m.record, option=orjson.OPT_SORT_KEYS))
        for m in messages
    ]
    return records_body(messages[0].type, messages[0].version, items)


async def test_a_dlq_deleted_while_the_consumer_runs_still_takes_the_dead_letter(
    broker: Any, clean_postgres: Pool
) -> None:
    """RabbitMQ closes the consumer's connection when its DLQ is deleted; the consumer reconnects
    and declares it again. Dead letters are also `mandatory` (see the next test), so one published
    before that is never confirmed and dropped."""
    bad_json = b'{"kind": "record", "type": "releases", not json'
    connection = await new_connection()
    consumer = await started(build_tableinator(clean_postgres, connection, pg_settings()))
    try:
        channel = await broker.channel()
        await channel.queue_delete("tableinator.releases.dlq")
        await channel.close()
        await publish(broker, "releases", [bad_json, message("releases", synthetic_release(1)).to_bytes()])
        await eventually(lambda: _equals(count_rows(clean_postgres), 1), what="the good record")
        await eventually(lambda: _true(consumer.stats["releases"].dead_lettered == 1), what="1 dead letter")
    finally:
        await consumer.stop()
        await connection.close()
    [dead] = await drain(broker, "tableinator.releases.dlq")
    assert dead.body == bad_json
    assert "invalid message" in str((dead.headers or {})[DLQ_REASON_HEADER])
    assert await queue_depth(broker, "tableinator.releases") == 0


async def test_a_message_the_broker_dead_letters_lands_only_in_that_consumers_dlq(broker: Any) -> None:
    """Pipeline weakness 9: each record queue dead-letters into its own DLQ, so a message one
    consumer rejects never reaches the other's DLQ, and the other consumer still has its copy."""
    body = message("releases", synthetic_release(7)).to_bytes()
    await publish(broker, "releases", [body])
    channel = await broker.channel()
    try:
        queue = await channel.declare_queue("graphinator.releases", passive=True)
        delivery = await queue.get(fail=False, timeout=5)
        assert delivery is not None
        await delivery.reject(requeue=False)
    finally:
        await channel.close()
    dlq = "graphinator.releases.dlq"
    await eventually(lambda: _equals(queue_depth(broker, dlq), 1), what="the dead letter")
    [dead] = await drain(broker, dlq)
    assert dead.body == body
    deaths = (dead.headers or {})["x-death"]
    assert isinstance(deaths, list) and len(deaths) == 1
    death = deaths[0]
    assert isinstance(death, dict)
    assert (death["queue"], death["reason"]) == ("graphinator.releases", "rejected")
    assert await queue_depth(broker, "tableinator.releases.dlq") == 0
    [copy] = await drain(broker, "tableinator.releases")
    assert copy.body == body


async def test_ready_reports_the_types_whose_own_connection_is_down_until_they_reconnect(
    broker: Any, clean_postgres: Pool
) -> None:
    """Each type consumes on its own connection; the shared one (the "rabbitmq" check) says nothing
    about them. RabbitMQ closes them here (as on a node restart or a management action)."""
    connection = await new_connection()
    consumer = await started(build_tableinator(clean_postgres, connection, pg_settings()))
    check = consumer.consuming_check()
    try:
        await check()
        assert await close_client_connections("discogsography-consumer", len(DATA_TYPES)) == len(DATA_TYPES)
        refused = ""
        for _ in range(500):  # the first reconnect waits at least 0.5 s: plenty of polls see it down
            try:
                await check()
            except ConnectionError as exc:
                refused = str(exc)
                break
            await asyncio.sleep(0.01)
        assert refused.startswith("not consuming ") and "releases" in refused

        async def consuming() -> bool:
            try:
                await check()
            except ConnectionError:
                return False
            return True

        await eventually(consuming, what="every type consuming again")
    finally:
        await consumer.stop()
        await connection.close()


async def test_publish_routed_declares_a_missing_queue_again_and_raises_when_still_unroutable(
    broker: Any,
) -> None:
    queue = "tableinator.releases.dlq"
    channel = await open_confirming_channel(broker)
    try:
        await channel.queue_delete(queue)
        redeclared: list[str] = []

        async def redeclare() -> None:
            redeclared.append(queue)
            await declare_record_queues(channel, "tableinator", ("releases",))

        await publish_routed(channel.default_exchange, aio_pika.Message(b"dead"), queue, redeclare)
        assert redeclared == [queue]
        [dead] = await drain(broker, queue)
        assert dead.body == b"dead"

        async def nothing() -> None:
            redeclared.append("nothing")

        with pytest.raises(aio_pika.exceptions.PublishError):
            await publish_routed(channel.default_exchange, aio_pika.Message(b"x"), "no-such-queue", nothing)
        assert redeclared == [queue, "nothing"]
    finally:
        await channel.close()


@pytest.mark.parametrize("consumer_name", ["tableinator", "graphinator"])
async def test_records_message_lands_and_its_poison_record_is_dead_lettered_alone(
    broker: Any, clean_postgres: Pool, clean_neo4j: AsyncDriver, consumer_name: str
) -> None:
    good = [message("releases", synthetic_release(i, tracks=1)) for i in range(1, 26)]
    if consumer_name == "tableinator":
        poison = message("releases", changed(RELEASE_1, id=901, year="1999"))  # year must be an int
    else:
        poison = message("releases", changed(RELEASE_1, id=901, country={"not": "a string"}))
    bodies = [records_message(good[:10]), records_message([*good[10:17], poison, *good[17:]])]
    bad_count = records_message(good[:2]).replace(b'"count":2', b'"count":3', 1)
    await publish(broker, "releases", [*bodies, bad_count])

    connection = await new_connection()
    if consumer_name == "tableinator":
        consumer = await started(build_tableinator(clean_postgres, connection, pg_settings()))

        async def landed() -> int:
            return await count_rows(clean_postgres)
    else:
        consumer = await started(build_graphinator(clean_neo4j, connection, neo_settings()))

        async def landed() -> int:
            records, _, _ = await clean_neo4j.execute_query(
                "MATCH (r:Release) WHERE r.sha256 IS NOT NULL RETURN count(r) AS c"
            )
            return int(records[0]["c"])

    dlq = f"{consumer_name}.releases.dlq"
    try:
        await eventually(lambda: _equals(landed(), 25), what="25 good records")
        await eventually(lambda: _equals(queue_depth(broker, dlq), 2), what="2 dead letters")
    finally:
        await consumer.stop()
        await connection.close()
    assert consumer.stats["releases"].received == 10 + 16 + 3  # records (a records message counts each)
    dead = {orjson.loads(m.body).get("kind"): m for m in await drain(broker, dlq)}
    alone = parse_pipeline_message(dead["record"].body)  # the poison, alone, as a `record` message
    assert isinstance(alone, RecordMessage) and alone.id == 901 and alone.record == poison.record
    assert alone.sha256 == poison.sha256 and alone.version == poison.version
    assert "count is 3" in str((dead["records"].headers or {})[DLQ_REASON_HEADER])  # invalid as a whole
    assert await queue_depth(broker, f"{consumer_name}.releases") == 0  # everything acked


@pytest.mark.parametrize("consumer_name", ["tableinator", "graphinator"])
async def test_an_unchanged_item_the_store_lacks_is_dead_lettered_alone(
    broker: Any, clean_postgres: Pool, clean_neo4j: AsyncDriver, consumer_name: str
) -> None:
    """A `records` message of unchanged items (`"record": null`, as the extractor builds them): the
    ones the store holds are marked seen in the new dump, the one it lacks goes to the DLQ alone as a
    `record` message with its null record and the reason; everything is acked."""
    held = [message("releases", synthetic_release(i, tracks=1)) for i in range(1, 11)]
    if consumer_name == "tableinator":
        await write_batch(clean_postgres, "releases", held)
    else:
        await write_graph_batch(clean_neo4j, "releases", held)
    missing = message("releases", synthetic_release(99, tracks=1), V2)
    new = message("releases", synthetic_release(11, tracks=1), V2)
    items = [record_item_bytes(m.id, m.sha256, b"null") for m in held[:5]]
    items += [record_item_bytes(missing.id, missing.sha256, b"null")]
    items += [record_item_bytes(m.id, m.sha256, b"null") for m in held[5:]]
    items += [record_item_bytes(new.id, new.sha256, orjson.dumps(new.record, option=orjson.OPT_SORT_KEYS))]
    await publish(broker, "releases", [records_body("releases", V2, items)])

    connection = await new_connection()
    if consumer_name == "tableinator":
        consumer = await started(build_tableinator(clean_postgres, connection, pg_settings()))

        async def versions() -> dict[int, str]:
            async with clean_postgres.connection() as conn:
                cur = await conn.execute("SELECT id, dump_version FROM releases_seen")
                return {r["id"]: r["dump_version"] for r in await cur.fetchall()}
    else:
        consumer = await started(build_graphinator(clean_neo4j, connection, neo_settings()))

        async def versions() -> dict[int, str]:
            records, _, _ = await clean_neo4j.execute_query(
                "MATCH (r:Release) WHERE r.sha256 IS NOT NULL RETURN r.id AS id, r.dump_version AS v"
            )
            return {r["id"]: r["v"] for r in records}

    dlq = f"{consumer_name}.releases.dlq"
    try:
        await eventually(lambda: _true(settled(consumer) >= 12), what="12 records settled")
    finally:
        await consumer.stop()
        await connection.close()
    stats = consumer.stats["releases"]
    assert (stats.unchanged, stats.written, stats.dead_lettered) == (10, 1, 1)
    assert await versions() == {i: V2 for i in range(1, 12)}  # 10 bumped, 11 new, no 99
    [dead] = await drain(broker, dlq)
    assert orjson.loads(dead.body) == {
        "schema_version": 1,
        "kind": "record",
        "type": "releases",
        "id": 99,
        "sha256": missing.sha256,
        "version": V2,
        "record": None,
    }
    alone = parse_pipeline_message(dead.body)
    assert isinstance(alone, RecordMessage) and alone.unchanged
    reason = str((dead.headers or {})[DLQ_REASON_HEADER])
    assert "does not hold the record" in reason and "--reprocess" in reason
    assert await queue_depth(broker, f"{consumer_name}.releases") == 0  # everything acked
    assert await queue_depth(broker, dlq) == 0


async def test_a_batch_of_refused_records_reaches_the_dlq_whole_and_is_logged_once(
    broker: Any, clean_postgres: Pool
) -> None:
    """An emptied table refuses every unchanged item: a batch of 300 dead letters is published at
    once (not one confirm after another), each record alone with its reason, then acked; the
    batch logs one summary line, not a warning per record."""
    items = [record_item_bytes(1000 + i, f"{i:064x}", b"null") for i in range(300)]
    bodies = [records_body("releases", V2, items[i : i + 100]) for i in (0, 100, 200)]
    await publish(broker, "releases", bodies)
    connection = await new_connection()
    with capture_logs() as logs:
        consumer = await started(build_tableinator(clean_postgres, connection, pg_settings(BATCH_SIZE=300)))
        try:
            await eventually(
                lambda: _true(consumer.stats["releases"].dead_lettered >= 300), what="300 dead-lettered"
            )
        finally:
            await consumer.stop()
            await connection.close()
    assert await queue_depth(broker, "tableinator.releases") == 0  # everything acked
    dead = await drain(broker, "tableinator.releases.dlq")
    assert sorted(orjson.loads(d.body)["id"] for d in dead) == list(range(1000, 1300))
    assert all("does not hold the record" in str((d.headers or {})[DLQ_REASON_HEADER]) for d in dead)
    summaries = [e for e in logs if e["event"] == "records_dead_lettered"]
    assert sum(e["count"] for e in summaries) == 300
    assert len(summaries) < 300 and all(len(e["examples"]) <= 3 for e in summaries)
    assert not [e for e in logs if e["event"] == "message_dead_lettered"]


async def test_transient_lock_timeout_is_retried_not_dead_lettered(broker: Any, clean_postgres: Pool) -> None:
    await write_batch(clean_postgres, "releases", [message("releases", RELEASE_1)])
    connection = await new_connection()
    consumer = await started(build_tableinator(clean_postgres, connection, pg_settings(LOCK_TIMEOUT_MS=100)))
    try:
        async with clean_postgres.connection() as locker:
            # Another transaction holds the row lock: every attempt times out (LockNotAvailable).
            await locker.execute("SELECT id FROM releases WHERE id = 1 FOR UPDATE")
            await publish(
                broker,
                "releases",
                [message("releases", changed(RELEASE_1, title="Stockholm (remastered)"), V2).to_bytes()],
            )
            await eventually(lambda: _true(consumer.stats["releases"].retries >= 2), what="retries")
            assert consumer.stats["releases"].dead_lettered == 0
            await locker.rollback()
        async with clean_postgres.connection() as conn:

            async def title() -> bool:
                cur = await conn.execute("SELECT title FROM releases WHERE id = 1")
                row = await cur.fetchone()
                await conn.rollback()
                return bool(row and row["title"] == "Stockholm (remastered)")

            await eventually(title, what="the retried write")
    finally:
        await consumer.stop()
        await connection.close()
    assert consumer.stats["releases"].dead_lettered == 0
    assert await queue_depth(broker, "tableinator.releases.dlq") == 0
    assert await queue_depth(broker, "tableinator.releases") == 0


async def test_a_write_whose_connection_the_server_kills_is_retried_not_dead_lettered(
    broker: Any, clean_neo4j: AsyncDriver
) -> None:
    """Neo4j terminates the transaction of a killed connection (as when an operator stops it or
    the database shuts down) and the driver reports a client error: the records in it are fine,
    so the consumer retries the batch instead of dead-lettering them."""
    await write_graph_batch(clean_neo4j, "releases", [message("releases", RELEASE_1)])
    connection = await new_connection()
    consumer = await started(build_graphinator(clean_neo4j, connection, neo_settings()))
    try:
        async with clean_neo4j.session() as session:
            locker = await session.begin_transaction()
            # Another transaction holds release 1's lock: the consumer's write waits for it ...
            await (await locker.run("MATCH (r:Release {id: 1}) SET r.locked = true")).consume()
            await publish(
                broker,
                "releases",
                [message("releases", changed(RELEASE_1, title="Stockholm (remastered)"), V2).to_bytes()],
            )
            blocked: list[str] = []

            async def waiting() -> bool:
                records, _, _ = await clean_neo4j.execute_query(
                    "SHOW TRANSACTIONS YIELD connectionId, status "
                    "WHERE status STARTS WITH 'Blocked' RETURN connectionId"
                )
                blocked[:] = [r["connectionId"] for r in records]
                return bool(blocked)

            await eventually(waiting, what="the consumer's write waiting for the lock")
            # ... and loses its connection there.
            await clean_neo4j.execute_query("CALL dbms.killConnections($ids)", ids=blocked)
            await locker.rollback()

        async def landed() -> bool:
            records, _, _ = await clean_neo4j.execute_query("MATCH (r:Release {id: 1}) RETURN r.title AS t")
            return bool(records and records[0]["t"] == "Stockholm (remastered)")

        await eventually(landed, what="the retried write")
        await eventually(lambda: _true(consumer.stats["releases"].written == 1), what="the settled batch")
    finally:
        await consumer.stop()
        await connection.close()
    assert consumer.stats["releases"].retries >= 1
    assert consumer.stats["releases"].dead_lettered == 0
    assert await queue_depth(broker, "graphinator.releases") == 0


async def test_a_record_too_big_to_write_in_time_is_dead_lettered_and_the_rest_lands(
    broker: Any, clean_neo4j: AsyncDriver
) -> None:
    """A write that runs longer than NEO4J_TX_TIMEOUT may never fit in it: after MAX_TIMEOUTS the
    batch is split, its other records land, and the record that still times out alone goes to the
    DLQ with the reason (it used to be retried forever, holding its queue)."""
    small = [message("releases", synthetic_release(rid, tracks=1)) for rid in (10, 11, 12, 14, 15, 16)]
    huge_record = synthetic_release(13, credits=0, tracks=1)
    # ~10 s of writing here (150k credited session players, each a new stub): far past 1.5 s.
    huge_record["extraartists"] = [
        credit(5_000_000 + i, f"Session player {i}", role="Performer") for i in range(150_000)
    ]
    huge = message("releases", huge_record)
    # Plan the write statement first: the batch's small records then write well within 1.5 s.
    await write_graph_batch(clean_neo4j, "releases", [message("releases", synthetic_release(9, tracks=1))])
    await publish(broker, "releases", [records_message([*small[:3], huge, *small[3:]])])
    connection = await new_connection()
    settings = neo_settings(NEO4J_TX_TIMEOUT=1.5, MAX_TIMEOUTS=2)
    consumer = await started(build_graphinator(clean_neo4j, connection, settings))
    try:
        dlq = "graphinator.releases.dlq"
        await eventually(lambda: _equals(queue_depth(broker, dlq), 1), timeout=180, what="1 dead letter")
        await eventually(lambda: _true(consumer.stats["releases"].written == 6), what="6 records written")
    finally:
        await consumer.stop()
        await connection.close()
    [dead] = await drain(broker, dlq)
    alone = parse_pipeline_message(dead.body)
    assert isinstance(alone, RecordMessage) and alone.id == 13 and alone.sha256 == huge.sha256
    reason = str((dead.headers or {})[DLQ_REASON_HEADER])
    # (Neo4j says LockClientStopped when the timeout caught the write waiting for a lock)
    assert "timed out 2 times (MAX_TIMEOUTS)" in reason
    assert "TransactionTimedOut" in reason or "LockClientStopped" in reason
    records, _, _ = await clean_neo4j.execute_query(
        "MATCH (r:Release) WHERE r.sha256 IS NOT NULL RETURN r.id AS id ORDER BY id"
    )
    assert [r["id"] for r in records] == [9, 10, 11, 12, 14, 15, 16]
    players, _, _ = await clean_neo4j.execute_query(
        "MATCH (a:Artist) WHERE a.id >= 5000000 RETURN count(a) AS c"
    )
    assert players[0]["c"] == 0  # every timed-out attempt was rolled back
    assert consumer.stats["releases"].retries >= 4  # 2 timeouts at each level down to the record
    assert await queue_depth(broker, "graphinator.releases") == 0


async def stop_after_extraction_complete(consumer: BatchConsumer, connection: Any, version: str) -> None:
    """Wait until the consumer's extraction_complete hook of `version` has run, then stop it."""
    try:
        await eventually(
            lambda: _true(f"extraction_complete:{version}" in consumer.stats["releases"].completed_versions),
            what="the hook",
        )
    finally:
        await consumer.stop()
        await connection.close()


async def test_extraction_complete_flushes_then_sweeps_stale_rows(broker: Any, clean_postgres: Pool) -> None:
    v1 = [message("releases", synthetic_release(i), V1).to_bytes() for i in range(1, 11)]
    v2 = [message("releases", synthetic_release(i), V2).to_bytes() for i in range(1, 9)]  # 9, 10 gone
    done = ExtractionComplete(type="releases", version=V2, record_counts={"releases": 8}).to_bytes()
    await publish(broker, "releases", [*v1, *v2, done])
    connection = await new_connection()
    # A large batch and a long timer: only the control message can flush the records in time.
    consumer = await started(
        build_tableinator(clean_postgres, connection, pg_settings(BATCH_SIZE=1000, BATCH_MAX_LATENCY=60))
    )
    await stop_after_extraction_complete(consumer, connection, V2)
    state = await table_state(clean_postgres)
    assert [(rid, version) for rid, _, version in state] == [(i, V2) for i in range(1, 9)]


@pytest.mark.parametrize("consumer_name", ["tableinator", "graphinator"])
async def test_a_version_that_only_drops_records_of_a_type_still_sweeps_them(
    broker: Any, clean_postgres: Pool, clean_neo4j: AsyncDriver, consumer_name: str
) -> None:
    """Nothing of the type changed in V2, so it arrives as unchanged items only (they mark records
    seen, they write no content); two records are gone from it. The sweep must count what was seen
    in V2, not what was written from it, or it finds nothing and skips."""
    held = [message("releases", synthetic_release(i, tracks=1)) for i in range(1, 11)]
    if consumer_name == "tableinator":
        await write_batch(clean_postgres, "releases", held)
    else:
        await write_graph_batch(clean_neo4j, "releases", held)
    unchanged = [record_item_bytes(m.id, m.sha256, b"null") for m in held[:8]]  # 9 and 10 are gone
    done = ExtractionComplete(type="releases", version=V2, record_counts={"releases": 8}).to_bytes()
    await publish(broker, "releases", [records_body("releases", V2, unchanged), done])

    connection = await new_connection()
    if consumer_name == "tableinator":
        consumer = await started(build_tableinator(clean_postgres, connection, pg_settings()))

        async def ids() -> list[int]:
            async with clean_postgres.connection() as conn:
                cur = await conn.execute("SELECT id FROM releases ORDER BY id")
                return [r["id"] for r in await cur.fetchall()]
    else:
        consumer = await started(build_graphinator(clean_neo4j, connection, neo_settings()))

        async def ids() -> list[int]:
            records, _, _ = await clean_neo4j.execute_query("MATCH (r:Release) RETURN r.id AS id ORDER BY id")
            return [r["id"] for r in records]

    await stop_after_extraction_complete(consumer, connection, V2)
    assert consumer.stats["releases"].unchanged == 8
    assert await ids() == list(range(1, 9))


async def test_shutdown_flushes_and_acks_pending_records(broker: Any, clean_postgres: Pool) -> None:
    await publish(
        broker, "releases", [message("releases", synthetic_release(i)).to_bytes() for i in range(1, 6)]
    )
    connection = await new_connection()
    consumer = await started(
        build_tableinator(clean_postgres, connection, pg_settings(BATCH_SIZE=1000, BATCH_MAX_LATENCY=60))
    )
    await eventually(lambda: _true(consumer.stats["releases"].received == 5), what="5 deliveries")
    assert await count_rows(clean_postgres) == 0  # still pending in the batch
    await consumer.stop()
    await connection.close()
    assert await count_rows(clean_postgres) == 5
    assert await queue_depth(broker, "tableinator.releases") == 0


async def test_single_record_messages_fill_whole_batches(broker: Any, clean_postgres: Pool) -> None:
    """The first prefetch expects `records` messages of ~100 records (a few messages); deliveries
    of one record each raise it, so batches fill to BATCH_SIZE instead of waiting out the latency
    with a handful (RabbitMQ applies a new prefetch only to a consumer started after it)."""
    await publish(
        broker, "releases", [message("releases", synthetic_release(i)).to_bytes() for i in range(1, 201)]
    )
    connection = await new_connection()
    consumer = await started(
        build_tableinator(clean_postgres, connection, pg_settings(BATCH_SIZE=50, BATCH_MAX_LATENCY=3))
    )
    try:
        stats = consumer.stats["releases"]
        await eventually(lambda: _true(stats.written == 200), what="200 rows")
    finally:
        await consumer.stop()
        await connection.close()
    assert stats.batches <= 5, f"{stats.batches} batches for 200 records of batch size 50"
    assert await queue_depth(broker, "tableinator.releases") == 0


async def test_lost_broker_connection_reconnects_and_loses_nothing(broker: Any, clean_postgres: Pool) -> None:
    first = [message("releases", synthetic_release(i)).to_bytes() for i in range(1, 31)]
    later = [message("releases", synthetic_release(i)).to_bytes() for i in range(31, 41)]
    await publish(broker, "releases", first)
    connection = await new_connection()
    consumer = await started(
        build_tableinator(clean_postgres, connection, pg_settings(BATCH_SIZE=1000, BATCH_MAX_LATENCY=60))
    )
    try:
        await eventually(lambda: _true(consumer.stats["releases"].received == 30), what="30 deliveries")
        source = consumer._lanes["releases"].source  # the consumer's own broker connection
        generation = source.generation
        assert source._writer is not None
        source._writer.transport.abort()  # the socket dies with 30 unacked deliveries buffered
        await eventually(
            lambda: _true(source.generation > generation and source.connected), what="reconnected"
        )
        await publish(broker, "releases", later)
        # The broker redelivers the 30 to the new connection, then the 10 new ones arrive.
        await eventually(lambda: _true(consumer.stats["releases"].received >= 70), what="redeliveries")
    finally:
        await consumer.stop()
        await connection.close()
    assert await count_rows(clean_postgres) == 40
    assert await queue_depth(broker, "tableinator.releases") == 0
    assert await queue_depth(broker, "tableinator.releases.dlq") == 0


def settled(consumer: BatchConsumer) -> int:
    """Records of the releases queue committed (or dead-lettered) and acked. The replicas stop
    only then: waiting for deliveries alone let stop() begin while the last batch was committing,
    and under load one run then found that batch's 4 messages back in the queue after its ack
    (RabbitMQ 3.10, quorum queue): redelivery is harmless, but this test checks that all were acked."""
    stats = consumer.stats["releases"]
    return stats.written + stats.unchanged + stats.stale + stats.outdated + stats.dead_lettered


def replica_workload() -> list[bytes]:
    """Releases in two versions with changes, duplicates and shared referenced artists/labels."""
    out = [message("releases", synthetic_release(i, tracks=2), V1).to_bytes() for i in range(1, 401)]
    out += [
        message("releases", synthetic_release(i, tracks=2), V1).to_bytes() for i in range(1, 101)
    ]  # again
    for i in range(1, 401, 3):
        record = changed(synthetic_release(i, tracks=2), title=f"Changed {i}", styles=["Dub"])
        out.append(message("releases", record, V2).to_bytes())
    return out


async def test_two_tableinator_replicas_end_in_the_same_state_as_one(
    broker: Any, clean_postgres: Pool
) -> None:
    workload = replica_workload()
    expected_rows = 400

    async def run(replicas: int) -> list[tuple[int, str, str]]:
        async with clean_postgres.connection() as conn:
            await conn.execute("TRUNCATE releases, releases_seen")
        connections = [await new_connection() for _ in range(replicas)]
        consumers = [
            await started(build_tableinator(clean_postgres, c, pg_settings(BATCH_SIZE=25)))
            for c in connections
        ]
        # Published once every replica is consuming (a fast replica alone could drain it all first).
        await publish(broker, "releases", workload)
        try:
            await eventually(
                lambda: _true(sum(settled(c) for c in consumers) >= len(workload)),
                what="every delivery settled",
            )
        finally:
            for consumer in consumers:
                await consumer.stop()
            for connection in connections:
                await connection.close()
        assert await queue_depth(broker, "tableinator.releases") == 0
        if replicas > 1:
            assert all(c.stats["releases"].received > 0 for c in consumers)  # both really worked
        return await table_state(clean_postgres)

    one = await run(1)
    two = await run(2)
    assert len(one) == expected_rows
    assert two == one


async def test_two_graphinator_replicas_end_in_the_same_state_as_one(
    broker: Any, clean_neo4j: AsyncDriver
) -> None:
    workload = replica_workload()

    async def run(replicas: int) -> tuple[list[Any], list[Any]]:
        await clean_neo4j.execute_query("MATCH (n) DETACH DELETE n")
        connections = [await new_connection() for _ in range(replicas)]
        consumers = [
            await started(build_graphinator(clean_neo4j, c, neo_settings(BATCH_SIZE=25))) for c in connections
        ]
        await publish(broker, "releases", workload)  # once every replica is consuming
        try:
            await eventually(
                lambda: _true(
                    sum(settled(c) for c in consumers) >= len(workload)
                    and all(c.state in ("consuming",) for c in consumers)
                ),
                what="every delivery settled",
            )
        finally:
            for consumer in consumers:
                await consumer.stop()
            for connection in connections:
                await connection.close()
        assert await queue_depth(broker, "graphinator.releases") == 0
        assert await queue_depth(broker, "graphinator.releases.dlq") == 0
        return await graph_snapshot(clean_neo4j)

    one = await run(1)
    two = await run(2)
    assert sum(1 for labels, _ in ((n["l"], n) for n in one[0]) if labels == ["Release"]) == 400
    assert two == one


async def test_graphinator_concurrent_batches_never_write_one_record_twice(
    broker: Any, clean_neo4j: AsyncDriver
) -> None:
    """Two batches commit at once (BATCH_CONCURRENCY=2) while the same ids keep coming back in the
    next batch: the graph equals the one written one batch at a time (no doubled relationships)."""
    rounds = [[message("releases", synthetic_release(i, tracks=2)) for i in range(1, 41)] for _ in range(6)]
    workload = [records_message(batch[k : k + 20]) for batch in rounds for k in (0, 20)]

    async def run(concurrency: int) -> tuple[list[Any], list[Any]]:
        await clean_neo4j.execute_query("MATCH (n) DETACH DELETE n")
        connection = await new_connection()
        consumer = await started(
            build_graphinator(
                clean_neo4j, connection, neo_settings(BATCH_SIZE=40, BATCH_CONCURRENCY=concurrency)
            )
        )
        await publish(broker, "releases", workload)
        try:
            await eventually(
                lambda: _true(consumer.stats["releases"].received >= 40 * 6), what="all deliveries"
            )
        finally:
            await consumer.stop()
            await connection.close()
        assert consumer.stats["releases"].written == 40  # the repeats are unchanged
        return await graph_snapshot(clean_neo4j)

    one = await run(1)
    two = await run(2)
    assert two == one


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _true(value: bool) -> bool:
    return value


async def test_ordered_types_hold_releases_until_the_types_they_point_at_are_written(broker: Any) -> None:
    """With ORDERED_TYPES, no releases batch starts while artists are buffered or committing; without
    it, the two types interleave (the control run shows the test can tell them apart)."""
    artist_bodies = [
        records_message([message("artists", {"id": 1000 * m + k, "name": f"A{m}-{k}"}) for k in range(20)])
        for m in range(1, 7)
    ]
    release_bodies = [
        records_message([message("releases", synthetic_release(100 * m + k, tracks=1)) for k in range(20)])
        for m in range(1, 4)
    ]

    async def run(ordered: bool) -> list[tuple[str, str]]:
        events: list[tuple[str, str]] = []

        async def write(data_type: str, messages: Any) -> WriteResult:
            events.append((data_type, "start"))
            await asyncio.sleep(0.3 if data_type == "artists" else 0.05)  # artists are the slow type
            events.append((data_type, "end"))
            return WriteResult(written=len(messages))

        settings = ConsumerSettings(
            BATCH_SIZE=20, BATCH_MAX_LATENCY=0.1, CONSUME_TYPES="artists,releases", ORDERED_TYPES=ordered
        )
        connection = await new_connection()
        consumer = await started(BatchConsumer("graphinator", connection, write, lambda _: False, settings))
        try:
            await publish(broker, "artists", artist_bodies)
            # The artists are in the consumer (buffered or committing) before any release arrives.
            await eventually(lambda: _true(consumer.stats["artists"].received == 120), what="artists")
            await publish(broker, "releases", release_bodies)
            await eventually(
                lambda: _true(sum(s.written for s in consumer.stats.values()) == 180), what="every record"
            )
        finally:
            await consumer.stop()
            await connection.close()
        return events

    ordered = await run(True)
    last_artist_end = max(i for i, e in enumerate(ordered) if e == ("artists", "end"))
    first_release_start = ordered.index(("releases", "start"))
    assert first_release_start > last_artist_end, ordered
    assert ordered.count(("artists", "end")) == 6 and ordered.count(("releases", "end")) == 3

    unordered = await run(False)
    last_artist_end = max(i for i, e in enumerate(unordered) if e == ("artists", "end"))
    assert unordered.index(("releases", "start")) < last_artist_end, unordered


async def test_serial_types_commit_one_batch_at_a_time_while_the_others_overlap(broker: Any) -> None:
    """SERIAL_TYPES=artists: never two artists batches in flight, while releases (same consumer,
    BATCH_CONCURRENCY=2) do overlap; the counts show the test can tell the two apart."""
    artists = [[{"id": 1000 * m + k, "name": f"A{m}-{k}"} for k in range(20)] for m in range(1, 7)]
    releases = [[synthetic_release(100 * m + k, tracks=1) for k in range(20)] for m in range(1, 7)]
    bodies = {
        "artists": [records_message([message("artists", r) for r in group]) for group in artists],
        "releases": [records_message([message("releases", r) for r in group]) for group in releases],
    }
    in_flight = {"artists": 0, "releases": 0}
    most = {"artists": 0, "releases": 0}

    async def write(data_type: str, messages: Any) -> WriteResult:
        in_flight[data_type] += 1
        most[data_type] = max(most[data_type], in_flight[data_type])
        await asyncio.sleep(0.2)
        in_flight[data_type] -= 1
        return WriteResult(written=len(messages))

    settings = ConsumerSettings(
        BATCH_SIZE=20,
        BATCH_MAX_LATENCY=0.1,
        BATCH_CONCURRENCY=2,
        SERIAL_TYPES="artists",
        CONSUME_TYPES="artists,releases",
    )
    connection = await new_connection()
    consumer = await started(BatchConsumer("graphinator", connection, write, lambda _: False, settings))
    try:
        for data_type, type_bodies in bodies.items():
            await publish(broker, data_type, type_bodies)
        await eventually(
            lambda: _true(sum(s.written for s in consumer.stats.values()) == 240), what="every record"
        )
    finally:
        await consumer.stop()
        await connection.close()
    assert most == {"artists": 1, "releases": 2}
