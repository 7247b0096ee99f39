"""The whole pipeline's wall time: a generated dump -> `python -m extractor --once` -> RabbitMQ ->
`python -m graphinator` and `python -m tableinator`, until both have committed every record of the
version into Neo4j and PostgreSQL (each service has run its `extraction_complete` hook for all
four types).

    python benchmarks/bench_pipeline.py [--releases N] [--update] [--churn 0.05]
        (or BENCH_PIPELINE_RELEASES, BENCH_PIPELINE_UPDATE=1, BENCH_PIPELINE_CHURN)

It starts from empty stores (a first load): it refuses to run on the default stack and wipes the
Neo4j database, the record tables and the record queues of the stack it runs on, so `make bench`
runs it on an isolated stack (scripts/stack-env.sh 90), never on your data. With `--update` the next
version of the dump is then extracted, as a monthly update: `--churn` of its records touched, four
fifths of those changed (rewritten with their relationships), one fifth gone (swept), as many new;
the rest unchanged (hash checks and dump-version bumps). `--churn 0` extracts the same dump again.
Default 1,000,000 releases (about 1.8 M records; the generated dump is cached in benchmarks/data).
Prints ONE JSON line per run: records per type, wall seconds, releases/s and records/s into both
stores, each process's CPU seconds and peak RSS (Neo4j's too), and the disk the loaded version
occupies (Neo4j store and transaction logs, PostgreSQL, the extractor's data directory).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.generate_dump import DEFAULT_OUT, generate  # noqa: E402
from common.amqp import DATA_TYPES, declare_all_record_topology  # noqa: E402
from common.clients import create_amqp_connection, create_postgres_pool  # noqa: E402
from common.settings import AmqpSettings, PostgresSettings  # noqa: E402
from tests.conftest import ENTITY_TABLES, SEEN_TABLES, free_port  # noqa: E402


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM of a live process (Linux), in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a live process (all its threads), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_idle() -> tuple[float, float]:
    """CPU seconds the whole machine spent busy and idle (all cores) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK"), idle / os.sysconf("SC_CLK_TCK")


def store_pid(name: str) -> int | None:
    """The pid of a store started by scripts/infra.sh on the current stack (PostgreSQL: the
    postmaster)."""
    try:
        local = Path(os.environ["DISCOGSOGRAPHY_LOCAL_DIR"])
        path = local / "postgres" / "postmaster.pid" if name == "postgres" else local / "run" / f"{name}.pid"
        return int(path.read_text().split()[0])
    except (KeyError, OSError, ValueError, IndexError):
        return None


def store_cpu_seconds(name: str, pid: int) -> float | None:
    """CPU seconds of a store. PostgreSQL works in one process per connection: the postmaster's
    own time, that of the backends it has reaped (cutime/cstime) and that of the live ones."""
    own = cpu_seconds(pid)
    if name != "postgres" or own is None:
        return own
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    reaped = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    return own + reaped + sum(cpu_seconds(int(child)) or 0.0 for child in children)


def dir_mb(path: Path) -> float:
    """Bytes of the files under `path`, in MiB (0 when it does not exist)."""
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 1)


def disk_mb(data_dir: str) -> dict[str, float]:
    """What the loaded version occupies: Neo4j's store and transaction logs, the PostgreSQL
    database, and the extractor's data directory (state markers and the baseline index)."""
    neo4j = Path(os.environ["DISCOGSOGRAPHY_LOCAL_DIR"]) / "neo4j" / "data"
    return {
        "neo4j_store": dir_mb(neo4j / "databases" / "neo4j"),
        "neo4j_tx_logs": dir_mb(neo4j / "transactions" / "neo4j"),
        "postgres": asyncio.run(_postgres_mb()),
        "extractor_data_dir": dir_mb(Path(data_dir)),
    }


async def _postgres_mb() -> float:
    pool = await create_postgres_pool(PostgresSettings(), min_size=1, max_size=1, attempts=3)
    async with pool.connection() as conn:
        size = await (await conn.execute("SELECT pg_database_size(current_database()) AS bytes")).fetchone()
    await pool.close()
    return round(int(size["bytes"]) / 2**20, 1) if size else 0.0


def health(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body
    except OSError:
        return None


def start(module: str, port: int, extra: list[str] | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HEALTH_PORT": str(port), "LOG_LEVEL": "WARNING", "LOG_FORMAT": "json"}
    return subprocess.Popen(
        [sys.executable, "-m", module, *(extra or [])], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def hooks_done(port: int, version: str) -> bool:
    body = health(port)
    if not body:
        return False
    done = body.get("completed_versions", {})
    return all(f"extraction_complete:{version}" in done.get(t, []) for t in DATA_TYPES)


def reset_stores() -> None:
    """Empty the bench stack's stores: a fresh Neo4j database (much faster than deleting millions
    of nodes), empty record tables and queues; then the schema again."""
    offset = os.environ.get("SERVICE_PORT_OFFSET", "0")
    local = os.environ.get("DISCOGSOGRAPHY_LOCAL_DIR")
    if offset in ("", "0") or not local:
        raise SystemExit(
            'bench_pipeline wipes its stores: run it on its own stack (eval "$(scripts/stack-env.sh 90)")'
        )
    infra = str(ROOT / "scripts" / "infra.sh")
    subprocess.run([infra, "stop-neo4j"], check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(Path(local) / "neo4j", ignore_errors=True)
    subprocess.run([infra, "start-neo4j"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(
        [sys.executable, "-m", "schema_init"],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    asyncio.run(_empty_tables_and_queues())


async def _empty_tables_and_queues() -> None:
    pool = await create_postgres_pool(PostgresSettings(), min_size=1, max_size=1, attempts=3)
    async with pool.connection() as conn:
        await conn.execute(f"TRUNCATE {', '.join(ENTITY_TABLES + SEEN_TABLES)}")
    await pool.close()
    connection = await create_amqp_connection(AmqpSettings(), attempts=3)
    channel = await connection.channel()
    await declare_all_record_topology(channel)
    for consumer in ("graphinator", "tableinator"):
        for t in DATA_TYPES:
            for name in (f"{consumer}.{t}", f"{consumer}.{t}.dlq"):
                await (await channel.declare_queue(name, passive=True)).purge()
    await connection.close()


def run(releases: int, out: Path, update: bool = False, churn: float = 0.0) -> None:
    """A first load into empty stores; with `update`, then the next version of the dump (`churn`
    of its records touched, see generate_dump). Prints a JSON line for each."""
    paths = generate(releases, out)
    reset_stores()
    version = paths["releases"].name.split("_")[1]
    counts = json.loads((out / f"discogs_{version}.manifest.json").read_text())["counts"]
    ports = {"graphinator": free_port(), "tableinator": free_port()}
    consumers = {name: start(name, port) for name, port in ports.items()}
    try:
        deadline = time.monotonic() + 60
        while not all(health(p) for p in ports.values()):
            if time.monotonic() > deadline:
                raise RuntimeError("consumers did not start; see their logs with LOG_LEVEL=INFO")
            time.sleep(0.2)
        with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as data_dir:
            first = measure("pipeline", paths, version, releases, counts, consumers, ports, data_dir)
            print(json.dumps(first), flush=True)
            if update:
                following = (datetime.strptime(version, "%Y%m%d") + timedelta(days=30)).strftime("%Y%m%d")
                later = generate(releases, out, following, churn=churn) if churn else paths
                again = measure(
                    "pipeline_update", later, following, releases, counts, consumers, ports, data_dir
                )
                print(json.dumps({**again, "churn": churn}), flush=True)
    finally:
        for proc in consumers.values():
            proc.terminate()
        for proc in consumers.values():
            proc.wait(timeout=60)


def measure(
    name: str,
    paths: dict[str, Path],
    version: str,
    releases: int,
    counts: dict[str, int],
    consumers: dict[str, subprocess.Popen[bytes]],
    ports: dict[str, int],
    data_dir: str,
) -> dict[str, Any]:
    """Extract `paths` as dump `version` (`--source` of symlinks named for it) and wait until
    both consumers have run every type's `extraction_complete` hook."""
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-src-") as src_dir:
        src = Path(src_dir)
        for data_type, path in paths.items():
            (src / f"discogs_{version}_{data_type}.xml.gz").symlink_to(path)
        extractor_port = free_port()
        stores = {store: store_pid(store) for store in ("neo4j", "postgres", "rabbitmq")}
        cpu_before = {store: store_cpu_seconds(store, pid) if pid else None for store, pid in stores.items()}
        consumer_cpu_before = {c: cpu_seconds(proc.pid) or 0.0 for c, proc in consumers.items()}
        busy_before, idle_before = machine_busy_idle()
        started, started_at = time.monotonic(), time.time()
        extractor = start(
            "extractor", extractor_port, ["--source", str(src), "--once", "--data-dir", data_dir]
        )
        extractor_rss = None
        while True:
            # wait4, not poll: its rusage includes the parse processes the extractor reaped.
            pid, status, usage = os.wait4(extractor.pid, os.WNOHANG)
            if pid:
                extractor.returncode = os.waitstatus_to_exitcode(status)
                break
            extractor_rss = peak_rss_mb(extractor.pid) or extractor_rss
            time.sleep(0.2)
        if extractor.returncode != 0:
            raise RuntimeError(f"extractor exited with {extractor.returncode}")
        extracted_s = time.monotonic() - started
        while not all(hooks_done(p, version) for p in ports.values()):
            time.sleep(0.2)
        wall = time.monotonic() - started
        busy_after, idle_after = machine_busy_idle()
        busy, idle = busy_after - busy_before, idle_after - idle_before
        finished = {c: health(port) or {} for c, port in ports.items()}
        cpu: dict[str, float | None] = {"extractor": usage.ru_utime + usage.ru_stime}
        cpu |= {c: (cpu_seconds(proc.pid) or 0.0) - consumer_cpu_before[c] for c, proc in consumers.items()}
        for store, store_pid_ in stores.items():
            now, before = (store_cpu_seconds(store, store_pid_) if store_pid_ else None), cpu_before[store]
            cpu[store] = now - before if now is not None and before is not None else None
    total = sum(int(v) for v in counts.values())
    # Records the extractor published as unchanged items (no record: unchanged since the last version).
    marker = json.loads((Path(data_dir) / f".extraction_state_{version}.json").read_bytes())
    unchanged = sum(int(f.get("unchanged", 0)) for f in marker["files"].values())
    return {
        "benchmark": name,
        "version": version,
        "releases": releases,
        "records": total,
        "extractor_s": round(extracted_s, 2),
        "wall_s": round(wall, 2),
        "releases_per_s": round(releases / wall, 1),
        "records_per_s": round(total / wall, 1),
        "unchanged_items": unchanged,
        # When each consumer committed its last batch of each type, seconds from the start.
        "done_s": {
            c: {
                t: round(v["last_commit_at"] - started_at, 1)
                for t, v in body.get("timing", {}).items()
                if v.get("last_commit_at")
            }
            for c, body in finished.items()
        },
        "transient_retries": {
            c: sum(body.get("transient_retries", {}).values()) for c, body in finished.items()
        },
        # CPU seconds each process used during the run, and how busy the whole machine was.
        "cpu_s": {c: round(v, 1) if v is not None else None for c, v in cpu.items()},
        "machine_busy_pct": round(100 * busy / (busy + idle), 1),
        "peak_rss_mb": {
            "extractor_main": extractor_rss,
            **{c: peak_rss_mb(proc.pid) for c, proc in consumers.items()},
            "neo4j": peak_rss_mb(stores["neo4j"]) if stores["neo4j"] else None,
        },
        "disk_mb": disk_mb(data_dir),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--releases", type=int, default=int(os.environ.get("BENCH_PIPELINE_RELEASES", "1000000"))
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--update",
        action="store_true",
        default=os.environ.get("BENCH_PIPELINE_UPDATE", "") not in ("", "0"),
        help="then extract the next version of the dump (a second JSON line)",
    )
    parser.add_argument(
        "--churn",
        type=float,
        default=float(os.environ.get("BENCH_PIPELINE_CHURN", "0.05")),
        help="share of the records the next version touches (4/5 changed, 1/5 gone; 0: the same dump)",
    )
    args = parser.parse_args()
    run(args.releases, args.out / f"pipeline-{args.releases}", args.update, args.churn)


if __name__ == "__main__":
    main()
