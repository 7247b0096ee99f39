"""`python -m common.dlq`: look into a DLQ without emptying it, replay what failed into the one
consumer it failed in, keep what can never succeed, purge on request (real RabbitMQ and
PostgreSQL; the dead letters come from the broker, a running tableinator and the extractor's
malformed-record format)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import aio_pika
import orjson
import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from common import dlq
from common.amqp import DLQ_REASON_HEADER
from tableinator.service import TableinatorSettings
from tableinator.service import build_consumer as build_tableinator
from tests.integration.consumer_broker import eventually, new_connection, publish, queue_depth, reset_queues
from tests.integration.consumer_support import RELEASE_1, changed, message, synthetic_release, unchanged

pytestmark = pytest.mark.integration

Pool = AsyncConnectionPool[AsyncConnection[dict[str, Any]]]
DLQ = "tableinator.releases.dlq"
MALFORMED = orjson.dumps(
    {
        "kind": "malformed_record",
        "error": "record has no id",
        "ordinal": 3,
        "xml": "<release><title>x</title>",
    }
)


@pytest.fixture
async def broker(amqp_connection: Any) -> Any:
    await reset_queues(amqp_connection)
    yield amqp_connection
    await reset_queues(amqp_connection)


async def run_tableinator_until(pool: Pool, done: Any, what: str) -> None:
    connection = await new_connection()
    settings = TableinatorSettings(BATCH_SIZE=50, BATCH_MAX_LATENCY=0.2, SWEEP_QUIET_SECONDS=0.5)
    consumer = build_tableinator(pool, connection, settings)
    await consumer.start()
    try:
        await eventually(done, what=what)
    finally:
        await consumer.stop()
        await connection.close()


async def row_ids(pool: Pool) -> list[int]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT id FROM releases ORDER BY id")
        return [row["id"] for row in await cur.fetchall()]


async def depth_is(broker: Any, queue: str, expected: int) -> bool:
    return await queue_depth(broker, queue) == expected


async def fill_dlq(broker: Any, pool: Pool) -> None:
    """Four dead letters in tableinator.releases.dlq: first a good record the broker dead-lettered
    (rejected: as after a crash loop), then the two the tableinator refused with their reasons, in
    either order (a record of the wrong shape, an unchanged item of a record it lacks), last a
    record the extractor found malformed."""
    await publish(broker, "releases", [message("releases", synthetic_release(5)).to_bytes()])
    channel = await broker.channel()
    queue = await channel.declare_queue("tableinator.releases", passive=True)
    delivery = await queue.get(fail=False, timeout=5)
    assert delivery is not None
    await delivery.reject(requeue=False)
    await channel.close()
    await eventually(lambda: depth_is(broker, DLQ, 1), what="the broker's dead letter")

    bad_shape = message("releases", changed(RELEASE_1, id=901, year="1999")).to_bytes()
    lacking = unchanged(message("releases", synthetic_release(77))).to_bytes()
    await publish(broker, "releases", [bad_shape, lacking])
    await run_tableinator_until(pool, lambda: depth_is(broker, DLQ, 3), "the two refused records")

    channel = await broker.channel(publisher_confirms=True)
    headers: dict[str, Any] = {DLQ_REASON_HEADER: "record has no id", "x-discogsography-type": "releases"}
    await channel.default_exchange.publish(aio_pika.Message(MALFORMED, headers=headers), routing_key=DLQ)
    await channel.close()


async def test_show_tells_why_each_message_failed_and_leaves_them_in_place(
    broker: Any, clean_postgres: Pool
) -> None:
    await fill_dlq(broker, clean_postgres)

    depths = await dlq.depths(broker)
    assert depths[DLQ] == 4
    assert depths["graphinator.releases.dlq"] == 0
    assert set(depths) <= set(dlq.known_dlqs())

    letters = await dlq.peek(broker, DLQ, limit=10)
    assert [letter.kind for letter in (letters[0], letters[3])] == ["record", "malformed_record"]
    assert sorted((letter.kind, letter.ids) for letter in letters[1:3]) == [
        ("record", [901]),
        ("unchanged item", [77]),
    ]
    by_id = {letter.ids[0]: letter for letter in letters[:3]}
    assert by_id[5].reason == "broker: rejected in tableinator.releases (1 time(s))"
    assert "year must be int" in by_id[901].reason
    assert "does not hold the record" in by_id[77].reason
    assert letters[3].reason == "record has no id"
    assert [by_id[5].replayable, by_id[901].replayable, by_id[77].replayable] == [True, True, False]
    assert not letters[3].replayable
    assert all(letter.data_type == "releases" for letter in letters)

    # Nothing was taken: the same messages, in the same order, and a limit is a limit.
    assert await queue_depth(broker, DLQ) == 4
    assert await dlq.peek(broker, DLQ, limit=10) == letters
    assert await dlq.peek(broker, DLQ, limit=1) == letters[:1]


async def test_replay_sends_back_to_that_consumer_only_and_keeps_what_cannot_succeed(
    broker: Any, clean_postgres: Pool
) -> None:
    await fill_dlq(broker, clean_postgres)
    graph_copies = await queue_depth(broker, "graphinator.releases")

    result = await dlq.replay(broker, DLQ)
    assert (result.replayed, result.kept) == (2, 2)
    assert result.kept_reasons == {
        "cannot be replayed (malformed_record)": 1,
        "cannot be replayed (unchanged item)": 1,
    }
    assert await queue_depth(broker, "tableinator.releases") == 2
    assert await queue_depth(broker, "graphinator.releases") == graph_copies  # no second copy there

    # The good record lands; the bad one is refused again, with its reason and the replay counted.
    async def settled() -> bool:
        return await row_ids(clean_postgres) == [5] and await depth_is(broker, DLQ, 3)

    await run_tableinator_until(clean_postgres, settled, "the replayed record and the refused one")
    letters = await dlq.peek(broker, DLQ, limit=10)
    by_kind = {letter.kind: letter for letter in letters}
    assert set(by_kind) == {"malformed_record", "unchanged item", "record"}
    assert by_kind["malformed_record"].reason == "record has no id"
    assert by_kind["record"].ids == [901]
    assert "year must be int" in by_kind["record"].reason
    assert by_kind["record"].replayed == 1


async def test_replay_can_pick_by_reason_and_purge_empties(broker: Any, clean_postgres: Pool) -> None:
    await fill_dlq(broker, clean_postgres)

    result = await dlq.replay(broker, DLQ, match="year must be int")
    assert (result.replayed, result.kept) == (1, 3)
    assert result.kept_reasons == {
        "no match": 1,
        "cannot be replayed (malformed_record)": 1,
        "cannot be replayed (unchanged item)": 1,
    }
    letters = await dlq.peek(broker, DLQ, limit=10)
    assert [(letter.kind, letter.ids) for letter in letters] == [
        ("record", [5]),
        ("unchanged item", [77]),
        ("malformed_record", []),
    ]

    assert (await dlq.replay(broker, DLQ, limit=0)).replayed == 0
    # A limit stops the pass at once: what came after it stays, in its order.
    assert (await dlq.replay(broker, DLQ, limit=1)).replayed == 1
    letters = await dlq.peek(broker, DLQ, limit=10)
    assert [(letter.kind, letter.ids) for letter in letters] == [
        ("unchanged item", [77]),
        ("malformed_record", []),
    ]

    assert await dlq.purge(broker, DLQ) == 2
    assert await queue_depth(broker, DLQ) == 0
    assert await queue_depth(broker, "tableinator.releases") == 2  # the two replayed, untouched


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "common.dlq", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
        check=False,
    )


async def test_the_command_line(broker: Any, clean_postgres: Pool) -> None:
    await fill_dlq(broker, clean_postgres)

    listed = cli("--json", "list")
    assert listed.returncode == 0, listed.stderr
    counts = {row["queue"]: row["messages"] for row in map(orjson.loads, listed.stdout.splitlines())}
    assert counts[DLQ] == 4

    shown = cli("show", "tableinator.releases", "--limit", "3")  # the consumer queue names its DLQ
    assert shown.returncode == 0, shown.stderr
    assert "broker: rejected in tableinator.releases" in shown.stdout
    assert "year must be int" in shown.stdout
    assert "unchanged item releases 20200806 ids [77]" in shown.stdout
    assert "record has no id" not in shown.stdout  # last, beyond the limit

    unknown = cli("show", "releases")
    assert unknown.returncode == 2
    assert "'releases' is not a dead-letter queue" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    refused = cli("purge", DLQ)
    assert refused.returncode == 2
    assert "--yes" in refused.stderr
    assert await queue_depth(broker, DLQ) == 4

    replayed = cli("replay", DLQ, "--match", "rejected")
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1 to tableinator.releases, kept 3" in replayed.stdout

    purged = cli("--json", "purge", DLQ, "--yes")
    assert purged.returncode == 0, purged.stderr
    assert orjson.loads(purged.stdout) == {"queue": DLQ, "purged": 3}


def test_queue_names() -> None:
    assert dlq.resolve("curator.sync-requests") == "curator.sync-requests.dlq"
    assert dlq.resolve("graphinator.artists.dlq") == "graphinator.artists.dlq"
    with pytest.raises(dlq.UnknownQueueError):
        dlq.resolve("graphinator.tracks")
