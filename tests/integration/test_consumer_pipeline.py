"""The real pipeline: `python -m extractor --source DIR --once` -> RabbitMQ -> `python -m graphinator`
and `python -m tableinator` (subprocesses with their /health, /ready, /metrics).

- all samples of both layouts land with exact counts in Neo4j and PostgreSQL (one full node and
  one row per record, no duplicates); the newer 2026 version of labels/masters replaces the 2020
  ones (records absent from it are swept after its extraction_complete);
- an extractor killed mid-file and restarted ends in the same state as an uninterrupted run;
- an update that publishes only what changed ends in the same state as one publishing everything.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from neo4j import AsyncDriver
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from common.amqp import DATA_TYPES
from extractor.parser import iter_records
from extractor.state import StateStore
from graphinator.writer import LABELS
from tableinator.writer import seen_table
from tests.conftest import ENTITY_TABLES, REPO_ROOT, SAMPLES, SEEN_TABLES, free_port
from tests.integration.consumer_broker import eventually, queue_depth, reset_queues
from tests.integration.test_graphinator_writer import graph_snapshot

pytestmark = pytest.mark.integration

Pool = AsyncConnectionPool[AsyncConnection[dict[str, Any]]]
V2020 = "20200806"
V2026 = "20260201"
GENERATED_VERSION = "20250101"
GENERATED_RELEASES = 5000
UPDATE_VERSION = "20250201"


def expected_ids(path: Path, data_type: str) -> set[int]:
    return {r.id for r in iter_records(path, data_type) if r.error is None and r.id is not None}


def layout_dirs(tmp: Path) -> tuple[Path, Path]:
    old, new = tmp / "dump2020", tmp / "dump2026"
    old.mkdir()
    new.mkdir()
    for data_type in DATA_TYPES:
        shutil.copy(SAMPLES / f"discogs_{V2020}_{data_type}.xml.gz", old)
    shutil.copy(SAMPLES / "discogs_20260201_labels_first15.xml", new / f"discogs_{V2026}_labels.xml")
    shutil.copy(SAMPLES / "discogs_20260201_masters.xml", new / f"discogs_{V2026}_masters.xml")
    return old, new


class Service:
    """A worker subprocess (`python -m <name>`) on a free health port."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = free_port()
        env = {
            **os.environ,
            "HEALTH_PORT": str(self.port),
            "BATCH_MAX_LATENCY": "0.2",
            "SWEEP_QUIET_SECONDS": "1",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "WARNING",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", name],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    async def get(self, path: str) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://127.0.0.1:{self.port}{path}", timeout=aiohttp.ClientTimeout(total=5)
            ) as resp,
        ):
            body = await resp.json() if path != "/metrics" else await resp.text()
            return resp.status, body

    async def ready(self) -> bool:
        try:
            status, _ = await self.get("/ready")
        except (aiohttp.ClientError, TimeoutError):
            return False
        return status == 200

    async def status(self) -> dict[str, Any]:
        _, body = await self.get("/health")
        return dict(body)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


async def run_extractor(source: Path, data_dir: Path, kill_when: Any = None) -> int:
    """Run `python -m extractor --once`; with `kill_when(health_url)`, SIGKILL it once that says so."""
    port = free_port()
    env = {**os.environ, "LOG_FORMAT": "json", "LOG_LEVEL": "WARNING", "HEALTH_PORT": str(port)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "extractor", "--source", str(source), "--once", "--data-dir", str(data_dir),
        cwd=REPO_ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    if kill_when is not None:
        while proc.returncode is None and not await kill_when(f"http://127.0.0.1:{port}/health"):  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        if proc.returncode is None:
            # A crash of the whole extractor: the main process and its parse worker, at once.
            os.killpg(proc.pid, signal.SIGKILL)
    _, err = await proc.communicate()
    if kill_when is None:
        assert proc.returncode == 0, err.decode()[-3000:]
    return proc.returncode or 0


@pytest.fixture
async def services(
    amqp_connection: Any, clean_neo4j: AsyncDriver, clean_postgres: Pool
) -> AsyncIterator[dict[str, Service]]:
    await reset_queues(amqp_connection)
    started = {name: Service(name) for name in ("graphinator", "tableinator")}
    try:
        for service in started.values():
            await eventually(service.ready, timeout=60, what=f"{service.name} /ready")
        yield started
    finally:
        codes = {name: service.stop() for name, service in started.items()}
        await reset_queues(amqp_connection)
    assert codes == {"graphinator": 0, "tableinator": 0}  # graceful SIGTERM


async def drained(connection: Any) -> bool:
    for consumer in ("graphinator", "tableinator"):
        for data_type in DATA_TYPES:
            if await queue_depth(connection, f"{consumer}.{data_type}"):
                return False
    return True


async def store_counts(driver: AsyncDriver, pool: Pool) -> dict[str, tuple[int, int, int]]:
    """{type: (full nodes, distinct ids among them, rows)}."""
    out = {}
    for data_type, label in LABELS.items():
        records, _, _ = await driver.execute_query(
            f"MATCH (n:{label}) WHERE n.sha256 IS NOT NULL RETURN count(n) AS c, count(DISTINCT n.id) AS d"
        )
        async with pool.connection() as conn:
            cur = await conn.execute(f"SELECT count(*) AS c FROM {data_type}")
            row = await cur.fetchone()
        out[data_type] = (int(records[0]["c"]), int(records[0]["d"]), int(row["c"]) if row else -1)
    return out


async def settle(
    connection: Any, services: dict[str, Service], versions: dict[str, str], times: int = 1
) -> None:
    """Each service has run every expected extraction_complete hook (`times` times so far); that
    message is the last of its queue, so every record before it is committed and acked."""
    for service in services.values():

        async def hooks_done(service: Service = service) -> bool:
            done = (await service.status())["completed_versions"]
            return all(done[t].count(f"extraction_complete:{v}") >= times for t, v in versions.items())

        await eventually(hooks_done, timeout=180, what=f"{service.name} hooks")
    await eventually(lambda: drained(connection), timeout=60, what="queues drained")


async def test_all_samples_of_both_layouts_land_with_exact_counts(
    services: dict[str, Service], amqp_connection: Any, clean_neo4j: AsyncDriver, clean_postgres: Pool,
    tmp_path: Path,
) -> None:  # fmt: skip
    old, new = layout_dirs(tmp_path)
    await run_extractor(old, tmp_path / "state")
    await settle(amqp_connection, services, dict.fromkeys(DATA_TYPES, V2020))
    expected = {t: expected_ids(old / f"discogs_{V2020}_{t}.xml.gz", t) for t in DATA_TYPES}
    assert all(len(ids) > 900 for ids in expected.values())
    counts = await store_counts(clean_neo4j, clean_postgres)
    assert counts == {t: (len(ids), len(ids), len(ids)) for t, ids in expected.items()}
    async with clean_postgres.connection() as conn:
        cur = await conn.execute("SELECT array_agg(id ORDER BY id) AS ids FROM releases")
        row = await cur.fetchone()
    assert row is not None
    assert set(row["ids"]) == expected["releases"]

    # Spot checks through the whole pipeline (values read from the sample XML).
    records, _, _ = await clean_neo4j.execute_query(
        "MATCH (r:Release {id: 1}) OPTIONAL MATCH (r)-[o:ON]->(l:Label) "
        "RETURN r.title AS title, r.year AS year, r.formats AS formats, r.is_main_release AS main, "
        "collect([l.id, o.catno]) AS labels"
    )
    assert records[0].data() == {
        "title": "Stockholm",
        "year": 1999,
        "formats": ['2 x Vinyl, 12", 33 ⅓ RPM'],
        "main": True,
        "labels": [[5, "SK032"]],
    }
    records, _, _ = await clean_neo4j.execute_query(
        "MATCH (a:Artist {id: 239})-[c:CREDITED]->(:Release {id: 1}) RETURN a.name AS name, c.role AS role"
    )
    assert [r.data() for r in records] == [{"name": "Jesper Dahlbäck", "role": "Music By [All Tracks By]"}]

    # Health while idle: counts per type, dlq counts, state; Prometheus metrics.
    for name, service in services.items():
        status = await service.status()
        assert status["service"] == name
        assert status["message_counts"]["releases"] >= len(expected["releases"])
        assert status["dlq_counts"] == dict.fromkeys(DATA_TYPES, 0)
        assert status["state"] in ("idle", "processing")
        code, metrics = await service.get("/metrics")
        assert code == 200
        assert f'{name}_batches_total{{type="releases"}}' in metrics

    # The newer version (current layout) carries only labels and masters: it replaces them.
    await run_extractor(new, tmp_path / "state")
    await settle(amqp_connection, services, {"labels": V2026, "masters": V2026})
    new_labels = expected_ids(new / f"discogs_{V2026}_labels.xml", "labels")
    new_masters = expected_ids(new / f"discogs_{V2026}_masters.xml", "masters")
    counts = await store_counts(clean_neo4j, clean_postgres)
    n_art, n_rel = len(expected["artists"]), len(expected["releases"])
    assert counts == {
        "artists": (n_art, n_art, n_art),
        "labels": (len(new_labels), len(new_labels), len(new_labels)),
        "masters": (len(new_masters), len(new_masters), len(new_masters)),
        "releases": (n_rel, n_rel, n_rel),
    }
    records, _, _ = await clean_neo4j.execute_query(
        "MATCH (c:Label {id: 107799})-[:SUBLABEL_OF]->(p:Label) RETURN c.name AS c, p.id AS p, p.name AS pn"
    )
    assert [r.data() for r in records] == [
        {"c": "Novalis", "p": 278277, "pn": "AVC Audio Video Communications AG"}
    ]


async def pipeline_state(driver: AsyncDriver, pool: Pool) -> Any:
    tables = {}
    async with pool.connection() as conn:
        for data_type in DATA_TYPES:
            cur = await conn.execute(
                f"SELECT t.id, t.sha256, t.dump_version, s.dump_version AS seen_in, t.data FROM {data_type} t"
                f" LEFT JOIN {seen_table(data_type)} s USING (id) ORDER BY id"
            )
            tables[data_type] = await cur.fetchall()
    return await graph_snapshot(driver), tables


async def test_extractor_killed_mid_file_and_restarted_equals_an_uninterrupted_run(
    services: dict[str, Service], amqp_connection: Any, clean_neo4j: AsyncDriver, clean_postgres: Pool,
    tmp_path: Path,
) -> None:  # fmt: skip
    # A generated dump big enough that the kill reliably lands inside the releases file, however
    # fast the extractor publishes (the samples' 1,000 releases take a few tens of milliseconds).
    source = tmp_path / "dump"
    generator = REPO_ROOT / "benchmarks" / "generate_dump.py"
    args = ["--releases", str(GENERATED_RELEASES), "--version", GENERATED_VERSION, "--out", str(source)]
    await asyncio.to_thread(
        subprocess.run, [sys.executable, str(generator), *args], check=True, capture_output=True, timeout=120
    )
    versions = dict.fromkeys(DATA_TYPES, GENERATED_VERSION)
    await run_extractor(source, tmp_path / "state-a")
    await settle(amqp_connection, services, versions)
    uninterrupted = await pipeline_state(clean_neo4j, clean_postgres)
    assert len(uninterrupted[1]["releases"]) == GENERATED_RELEASES

    async with clean_neo4j.session() as session:
        wipe = "MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS"
        await (await session.run(wipe)).consume()
    async with clean_postgres.connection() as conn:
        await conn.execute(f"TRUNCATE {', '.join(ENTITY_TABLES + SEEN_TABLES)}")

    published_at_kill = 0

    async def mid_releases(health_url: str) -> bool:
        """True once the extractor reports some, but not all, releases published."""
        nonlocal published_at_kill
        try:
            async with aiohttp.ClientSession() as session, session.get(health_url) as response:
                body = await response.json()
        except aiohttp.ClientError:
            return False  # not listening yet
        releases = body.get("files", {}).get("releases") or {}
        published_at_kill = int(releases.get("records") or 0)
        return 0 < published_at_kill < GENERATED_RELEASES

    await run_extractor(source, tmp_path / "state-b", kill_when=mid_releases)
    assert 0 < published_at_kill < GENERATED_RELEASES, f"the kill should land mid-file ({published_at_kill})"
    await run_extractor(source, tmp_path / "state-b")
    await settle(amqp_connection, services, versions, times=2)
    assert await pipeline_state(clean_neo4j, clean_postgres) == uninterrupted


async def generate(out: Path, version: str, churn: float = 0.0) -> None:
    generator = REPO_ROOT / "benchmarks" / "generate_dump.py"
    args = [
        "--releases",
        str(GENERATED_RELEASES),
        "--version",
        version,
        "--out",
        str(out),
        "--churn",
        str(churn),
    ]
    await asyncio.to_thread(
        subprocess.run, [sys.executable, str(generator), *args], check=True, capture_output=True, timeout=120
    )


async def test_an_update_publishing_only_changes_ends_as_one_publishing_every_record(
    services: dict[str, Service], amqp_connection: Any, clean_neo4j: AsyncDriver, clean_postgres: Pool,
    tmp_path: Path,
) -> None:  # fmt: skip
    """Weakness 23: the extractor publishes a record unchanged since the previous completed
    version as an unchanged item (id + old sha256). The stores end exactly as when every record
    of the new version is published in full: changed records rewritten, unchanged ones kept and
    marked as seen in the new version, records gone from it removed."""
    first, update = tmp_path / "first", tmp_path / "update"
    await generate(first, GENERATED_VERSION)
    await generate(update, UPDATE_VERSION, churn=0.05)

    async def load_then_update(data_dir: Path, *, full: bool, times: int) -> tuple[Any, dict[str, int]]:
        await run_extractor(first, data_dir)
        await settle(amqp_connection, services, dict.fromkeys(DATA_TYPES, GENERATED_VERSION), times)
        if full:  # without the previous version's index every record is published in full
            shutil.rmtree(data_dir / "index")
        await run_extractor(update, data_dir)
        await settle(amqp_connection, services, dict.fromkeys(DATA_TYPES, UPDATE_VERSION), times)
        marker = StateStore(data_dir, UPDATE_VERSION).load()
        assert marker.completed
        unchanged = {t: f.unchanged for t, f in marker.files.items()}
        return await pipeline_state(clean_neo4j, clean_postgres), unchanged

    only_changes, unchanged = await load_then_update(tmp_path / "state-a", full=False, times=1)
    # Most records went out as unchanged items (5% churn: 4% changed, 1% gone, 1% new).
    assert unchanged["releases"] > GENERATED_RELEASES * 0.9
    async with clean_neo4j.session() as session:
        wipe = "MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS"
        await (await session.run(wipe)).consume()
    async with clean_postgres.connection() as conn:
        await conn.execute(f"TRUNCATE {', '.join(ENTITY_TABLES + SEEN_TABLES)}")
    every_record, none = await load_then_update(tmp_path / "state-b", full=True, times=2)
    assert none == dict.fromkeys(DATA_TYPES, 0)
    assert only_changes == every_record
    _, tables = only_changes
    versions = {row["seen_in"] for rows in tables.values() for row in rows}
    assert versions == {UPDATE_VERSION}  # every record still in the dump is marked as seen in it
    for service in services.values():
        assert (await service.status())["dlq_counts"] == dict.fromkeys(DATA_TYPES, 0)
