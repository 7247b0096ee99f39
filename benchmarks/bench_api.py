"""Latency and throughput of the api's explore routes on a graph built from a generated dump.

The graph comes from `benchmarks/generate_dump.py` (current dump layout, cross-references) loaded
through the project's own code path: the extractor's parser (`extractor.parser.iter_records`,
in a child process) feeds `graphinator.writer.write_batch` directly (no broker). `make bench`
runs it on a stack of its own (scripts/stack-env.sh 91), because the pipeline benchmark starts
from an emptied database on the +90 stack. Its ids start at 500,000,001 (`--id-base`) and its
dump version is 29990101, so even on a shared stack it never meets the other benchmarks' records
(ids 1..N of version 20261101 whose stale sweep only removes older versions; ids >= 1e9).

Reuse: a `(:BenchGraph {name: 'bench_api'})` node records the generator parameters (release count,
seed, id base, version, a hash of generate_dump.py) and is marked complete only after every
record is written and the indexes are online. A run whose parameters match a complete marker (and
whose release count checks out) reuses the graph: no generation, no load. A marker with other
parameters (or records in the id range without a marker) means the range is deleted and rebuilt;
a matching but incomplete marker resumes (writes are idempotent: unchanged records are skipped).
`--rebuild` forces a rebuild.

Then it starts `python -m api` on free ports and, per endpoint, after an unmeasured warm-up at the
fixed rate (`--warmup-seconds`; the response cache is emptied after it) runs (a) a fixed-rate phase
(default 200 req/s, up to 50 in flight) and (b) a closed-loop phase with 50 connections (wrk), and
prints ONE JSON line with p50/p99, req/s and the response-cache hit share of each phase.

    python benchmarks/bench_api.py [--releases 1000000] [--rate 200] [--seconds 8] [--no-cache]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from queue import Empty
from typing import Any

import httpx
import orjson
import redis.asyncio as aioredis
from neo4j import AsyncDriver

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.settings import ApiSettings  # noqa: E402
from benchmarks.generate_dump import DEFAULT_OUT, Gen, generate  # noqa: E402
from common.clients import create_neo4j_driver  # noqa: E402
from common.messages import RecordMessage  # noqa: E402
from common.writes import WriteResult  # noqa: E402
from extractor.parser import iter_records  # noqa: E402
from graphinator.writer import write_batch  # noqa: E402
from tests.conftest import free_port  # noqa: E402

ID_BASE = 500_000_000  # below the graphinator benchmark's 1e9, far above the pipeline's 1..N
ID_SPAN = 100_000_000
VERSION = "29990101"
SEED = 1
BATCH = 2000
TYPES = ("artists", "labels", "masters", "releases")  # referenced records first: fewer stubs
MARKER = "bench_api"


def graph_params(releases: int) -> dict[str, Any]:
    source = (ROOT / "benchmarks" / "generate_dump.py").read_bytes()
    return {
        "releases": releases,
        "seed": SEED,
        "id_base": ID_BASE,
        "version": VERSION,
        "generator": hashlib.sha256(source).hexdigest()[:16],
    }


def _parse(path: str, data_type: str, out: Any) -> None:
    """Child process: parse one dump file with the extractor's parser, send (id, sha256, json)
    batches (the canonical record JSON the extractor would publish); a malformed record is an
    error here (the generator writes none)."""
    batch: list[tuple[int, str, bytes]] = []
    try:
        for rec in iter_records(Path(path), data_type):
            if rec.error is not None or rec.id is None or rec.sha256 is None or rec.json is None:
                raise ValueError(f"malformed record #{rec.ordinal}: {rec.error}")
            batch.append((rec.id, rec.sha256, rec.json))
            if len(batch) >= BATCH:
                out.put(batch)
                batch = []
        out.put(batch)
        out.put(None)
    except Exception as exc:
        out.put(f"{type(exc).__name__}: {exc}")


def _next_batch(queue: Any, proc: Any) -> Any:
    while True:
        try:
            return queue.get(timeout=5)
        except Empty:
            if not proc.is_alive():
                raise RuntimeError(f"the parser process died (exit code {proc.exitcode})") from None


async def _load_file(driver: AsyncDriver, database: str, path: Path, data_type: str) -> int:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue(maxsize=8)
    proc = ctx.Process(target=_parse, args=(str(path), data_type, queue), daemon=True)
    proc.start()
    written = 0
    pending: asyncio.Task[WriteResult] | None = None

    async def settle(task: asyncio.Task[WriteResult]) -> None:
        result = await task
        if result.rejected:
            raise RuntimeError(f"{data_type}: the writer rejected {result.rejected[:3]}")

    try:
        while True:
            batch = await asyncio.to_thread(_next_batch, queue, proc)
            if isinstance(batch, str):
                raise RuntimeError(f"parsing {path.name} failed: {batch}")
            if batch is None:
                break
            messages = [
                RecordMessage.model_construct(
                    type=data_type, id=rid, sha256=sha, version=VERSION, record=orjson.loads(raw)
                )
                for rid, sha, raw in batch
            ]
            if pending is not None:
                await settle(pending)
            # One batch in flight while the next one is parsed and decoded.
            pending = asyncio.create_task(write_batch(driver, data_type, messages, database=database))
            written += len(messages)
        if pending is not None:
            await settle(pending)
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
    return written


async def _run(driver: AsyncDriver, database: str, cypher: str, **params: Any) -> list[dict[str, Any]]:
    async with driver.session(database=database) as s:
        result = await s.run(cypher, **params)
        return [r.data() async for r in result]


async def _release_count(driver: AsyncDriver, database: str) -> int:
    rows = await _run(
        driver, database,
        "MATCH (r:Release) WHERE r.id > $lo AND r.id <= $hi AND r.sha256 IS NOT NULL RETURN count(r) AS n",
        lo=ID_BASE, hi=ID_BASE + ID_SPAN,
    )  # fmt: skip
    return int(rows[0]["n"])


async def build_graph(settings: ApiSettings, releases: int, rebuild: bool) -> dict[str, Any]:
    """Make sure the benchmark graph for `releases` is in Neo4j; return how it got there."""
    params = graph_params(releases)
    wanted = json.dumps(params, sort_keys=True)
    database = settings.neo4j_database
    driver = await create_neo4j_driver(settings, attempts=3, notifications_min_severity="OFF")
    try:
        rows = await _run(
            driver, database,
            "MATCH (m:BenchGraph {name: $name}) RETURN m.params AS params, m.complete AS complete",
            name=MARKER,
        )  # fmt: skip
        marker = rows[0] if rows else None
        if (
            not rebuild
            and marker is not None
            and marker["params"] == wanted
            and marker["complete"]
            and await _release_count(driver, database) == releases
        ):
            print(f"reusing the benchmark graph ({releases} releases, marker matches)", file=sys.stderr)
            return {"reused": True, "params": params}
        started = time.monotonic()
        resume = not rebuild and marker is not None and marker["params"] == wanted
        if not resume:
            print("clearing the benchmark id range ...", file=sys.stderr)
            for label in ("Release", "Master", "Artist", "Label"):
                await _run(
                    driver, database,
                    f"MATCH (n:{label}) WHERE n.id > $lo AND n.id <= $hi "
                    "CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS",
                    lo=ID_BASE, hi=ID_BASE + ID_SPAN,
                )  # fmt: skip
        await _run(
            driver, database,
            "MERGE (m:BenchGraph {name: $name}) SET m.params = $params, m.complete = false",
            name=MARKER, params=wanted,
        )  # fmt: skip
        print(f"generating a {releases}-release dump ...", file=sys.stderr)
        paths = generate(releases, DEFAULT_OUT / f"api-{releases}", VERSION, SEED, id_base=ID_BASE)
        generated = time.monotonic()
        counts: dict[str, int] = {}
        for data_type in TYPES:
            t0 = time.monotonic()
            counts[data_type] = await _load_file(driver, database, paths[data_type], data_type)
            print(f"  {data_type}: {counts[data_type]} in {time.monotonic() - t0:.0f}s", file=sys.stderr)
        await _run(driver, database, "CALL db.awaitIndexes(600)")
        build_s = round(time.monotonic() - started, 1)
        await _run(
            driver, database,
            "MATCH (m:BenchGraph {name: $name}) SET m.complete = true, m.build_s = $s",
            name=MARKER, s=build_s,
        )  # fmt: skip
        print(f"built in {build_s}s", file=sys.stderr)
        return {
            "reused": False,
            "resumed": resume,
            "params": params,
            "records": counts,
            "generate_s": round(generated - started, 1),
            "build_s": build_s,
        }
    finally:
        await driver.close()


def query_names(releases: int) -> dict[str, list[Any]]:
    """Names and ids to query, straight from the generator (no database round trip)."""
    gen = Gen(releases, SEED, ID_BASE)
    rnd = random.Random(11)
    n_artists, n_labels = gen.n["artists"], gen.n["labels"]
    artist_ix = [rnd.randint(1, n_artists) for _ in range(4000)]
    label_ix = [rnd.randint(1, n_labels) for _ in range(1000)]

    def typing(name: str) -> list[str]:
        # What a user sends while typing a name: every prefix of 2+ characters (the UI waits
        # for a pause, so not all of them; one at random per name).
        text = " ".join(name.lower().split())
        return [text[:k] for k in range(2, len(text) + 1) if text[:k].strip() and not text[:k].endswith(" ")]

    prefixes = [("artist", rnd.choice(typing(gen.artist_name(i)))) for i in artist_ix[:3000]] + [
        ("label", rnd.choice(typing(gen.label_name(i)))) for i in label_ix[:750]
    ]
    return {
        "artists": [gen.artist_name(i) for i in artist_ix],
        "labels": [gen.label_name(i) for i in label_ix],
        "ids": [str(ID_BASE + i) for i in artist_ix],
        "prefixes": prefixes,
    }


def _ms(text: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def wrk(base: str, urls: list[str], conns: int, seconds: float, rate: float | None = None) -> dict[str, Any]:
    """Load with wrk (C, so the load tool does not compete with the api for the CPU much).

    Without `rate`: a closed loop, each of `conns` connections sends its next request as soon as
    the answer arrives (throughput). With `rate`: each connection waits an exponentially
    distributed pause (mean conns/rate) before every request, so the whole is a Poisson stream of
    about `rate` requests/s (latency at a given load)."""
    with tempfile.TemporaryDirectory() as tmp:
        url_file = Path(tmp) / "urls.txt"
        url_file.write_text("\n".join(urls) + "\n")
        script = Path(tmp) / "urls.lua"
        pace = ""
        if rate:
            mean_ms = conns / rate * 1000
            pace = f"delay = function() return math.floor(-math.log(1 - math.random()) * {mean_ms}) end\n"
        script.write_text(
            f"""local urls = {{}}
for line in io.lines("{url_file}") do urls[#urls + 1] = line end
local seed = 7
setup = function(thread) thread:set("seed", seed); seed = seed + 1 end
init = function() math.randomseed(seed) end
request = function() return wrk.format("GET", urls[math.random(#urls)]) end
{pace}"""
        )
        threads = 1 if rate else 2
        out = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{conns}", f"-d{int(seconds)}s", "--latency", "-s", str(script), base],
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


async def cache_events(client: httpx.AsyncClient, kind: str) -> dict[str, float]:
    """The api's response-cache counters for one cache (from /metrics)."""
    text = (await client.get("/metrics")).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("api_cache_events_total{") and f'cache="{kind}"' in line:
            event = line.split('event="')[1].split('"')[0]
            found[event] = float(line.rsplit(" ", 1)[1])
    return found


def hit_share(before: dict[str, float], after: dict[str, float]) -> float | None:
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in ("hit", "miss", "shared")}
    total = sum(delta.values())
    return round((delta["hit"] + delta["shared"]) / total, 3) if total else None


async def clear_response_cache(settings: ApiSettings) -> None:
    """Start from a cold response cache: earlier entries (TTL 5 min) would be hits."""
    redis_client = aioredis.from_url(settings.redis_url)
    try:
        async for key in redis_client.scan_iter("cache:*", count=1000):
            await redis_client.delete(key)
    finally:
        await redis_client.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--releases", type=int, default=int(os.environ.get("BENCH_API_RELEASES", "1000000")))
    parser.add_argument("--rebuild", action="store_true", help="rebuild the graph even when it matches")
    parser.add_argument("--only", default="", help="comma-separated endpoints to run (default: all)")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--no-cache", action="store_true", help="disable the Redis response cache")
    parser.add_argument(
        "--warmup-seconds", type=float, default=5.0,
        help="per endpoint, unmeasured load at the target rate first (a restarted Neo4j starts cold)",
    )  # fmt: skip
    args = parser.parse_args()
    settings = ApiSettings()
    graph = await build_graph(settings, args.releases, args.rebuild)
    await clear_response_cache(settings)
    names = query_names(args.releases)

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
                "autocomplete": lambda: "/api/autocomplete?" + str(q(dict(zip(("type", "q"),
                                                    rnd.choice(names["prefixes"]), strict=True), limit=10))),
                "explore": lambda: f"/api/explore?{q(name=rnd.choice(names['artists']), type='artist')}",
                "expand": lambda: "/api/expand?" + str(q(node_id=rnd.choice(names["labels"]), type="label",
                                                        category="releases", limit=30, offset=0)),
                "node": lambda: f"/api/node/{rnd.choice(names['ids'])}?type=artist",
                "trends": lambda: f"/api/trends?{q(name=rnd.choice(names['artists']), type='artist')}",
            }  # fmt: skip
            only = [e for e in args.only.split(",") if e]
            results: dict[str, Any] = {}
            for name, make_url in endpoints.items():
                if only and name not in only:
                    continue
                for _ in range(50):  # warm connections and code paths
                    await client.get(make_url())
                if args.warmup_seconds > 0:  # warm the stores (steady state), then a cold response cache
                    urls = [make_url() for _ in range(20_000)]
                    await asyncio.to_thread(wrk, base, urls, args.connections, args.warmup_seconds, args.rate)
                    await clear_response_cache(settings)
                kind = "node" if name == "node" else name
                phases: dict[str, Any] = {}
                for phase, rate in (
                    (f"at_{int(args.rate)}_rps", args.rate),
                    (f"closed_{args.connections}_conns", None),
                ):
                    before = await cache_events(client, kind)
                    urls = [make_url() for _ in range(20_000)]
                    phases[phase] = await asyncio.to_thread(
                        wrk, base, urls, args.connections, args.seconds, rate
                    )
                    phases[phase]["cache_hit_share"] = hit_share(before, await cache_events(client, kind))
                    phases[phase]["load_avg_1m"] = os.getloadavg()[0]
                results[name] = phases
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    print(
        json.dumps(
            {
                "benchmark": "api",
                "releases": args.releases,
                "graph": graph,
                "cache": not args.no_cache,
                "endpoints": results,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
