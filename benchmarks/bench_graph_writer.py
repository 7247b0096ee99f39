"""graphinator's Neo4j writer alone: synthetic releases (env BENCH_RECORDS, default 30000) written
through `write_batch` with the service's default batch size and write parallelism, no broker.

The records are those of consumer_bench (ids from 10^9, removed before and after). A freshly
started Neo4j writes at a third to half of its steady rate until the JIT has compiled the write
path, so BENCH_WARMUP records (default 20000) are written and removed first; their rate is
reported as `warmup_records_per_s`. Prints ONE JSON line: records/s, batch p50/p99 latency, this
process's peak RSS.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import resource
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.consumer_bench import BASE, VERSION, release
from common.clients import create_neo4j_driver
from common.consumer import tune_gc_for_batches
from common.messages import RecordMessage
from graphinator.service import GraphinatorSettings
from graphinator.writer import write_batch


def message(i: int) -> RecordMessage:
    record = release(i)
    sha = hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return RecordMessage(type="releases", id=record["id"], sha256=sha, version=VERSION, record=record)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def main() -> None:
    n = int(os.environ.get("BENCH_RECORDS", "30000"))
    settings = GraphinatorSettings()
    tune_gc_for_batches()  # as the service does
    driver = await create_neo4j_driver(settings, attempts=3)

    async def cleanup() -> None:
        for label in ("Release", "Master", "Artist", "Label"):
            async with driver.session(database=settings.neo4j_database) as session:
                result = await session.run(
                    f"MATCH (n:{label}) WHERE n.id >= $base "
                    "CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS",
                    base=BASE,
                )
                await result.consume()

    async def write_all(count: int) -> tuple[float, list[float], int]:
        batches = [
            [message(i) for i in range(start, min(count, start + settings.batch_size))]
            for start in range(0, count, settings.batch_size)
        ]
        latencies: list[float] = []
        written = 0
        begin = time.perf_counter()
        for batch in batches:
            t0 = time.perf_counter()
            result = await write_batch(
                driver,
                "releases",
                batch,
                database=settings.neo4j_database,
                timeout=settings.tx_timeout_s,
                parallel=settings.write_parallelism,
            )
            latencies.append(time.perf_counter() - t0)
            written += result.written
        return time.perf_counter() - begin, latencies, written

    warmup = int(os.environ.get("BENCH_WARMUP", "20000"))
    warmup_rate = 0.0
    await cleanup()
    if warmup > 0:
        warmup_elapsed, _, _ = await write_all(warmup)
        warmup_rate = warmup / warmup_elapsed
        await cleanup()
    elapsed, latencies, written = await write_all(n)
    await cleanup()
    await driver.close()
    print(
        orjson.dumps(
            {
                "benchmark": "graph_writer",
                "records": n,
                "written": written,
                "seconds": round(elapsed, 2),
                "records_per_s": round(n / elapsed, 1),
                "batch_size": settings.batch_size,
                "write_parallelism": settings.write_parallelism,
                "batch_p50_s": round(percentile(latencies, 0.5), 3),
                "batch_p99_s": round(percentile(latencies, 0.99), 3),
                "warmup_records_per_s": round(warmup_rate, 1),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "load_avg_1m": round(os.getloadavg()[0], 2),
            }
        ).decode()
    )


if __name__ == "__main__":
    asyncio.run(main())
