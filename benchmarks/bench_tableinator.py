"""tableinator draining a pre-filled queue of synthetic releases (env BENCH_RECORDS, default 100000)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.consumer_bench import BASE, bench
from common.clients import create_postgres_pool
from common.settings import PostgresSettings


async def main() -> None:
    n = int(os.environ.get("BENCH_RECORDS", "100000"))
    pool = await create_postgres_pool(PostgresSettings(), attempts=3)

    async def cleanup() -> None:
        async with pool.connection() as conn:
            await conn.execute("DELETE FROM releases WHERE id >= %s", (BASE,))
            await conn.execute("DELETE FROM releases_seen WHERE id >= %s", (BASE,))

    result = await bench("tableinator", n, cleanup)
    await pool.close()
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    asyncio.run(main())
