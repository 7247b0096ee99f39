"""graphinator draining a pre-filled queue of synthetic releases (env BENCH_RECORDS, default 30000)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.consumer_bench import BASE, bench
from common.clients import create_neo4j_driver
from common.settings import Neo4jSettings


async def main() -> None:
    n = int(os.environ.get("BENCH_RECORDS", "30000"))
    driver = await create_neo4j_driver(Neo4jSettings(), attempts=3)

    async def cleanup() -> None:
        for label in ("Release", "Master", "Artist", "Label"):
            async with driver.session() as session:
                result = await session.run(
                    f"MATCH (n:{label}) WHERE n.id >= $base "
                    "CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS",
                    base=BASE,
                )
                await result.consume()

    result = await bench("graphinator", n, cleanup)
    await driver.close()
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    asyncio.run(main())
