"""Latency and throughput of the api's explore routes on a synthetic graph.

Builds (once; idempotent) a synthetic graph in the shape graphinator writes, with ids far above
real Discogs ids so it never collides with or deletes real data; starts `python -m api` on free
ports; then, per endpoint, runs (a) a fixed-rate phase (default 200 req/s, up to 50 in flight)
and (b) a closed-loop phase with 50 connections, and prints ONE JSON line with p50/p99 and req/s.

    python benchmarks/bench_api.py [--releases 100000] [--rate 200] [--seconds 8] [--no-cache]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from neo4j import AsyncGraphDatabase

from api.settings import ApiSettings

ROOT = Path(__file__).resolve().parent.parent
BASE = 10**12  # synthetic ids start here
BATCH = 10_000
SYLLABLES = [
    "ka", "lo", "mi", "ne", "ra", "so", "tu", "vi", "xe", "yo", "zan", "bel", "cor", "dun", "fel", "gor",
    "hal", "jin", "kel", "lum", "mor", "nix", "pal", "qua", "ros", "sil", "tor", "ul", "ven", "wex",
]  # fmt: skip


def word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def build_graph(settings: ApiSettings, releases: int) -> dict[str, list[str]]:
    """Create the synthetic graph unless it is already there; return names to query."""
    rng = random.Random(42)
    n_artists, n_labels = max(releases // 10, 10), max(releases // 50, 5)
    genres = [f"BenchGenre{i}" for i in range(15)]
    styles = [f"BenchStyle{i}" for i in range(300)]
    artists = [f"{word(rng)} {word(rng)}" for _ in range(n_artists)]
    labels = [f"{word(rng)} Records {i}" for i in range(n_labels)]
    driver = AsyncGraphDatabase.driver(
        settings.neo4j_uri, auth=(settings.neo4j_username, settings.neo4j_password.get_secret_value())
    )
    try:
        async with driver.session(database=settings.neo4j_database) as s:
            rec = await (
                await s.run("MATCH (r:Release) WHERE r.id >= $base RETURN count(r) AS n", base=BASE)
            ).single()
            have = int(rec["n"]) if rec else 0
            if have < releases:
                print(f"building synthetic graph: {releases} releases ...", file=sys.stderr)
                started = time.monotonic()
                await (await s.run("UNWIND $g AS g MERGE (:Genre {name: g})", g=genres)).consume()
                await (
                    await s.run(
                        "UNWIND range(0, size($s)-1) AS i MERGE (st:Style {name: $s[i]}) "
                        "WITH st, i MATCH (g:Genre {name: $g[i % size($g)]}) MERGE (st)-[:PART_OF]->(g)",
                        s=styles,
                        g=genres,
                    )
                ).consume()
                for start in range(0, n_artists, BATCH):
                    rows = [
                        {"id": BASE + i, "name": artists[i]}
                        for i in range(start, min(start + BATCH, n_artists))
                    ]
                    await (
                        await s.run(
                            "UNWIND $rows AS r MERGE (a:Artist {id: r.id}) SET a.name = r.name", rows=rows
                        )
                    ).consume()
                rows = [{"id": BASE + i, "name": labels[i]} for i in range(n_labels)]
                await (
                    await s.run("UNWIND $rows AS r MERGE (l:Label {id: r.id}) SET l.name = r.name", rows=rows)
                ).consume()
                for start in range(have, releases, BATCH):
                    rows = []
                    for i in range(start, min(start + BATCH, releases)):
                        # Popularity is skewed: low artist/label indexes get most releases.
                        a = int(n_artists * rng.random() ** 3)
                        rows.append(
                            {
                                "id": BASE + i,
                                "title": f"{word(rng)} {word(rng)}",
                                "year": rng.randint(1950, 2024) if rng.random() > 0.05 else None,
                                "a": BASE + a,
                                "l": BASE + int(n_labels * rng.random() ** 2),
                                "g": genres[int(len(genres) * rng.random() ** 2)],
                                "s": styles[int(len(styles) * rng.random() ** 2)],
                            }
                        )
                    await (
                        await s.run(
                            """
                            UNWIND $rows AS r
                            MERGE (n:Release {id: r.id}) SET n.title = r.title, n.year = r.year
                            WITH n, r
                            MATCH (a:Artist {id: r.a}), (l:Label {id: r.l}), (g:Genre {name: r.g}),
                                  (st:Style {name: r.s})
                            MERGE (n)-[:BY]->(a) MERGE (n)-[:ON]->(l)
                            MERGE (n)-[:IS]->(g) MERGE (n)-[:IS]->(st)
                            """,
                            rows=rows,
                        )
                    ).consume()
                await (await s.run("CALL db.awaitIndexes(600)")).consume()
                print(f"built in {time.monotonic() - started:.0f}s", file=sys.stderr)
    finally:
        await driver.close()
    # Query mostly the popular names (like real traffic), with a long tail.
    return {
        "artists": [artists[int(n_artists * random.random() ** 3)] for _ in range(2000)],
        "labels": [labels[int(n_labels * random.random() ** 2)] for _ in range(500)],
        "ids": [str(BASE + int(n_artists * random.random() ** 3)) for _ in range(2000)],
        "prefixes": [a[: random.randint(2, 6)] for a in artists[:5000]]
        + [a.split()[0][:4] + " " + a.split()[1][:2] for a in artists[:2000]],
    }


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def fixed_rate(
    client: httpx.AsyncClient, make_url: Callable[[], str], rate: float, seconds: float
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    sem = asyncio.Semaphore(50)

    async def one(url: str) -> None:
        nonlocal errors
        async with sem:
            t0 = time.perf_counter()
            resp = await client.get(url)
            latencies.append((time.perf_counter() - t0) * 1000)
            errors += resp.status_code >= 500

    tasks = []
    start = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(make_url())))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    return {"rps": round(len(latencies) / elapsed, 1), "p50_ms": round(pct(latencies, 50), 2),
            "p99_ms": round(pct(latencies, 99), 2), "errors": errors}  # fmt: skip


def _ms(text: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def wrk_closed_loop(base: str, urls: list[str], conns: int, seconds: float) -> dict[str, Any]:
    """Closed loop with wrk (C, so the load tool does not compete for the api's CPU)."""
    with tempfile.TemporaryDirectory() as tmp:
        url_file = Path(tmp) / "urls.txt"
        url_file.write_text("\n".join(urls) + "\n")
        script = Path(tmp) / "urls.lua"
        script.write_text(
            f"""local urls = {{}}
for line in io.lines("{url_file}") do urls[#urls + 1] = line end
math.randomseed(7)
request = function() return wrk.format("GET", urls[math.random(#urls)]) end
"""
        )
        out = subprocess.run(
            ["wrk", "-t2", f"-c{conns}", f"-d{int(seconds)}s", "--latency", "-s", str(script), base],
            capture_output=True, text=True, check=True, timeout=seconds + 60,
        ).stdout  # fmt: skip
    stats: dict[str, Any] = {}
    errors = 0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("50%", "99%"):
            stats[f"p{parts[0][:-1]}_ms"] = round(_ms(parts[1]), 2)
        elif line.startswith("Requests/sec:"):
            stats["rps"] = float(parts[1])
        elif "Non-2xx or 3xx responses" in line:
            errors = int(parts[-1])
    return {
        "rps": stats.get("rps"),
        "p50_ms": stats.get("p50_ms"),
        "p99_ms": stats.get("p99_ms"),
        "non_2xx": errors,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--releases", type=int, default=int(os.environ.get("BENCH_API_RELEASES", "100000")))
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--no-cache", action="store_true", help="disable the Redis response cache")
    args = parser.parse_args()
    settings = ApiSettings()
    names = await build_graph(settings, args.releases)

    port, health = free_port(), free_port()
    env = {**os.environ, "API_PORT": str(port), "HEALTH_PORT": str(health), "LOG_LEVEL": "WARNING",
           "LOGIN_RATE_LIMIT": "1000000"}  # fmt: skip
    if args.no_cache:
        env |= {"EXPLORE_CACHE_TTL_S": "0", "AUTOCOMPLETE_CACHE_TTL_S": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "api"], cwd=ROOT, env=env, start_new_session=True)  # noqa: ASYNC220
    base = f"http://127.0.0.1:{port}"
    try:
        limits = httpx.Limits(max_connections=args.connections, max_keepalive_connections=args.connections)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if (await client.get("/ready")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("api did not become ready")
                await asyncio.sleep(0.2)
            rnd = random.Random(7)
            q = httpx.QueryParams
            endpoints: dict[str, Callable[[], str]] = {
                "autocomplete": lambda: f"/api/autocomplete?{q(q=rnd.choice(names['prefixes']), limit=10)}",
                "explore": lambda: f"/api/explore?{q(name=rnd.choice(names['artists']), type='artist')}",
                "expand": lambda: "/api/expand?" + str(q(node_id=rnd.choice(names["labels"]), type="label",
                                                        category="releases", limit=30, offset=0)),
                "node": lambda: f"/api/node/{rnd.choice(names['ids'])}?type=artist",
                "trends": lambda: f"/api/trends?{q(name=rnd.choice(names['artists']), type='artist')}",
            }  # fmt: skip
            results: dict[str, Any] = {}
            for name, make_url in endpoints.items():
                for _ in range(50):  # warm connections and JIT-less paths
                    await client.get(make_url())
                results[name] = {
                    f"at_{int(args.rate)}_rps": await fixed_rate(client, make_url, args.rate, args.seconds),
                    f"closed_{args.connections}_conns_wrk": wrk_closed_loop(
                        base, [make_url() for _ in range(5000)], args.connections, args.seconds
                    ),
                }
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    print(
        json.dumps(
            {"benchmark": "api", "releases": args.releases, "cache": not args.no_cache, "endpoints": results}
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
