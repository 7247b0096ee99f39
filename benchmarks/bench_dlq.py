"""`python -m common.dlq`: how fast `show` peeks and `replay` empties a DLQ of dead-lettered
releases (env BENCH_RECORDS, default 20000; `tableinator.releases` and its DLQ are emptied before
and after). Prints ONE JSON line."""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time
from pathlib import Path

import aio_pika
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.consumer_bench import VERSION, release
from common import dlq
from common.amqp import DLQ_REASON_HEADER, declare_record_queues, dlq_name
from common.clients import create_amqp_connection
from common.messages import RecordMessage
from common.settings import AmqpSettings

QUEUE = "tableinator.releases"


async def main() -> None:
    n = int(os.environ.get("BENCH_RECORDS", "20000"))
    connection = await create_amqp_connection(AmqpSettings(), attempts=3)
    channel = await connection.channel(publisher_confirms=True)
    queues = await declare_record_queues(channel, "tableinator", ("releases",))
    dead = await channel.declare_queue(dlq_name(QUEUE), passive=True)

    async def empty() -> None:
        await queues["releases"].purge()
        await dead.purge()

    await empty()
    record = release(1)
    # One release as a consumer dead-letters it: a `record` message with the reason.
    body = RecordMessage(
        type="releases", id=record["id"], sha256="0" * 64, version=VERSION, record=record
    ).to_bytes()
    headers: dict[str, aio_pika.abc.FieldValue] = {DLQ_REASON_HEADER: "bad record shape: benchmark"}
    for start in range(0, n, 500):
        await asyncio.gather(
            *(
                channel.default_exchange.publish(
                    aio_pika.Message(body, headers=headers), routing_key=dead.name
                )
                for _ in range(min(500, n - start))
            )
        )
    began = time.perf_counter()
    shown = await dlq.peek(connection, dead.name, 1000)
    peek_s = time.perf_counter() - began
    began = time.perf_counter()
    result = await dlq.replay(connection, dead.name)
    replay_s = time.perf_counter() - began
    await empty()
    await connection.close()
    print(
        orjson.dumps(
            {
                "benchmark": "dlq_tool",
                "messages": n,
                "body_bytes": len(body),
                "show_1000_s": round(peek_s, 2),
                "shown": len(shown),
                "replayed": result.replayed,
                "replay_messages_per_s": round(result.replayed / replay_s, 1),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        ).decode()
    )


if __name__ == "__main__":
    asyncio.run(main())
