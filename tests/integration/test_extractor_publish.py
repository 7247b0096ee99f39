"""The extractor against the real RabbitMQ of this stack: counts, confirms, dead letters, control
messages, failure of a truncated file, and kill -9 / restart without loss."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import orjson
import pytest

from common.amqp import DATA_TYPES, DLQ_REASON_HEADER, declare_all_record_topology
from common.messages import (
    ExtractionComplete,
    FileComplete,
    RecordBatch,
    RecordMessage,
    parse_pipeline_message,
)
from extractor.fast_publisher import FastPublisher
from extractor.normalize import record_sha256
from extractor.service import ExtractorService
from extractor.settings import ExtractorSettings
from extractor.state import StateStore
from tests.conftest import REPO_ROOT, SAMPLES, free_port
from tests.fakes.dump_host import DumpHost
from tests.integration.consumer_broker import close_client_connections

pytestmark = pytest.mark.integration

CONSUMERS = ("graphinator", "tableinator")
ALL_QUEUES = [f"{c}.{t}{s}" for c in CONSUMERS for t in DATA_TYPES for s in ("", ".dlq")]


@pytest.fixture
async def channel(amqp_connection: Any) -> AsyncIterator[Any]:
    """A channel on this stack's broker with every record queue declared and emptied."""
    ch = await amqp_connection.channel()
    await declare_all_record_topology(ch)
    for name in ALL_QUEUES:
        queue = await ch.declare_queue(name, passive=True)
        await queue.purge()
    yield ch
    # Leave the broker as found: later tests count what the consumers receive.
    for name in ALL_QUEUES:
        await (await ch.declare_queue(name, passive=True)).purge()
    await ch.close()


async def drain(ch: Any, name: str) -> list[Any]:
    """Every message of a queue, in order, removed from it. Uses basic.get until the queue answers
    empty: exact (the broker confirmed every publish), unlike the asynchronously updated counters
    of quorum queues."""
    queue = await ch.declare_queue(name, passive=True)
    out = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        out.append(message)
    return out


def unpack(messages: list[Any]) -> list[Any]:
    """The decoded messages in order, each `records` message expanded into its records."""
    out: list[Any] = []
    for m in messages:
        decoded = parse_pipeline_message(m.body)
        out.extend(decoded.messages() if isinstance(decoded, RecordBatch) else [decoded])
    return out


def kinds_of(messages: list[Any]) -> Counter[str]:
    """How many records (`record`) and control messages of each kind the messages carry."""
    return Counter(d.kind for d in unpack(messages))


async def counts(ch: Any) -> dict[str, int]:
    """How many messages each record queue holds (drains them)."""
    return {name: len(await drain(ch, name)) for name in ALL_QUEUES}


def settings(tmp_path: Path, **env: Any) -> ExtractorSettings:
    base: dict[str, Any] = {
        "DATA_DIR": str(tmp_path / "data"),
        "HEALTH_PORT": free_port(),
        "LOG_FORMAT": "json",
    }
    base.update(env)
    return ExtractorSettings.model_validate(base)


def sample_source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for t in DATA_TYPES:
        shutil.copy(SAMPLES / f"discogs_20200806_{t}.xml.gz", src / f"discogs_20200806_{t}.xml.gz")
    return src


async def every_sample_record_published(channel: Any) -> dict[str, list[Any]]:
    """Drain every queue; each record queue held its type's 1,000 sample records (several per
    message), then file_complete and extraction_complete; no dead letters."""
    queues = {name: await drain(channel, name) for name in ALL_QUEUES}
    for c in CONSUMERS:
        for t in DATA_TYPES:
            assert kinds_of(queues[f"{c}.{t}"]) == {
                "record": 1000,
                "file_complete": 1,
                "extraction_complete": 1,
            }
            assert len(queues[f"{c}.{t}.dlq"]) == 0
    return queues


async def test_samples_land_with_exact_counts_and_version_not_reprocessed(
    channel: Any, tmp_path: Path
) -> None:
    src = sample_source(tmp_path)
    s = settings(tmp_path)
    assert await ExtractorService(s, source_dir=src, once=True).run() == 0
    queues = await every_sample_record_published(channel)

    messages = queues["tableinator.releases"]
    # Records travel 100 to a message (MESSAGE_RECORDS): 10 messages + 2 control messages.
    batches = [parse_pipeline_message(m.body) for m in messages[:-2]]
    assert [b.count for b in batches if isinstance(b, RecordBatch)] == [100] * 10
    decoded = unpack(messages)
    records = [d for d in decoded if isinstance(d, RecordMessage)]
    assert len(records) == 1000 and len({r.id for r in records}) == 1000
    for m in messages:
        assert m.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert m.content_type == "application/json"
    for r in records:
        assert r.type == "releases" and r.version == "20200806"
        assert r.record is not None  # the first version: every record in full
        assert r.id == r.record["id"]
        assert r.sha256 == record_sha256(r.record)
    first = next(r for r in records if r.id == 1)
    assert first.record is not None
    assert first.record["title"] == "Stockholm" and first.record["master_id"] == 1660109
    # Control messages come after the data of their type.
    assert isinstance(decoded[-2], FileComplete) and decoded[-2].record_count == 1000
    assert decoded[-2].type == "releases" and decoded[-2].version == "20200806"
    assert isinstance(decoded[-1], ExtractionComplete)
    assert decoded[-1].record_counts == {t: 1000 for t in DATA_TYPES}

    state = StateStore(s.data_dir, "20200806").load()
    assert state.completed
    assert {t: (f.phase, f.confirmed, f.records) for t, f in state.files.items()} == {
        t: ("completed", 1000, 1000) for t in DATA_TYPES
    }

    # A completed version is not reprocessed ...
    assert await ExtractorService(s, source_dir=src, once=True).run() == 0
    assert not any((await counts(channel)).values())

    # ... unless asked (`--reprocess`: after an upgrade that changes what the consumers write):
    # the whole version again, then completed again.
    assert await ExtractorService(s, source_dir=src, once=True, reprocess=True).run() == 0
    again = await every_sample_record_published(channel)
    assert unpack(again["tableinator.releases"]) == decoded
    redone = StateStore(s.data_dir, "20200806").load()
    assert redone.completed and {t: f.records for t, f in redone.files.items()} == {
        t: 1000 for t in DATA_TYPES
    }


def next_version(source: Path, dest: Path) -> dict[str, int]:
    """The samples as the next version (20200807): release 1 has a new title, the last release is
    gone, one new release is added; everything else is byte-identical. Returns the ids involved."""
    dest.mkdir()
    for t in DATA_TYPES:
        data = gzip.decompress((source / f"discogs_20200806_{t}.xml.gz").read_bytes())
        if t == "releases":
            assert data.count(b"<title>Stockholm</title>") == 1
            data = data.replace(b"<title>Stockholm</title>", b"<title>Stockholm (Remastered)</title>")
            last = data.rindex(b"<release ")
            gone = int(data[last:].split(b'"')[1])
            added = b'<release id="99999999" status="Accepted"><title>New</title></release>'
            data = data[:last] + added + b"</releases>\n"
        (dest / f"discogs_20200807_{t}.xml.gz").write_bytes(gzip.compress(data))
    return {"changed": 1, "gone": gone, "added": 99999999}


async def test_a_new_version_publishes_unchanged_records_as_unchanged_items(
    channel: Any, tmp_path: Path
) -> None:
    """Weakness 23: a record whose raw XML is the same as in the previous completed version is not
    normalised again; it travels as `"record": null` with the sha256 published then."""
    src = sample_source(tmp_path)
    s = settings(tmp_path)
    assert await ExtractorService(s, source_dir=src, once=True).run() == 0
    before = {
        (t, r.id): r.sha256
        for t in DATA_TYPES
        for r in unpack(await drain(channel, f"graphinator.{t}"))
        if isinstance(r, RecordMessage)
    }
    await counts(channel)
    ids = next_version(src, tmp_path / "next")
    service = ExtractorService(s, source_dir=tmp_path / "next", once=True)
    assert await service.run() == 0
    queues = {name: await drain(channel, name) for name in ALL_QUEUES}
    assert not any(queues[f"{c}.{t}.dlq"] for c in CONSUMERS for t in DATA_TYPES)
    for t in DATA_TYPES:
        records = [r for r in unpack(queues[f"tableinator.{t}"]) if isinstance(r, RecordMessage)]
        assert [r for r in unpack(queues[f"graphinator.{t}"]) if isinstance(r, RecordMessage)] == records
        full = {r.id: r for r in records if r.record is not None}
        unchanged = [r for r in records if r.record is None]
        for r in unchanged:  # the hash the stores hold since the previous version
            assert r.sha256 == before[(t, r.id)] and r.version == "20200807"
        if t != "releases":
            assert not full and len(unchanged) == 1000
            continue
        assert sorted(full) == [ids["changed"], ids["added"]]
        assert full[1].record is not None and full[1].record["title"] == "Stockholm (Remastered)"
        assert full[1].sha256 == record_sha256(full[1].record) != before[("releases", 1)]
        assert len(unchanged) == 998 and ids["gone"] not in {r.id for r in unchanged}
    state = StateStore(s.data_dir, "20200807").load()
    assert {t: (f.records, f.unchanged) for t, f in state.files.items()} == {
        "artists": (1000, 1000), "labels": (1000, 1000), "masters": (1000, 1000), "releases": (1000, 998)
    }  # fmt: skip
    metrics = service.reporter.status()["files"]["releases"]
    assert (metrics["records"], metrics["unchanged"]) == (1000, 998)
    # The older version's index is pruned: only the newest completed one can be a baseline.
    assert sorted(p.name for p in (s.data_dir / "index").iterdir()) == ["20200807"]

    # `--reprocess` publishes every record in full again.
    assert await ExtractorService(s, source_dir=tmp_path / "next", once=True, reprocess=True).run() == 0
    again = [r for r in unpack(await drain(channel, "tableinator.releases")) if isinstance(r, RecordMessage)]
    assert len(again) == 1000 and all(r.record is not None for r in again)
    await counts(channel)


MASTERS_WITH_BAD = """<masters>
<master id="10"><title>One</title><year>2001</year></master>
<master><title>No id here</title></master>
<master id="12"><title>Three &amp; more</title></master>
</masters>
"""


async def run_cli(*args: str, env: dict[str, str], timeout: float = 240) -> tuple[int, str]:
    """`python -m extractor ARGS`: its exit code and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "extractor",
        *args,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_dump_files_named_on_the_command_line_are_extracted(channel: Any, tmp_path: Path) -> None:
    src = sample_source(tmp_path)
    files = [str(src / "discogs_20200806_labels.xml.gz"), str(src / "discogs_20200806_masters.xml.gz")]
    env = dict(os.environ, DATA_DIR=str(tmp_path / "data"), HEALTH_PORT=str(free_port()))
    # As by hand beside the extractor service of `make run`: its health port is taken. A one-off
    # run does its work anyway, and says so.
    with socket.create_server(("127.0.0.1", int(env["HEALTH_PORT"]))):
        code, err = await run_cli("--once", "--source", *files, env=env)
    assert code == 0, err[-3000:]
    assert "health_server_not_started" in err
    named = {"record": 1000, "file_complete": 1, "extraction_complete": 1}
    for t in DATA_TYPES:
        assert kinds_of(await drain(channel, f"graphinator.{t}")) == (
            named if t in ("labels", "masters") else {}
        )
    # Files of two versions are refused before anything is read.
    other = tmp_path / "discogs_20260101_artists.xml.gz"
    shutil.copy(SAMPLES / "discogs_20200806_artists.xml.gz", other)
    code, err = await run_cli("--once", "--source", *files, str(other), env=env, timeout=60)
    assert code == 2 and "the files are of 2 versions (20200806, 20260101)" in err


async def test_malformed_record_goes_to_both_dlqs_with_reason(channel: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "discogs_20260201_masters.xml").write_text(MASTERS_WITH_BAD)
    s = settings(tmp_path)
    service = ExtractorService(s, source_dir=src, once=True)
    assert await service.run() == 0
    queues = {name: await drain(channel, name) for name in ALL_QUEUES}
    # Records 10 and 12 travel in separate messages: the dead letter of record 2 is published
    # between them, so ordinals stay in order.
    assert {n: len(m) for n, m in queues.items() if m} == {
        "graphinator.masters": 2 + 2,
        "tableinator.masters": 2 + 2,
        "graphinator.masters.dlq": 1,
        "tableinator.masters.dlq": 1,
    }
    for consumer in CONSUMERS:
        [dead] = queues[f"{consumer}.masters.dlq"]
        reason = dead.headers[DLQ_REASON_HEADER]
        assert isinstance(reason, str) and "missing id" in reason
        body = orjson.loads(dead.body)
        assert body["kind"] == "malformed_record" and body["ordinal"] == 2
        assert "No id here" in body["xml"]
    records = unpack(queues["graphinator.masters"])
    assert [r.id for r in records if isinstance(r, RecordMessage)] == [10, 12]
    fc = next(r for r in records if isinstance(r, FileComplete))
    assert fc.record_count == 2
    assert service.metrics.malformed.labels(type="masters")._value.get() == 1
    state = StateStore(s.data_dir, "20260201").load()
    assert state.files["masters"].malformed == 1 and state.files["masters"].records == 2


async def test_truncated_gzip_fails_the_file_never_completes(channel: Any, tmp_path: Path) -> None:
    src = sample_source(tmp_path)
    artists = src / "discogs_20200806_artists.xml.gz"
    data = artists.read_bytes()
    artists.write_bytes(data[: len(data) // 2])
    s = settings(tmp_path)
    assert await ExtractorService(s, source_dir=src, once=True).run() == 1
    state = StateStore(s.data_dir, "20200806").load()
    assert state.files["artists"].phase == "failed"
    assert "truncated" in (state.files["artists"].error or "")
    assert not state.completed
    assert state.files["labels"].phase == "completed"
    kinds = kinds_of(await drain(channel, "graphinator.artists"))
    assert kinds["file_complete"] == 0 and kinds["extraction_complete"] == 0
    assert 0 < kinds["record"] < 1000
    labels = kinds_of(await drain(channel, "graphinator.labels"))
    assert labels == {"record": 1000, "file_complete": 1}  # no extraction_complete: version incomplete


async def test_health_ready_and_metrics(channel: Any, tmp_path: Path) -> None:
    src = sample_source(tmp_path)
    port = free_port()
    s = settings(tmp_path, HEALTH_PORT=port, CHECK_INTERVAL_HOURS=1)
    service = ExtractorService(s, source_dir=src, once=False)
    task = asyncio.create_task(service.run())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            body: dict[str, Any] = {}
            for _ in range(300):
                try:
                    body = (await client.get("/health")).json()
                except httpx.TransportError:
                    body = {}
                files = body.get("files", {})
                if files and all(f["phase"] == "completed" for f in files.values()):
                    break
                await asyncio.sleep(0.1)
            assert body["version"] == "20200806"
            assert set(body["files"]) == set(DATA_TYPES)
            for f in body["files"].values():
                assert f["phase"] == "completed" and f["records"] == 1000 and f["error"] is None
                assert f["bytes_total"] > 0 and f["bytes_read"] == f["bytes_total"]
                assert set(f) >= {"phase", "records", "bytes_read", "bytes_total", "records_per_s", "error"}
            ready = await client.get("/ready")
            assert ready.status_code == 200
            metrics = (await client.get("/metrics")).text
            assert 'extractor_records_published_total{type="releases"} 1000.0' in metrics
            assert 'extractor_file_progress_ratio{type="labels"} 1.0' in metrics
            assert 'extractor_malformed_records_total{type="artists"} 0.0' in metrics
            assert "extractor_bytes_read_total" in metrics
    finally:
        service.stop()
        await asyncio.wait_for(task, 30)


# --- kill -9 mid-file, restart ------------------------------------------------------------------


def write_releases(path: Path, n: int) -> None:
    parts = [b"<releases>\n"]
    for i in range(1, n + 1):
        parts.append(
            (
                f'<release id="{i}"><artists><artist><id>{i % 500 + 1}</id><name>A{i % 500}</name></artist>'
                f'</artists><title>Release {i}</title><labels><label name="L" catno="C{i}" id="5"/></labels>'
                f"<genres><genre>Electronic</genre></genres><released>1999</released>"
                f'<master_id is_main_release="false">0</master_id><tracklist>'
                + "".join(f"<track><position>{k}</position><title>T{k}</title></track>" for k in range(8))
                + "</tracklist></release>\n"
            ).encode()
        )
    parts.append(b"</releases>\n")
    path.write_bytes(gzip.compress(b"".join(parts), compresslevel=1))


def extractor_proc(
    src: Path, data_dir: Path, window: int, publisher: str = "fast", **extra_env: str
) -> subprocess.Popen[bytes]:
    env = dict(os.environ, **extra_env)
    env.update(
        DATA_DIR=str(data_dir),
        HEALTH_PORT=str(free_port()),
        PUBLISH_WINDOW=str(window),
        LOG_FORMAT="json",
        PARSE_BATCH_SIZE="200",
        AMQP_PUBLISHER=publisher,
    )
    return subprocess.Popen(
        [sys.executable, "-m", "extractor", "--source", str(src), "--once"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the kill takes the parse worker too
    )


@pytest.mark.parametrize(
    ("publisher", "sig"),
    [("fast", signal.SIGKILL), ("aio-pika", signal.SIGKILL), ("fast", signal.SIGTERM)],
    ids=["fast-kill9", "aio-pika-kill9", "fast-sigterm"],
)
async def test_kill_mid_file_and_restart_loses_nothing(
    channel: Any, tmp_path: Path, publisher: str, sig: signal.Signals
) -> None:
    n = 30_000  # enough that the kill lands mid-file even with several parse processes
    window = 500
    src = tmp_path / "src"
    src.mkdir()
    write_releases(src / "discogs_20261101_releases.xml.gz", n)
    data_dir = tmp_path / "data"
    store = StateStore(data_dir, "20261101")

    proc = extractor_proc(src, data_dir, window, publisher)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if store.path.exists() and store.load().files["releases"].confirmed >= 1500:
                break
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            await asyncio.sleep(0.05)
        if sig == signal.SIGKILL:
            os.killpg(proc.pid, signal.SIGKILL)  # the process and its parse worker, no warning
        else:
            proc.send_signal(signal.SIGTERM)  # graceful: drain confirms, save the checkpoint, exit
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    killed_at = store.load().files["releases"]
    assert killed_at.phase == "parsing" and 1500 <= killed_at.confirmed < n

    proc = extractor_proc(src, data_dir, window, publisher)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err.decode()[-3000:]
    final = store.load()
    assert final.completed and final.files["releases"].phase == "completed"
    assert final.files["releases"].confirmed == n and final.files["releases"].records == n

    messages = await drain(channel, "graphinator.releases")
    table_count = len(await drain(channel, "tableinator.releases"))
    decoded = unpack(messages)
    ids = Counter(d.id for d in decoded if isinstance(d, RecordMessage))
    kinds = Counter(d.kind for d in decoded)
    assert set(ids) == set(range(1, n + 1))  # nothing lost
    duplicates = sum(ids.values()) - n
    assert duplicates <= window  # at most one in-flight window re-published
    if sig == signal.SIGTERM:
        assert duplicates == 0  # a graceful stop checkpoints everything it published
    assert kinds["file_complete"] == 1 and kinds["extraction_complete"] == 1
    assert table_count == len(messages)
    assert len(messages) < n // 10  # records travel many to a message

    # Once completed, the version is not processed again.
    proc = extractor_proc(src, data_dir, window, publisher)
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert (await counts(channel))["graphinator.releases"] == 0


def processes_with(marker: str) -> set[int]:
    """The pids of the live processes whose environment holds `marker` (all of one extractor's
    process tree: the environment is inherited)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                stat = (entry / "stat").read_text()
                if stat[stat.rindex(")") + 2] != "Z":  # a zombie has exited
                    found.add(int(entry.name))
        except OSError:  # it exited meanwhile
            continue
    return found


async def test_a_killed_extractor_leaves_no_parse_process_behind(channel: Any, tmp_path: Path) -> None:
    """SIGKILL of the extractor alone, not of its process group: its fork server, parse worker
    and parse pool notice and exit, instead of parsing on for nobody."""
    src = tmp_path / "src"
    src.mkdir()
    write_releases(src / "discogs_20261101_releases.xml.gz", 30_000)
    data_dir = tmp_path / "data"
    store = StateStore(data_dir, "20261101")
    marker = f"DG_TEST_TREE_{os.getpid()}_{time.monotonic_ns()}"
    proc = extractor_proc(src, data_dir, 500, **{marker: "1"})
    try:
        deadline = time.monotonic() + 120
        while not (store.path.exists() and store.load().files["releases"].confirmed >= 1500):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "no record confirmed in 120 s"
            await asyncio.sleep(0.05)
        helpers = processes_with(marker) - {proc.pid}
        assert len(helpers) >= 2, helpers  # at least the fork server and the parse worker
        proc.kill()
        proc.wait(10)
        for _ in range(150):  # 15 s
            if not (left := processes_with(marker)):
                break
            await asyncio.sleep(0.1)
        assert not left, f"still running 15 s after the extractor was killed: {left}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        for pid in processes_with(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# --- the whole service against the fake dump host ----------------------------------------------


def host_version(version: str) -> dict[str, bytes]:
    return {
        f"discogs_{version}_{t}.xml.gz": (SAMPLES / f"discogs_20200806_{t}.xml.gz").read_bytes()
        for t in DATA_TYPES
    }


async def test_service_downloads_verifies_and_publishes_then_picks_up_a_new_version(
    channel: Any, tmp_path: Path
) -> None:
    async with DumpHost(range_support=True) as host:
        host.add_version("20260901", host_version("20260901"))
        partial = host_version("20261001")
        host.add_version("20261001", partial, checksum=False)  # still uploading: skipped
        host.rate_limit("discogs_20260901_labels.xml.gz", times=1, retry_after="1")
        host.cut_after("discogs_20260901_releases.xml.gz", 200_000)
        host.corrupt("discogs_20260901_masters.xml.gz", times=1)
        s = settings(
            tmp_path,
            DISCOGS_DATA_URL=host.base_url,
            DOWNLOAD_BACKOFF=0.05,
            CHECK_INTERVAL_HOURS=0.0005,  # ~2 s between checks
        )
        service = ExtractorService(s, once=False)
        task = asyncio.create_task(service.run())
        try:
            first = StateStore(s.data_dir, "20260901")
            for _ in range(600):
                if first.path.exists() and first.load().completed:
                    break
                await asyncio.sleep(0.1)
            state = first.load()
            assert state.completed
            for t in DATA_TYPES:
                f = state.files[t]
                name = f"discogs_20260901_{t}.xml.gz"
                assert f.phase == "completed" and f.records == 1000
                assert f.sha256 == hashlib.sha256(host.files[name]).hexdigest()
                assert (s.data_dir / "20260901" / name).read_bytes() == host.files[name]
            assert host.statuses("discogs_20260901_labels.xml.gz") == [429, 200]
            assert host.statuses("discogs_20260901_releases.xml.gz") == [200, 206]
            assert host.statuses("discogs_20260901_masters.xml.gz") == [200, 200]
            assert not list((s.data_dir / "20260901").glob("*.part"))
            assert not StateStore(s.data_dir, "20261001").path.exists()
            downloaded = service.metrics.downloaded_bytes._value.get()
            assert downloaded >= sum(len(b) for b in host_version("20260901").values())

            # The next periodic check finds the now complete 20261001 and processes it; the
            # completed 20260901 is neither downloaded nor published again.
            host.add_version("20261001", partial)
            second = StateStore(s.data_dir, "20261001")
            for _ in range(600):
                if (
                    second.path.exists()
                    and second.load().completed
                    and not (s.data_dir / "20260901").exists()
                ):
                    break
                await asyncio.sleep(0.1)
            assert second.load().completed
            assert not (s.data_dir / "20260901").exists()  # the older download is pruned
            assert first.load().completed  # its marker stays: never processed again
        finally:
            service.stop()
            await asyncio.wait_for(task, 60)
        assert host.statuses("discogs_20260901_artists.xml.gz") == [200]
    artists = unpack(await drain(channel, "graphinator.artists"))
    versions = Counter(d.version for d in artists if isinstance(d, RecordMessage))
    assert versions == {"20260901": 1000, "20261001": 1000}


async def test_a_download_that_keeps_failing_leaves_the_version_incomplete_until_a_later_check(
    channel: Any, tmp_path: Path
) -> None:
    """Pipeline weakness 3: a file whose download fails every attempt is marked failed with the
    reason; nothing of the version is published and it is not completed; a later check, once the
    host serves the file, downloads only that file and completes the version."""
    async with DumpHost() as host:
        host.add_version("20260901", host_version("20260901"))
        name = "discogs_20260901_masters.xml.gz"
        host.server_error(name, times=3)
        s = settings(tmp_path, DISCOGS_DATA_URL=host.base_url, DOWNLOAD_BACKOFF=0.05, DOWNLOAD_ATTEMPTS=3)
        store = StateStore(s.data_dir, "20260901")

        assert await ExtractorService(s, once=True).run() != 0
        state = store.load()
        assert not state.completed
        assert state.files["masters"].phase == "failed"
        assert "503" in (state.files["masters"].error or "")
        assert not list((s.data_dir / "20260901").glob("discogs_20260901_masters*"))
        assert set((await counts(channel)).values()) == {0}  # nothing published
        assert host.statuses("discogs_20260901_artists.xml.gz") == [200]  # downloaded before masters

        assert await ExtractorService(s, once=True).run() == 0
        assert store.load().completed
        assert host.statuses(name) == [503, 503, 503, 200]
        assert host.statuses("discogs_20260901_artists.xml.gz") == [200]  # kept, not fetched again
    await every_sample_record_published(channel)


@pytest.mark.parametrize("how", ["broker-closes", "socket-reset"])
async def test_broker_connection_lost_mid_file_fails_it_and_the_rerun_loses_nothing(
    channel: Any, tmp_path: Path, how: str
) -> None:
    n = 8_000
    window = 500
    src = tmp_path / "src"
    src.mkdir()
    write_releases(src / "discogs_20261201_releases.xml.gz", n)
    s = settings(tmp_path, PUBLISH_WINDOW=window, AMQP_PUBLISHER="fast", PARSE_BATCH_SIZE=200)
    store = StateStore(s.data_dir, "20261201")
    service = ExtractorService(s, source_dir=src, once=True)
    publisher = service.publisher
    assert isinstance(publisher, FastPublisher)
    # Pause publishing at record 3001 so the connection is lost at a known point.
    reached, resume = asyncio.Event(), asyncio.Event()
    original = publisher.publish

    async def publish(body: bytes, routing_key: str, ordinal: int, **kw: Any) -> None:
        if ordinal >= 3001 and not resume.is_set():
            reached.set()
            await resume.wait()
        await original(body, routing_key, ordinal, **kw)

    publisher.publish = publish  # type: ignore[method-assign]
    task = asyncio.create_task(service.run())
    await asyncio.wait_for(reached.wait(), 120)
    if how == "socket-reset":
        assert publisher._writer is not None
        publisher._writer.transport.abort()
    else:
        await close_client_connections("discogsography-extractor")
    for _ in range(100):
        if publisher._failure is not None:
            break
        await asyncio.sleep(0.05)
    resume.set()
    assert await asyncio.wait_for(task, 60) == 1
    failed = store.load().files["releases"]
    assert failed.phase == "failed" and "publishing failed" in (failed.error or "")
    assert failed.confirmed < n

    assert (
        await ExtractorService(settings(tmp_path, PUBLISH_WINDOW=window), source_dir=src, once=True).run()
        == 0
    )
    decoded = unpack(await drain(channel, "graphinator.releases"))
    ids = Counter(d.id for d in decoded if isinstance(d, RecordMessage))
    assert set(ids) == set(range(1, n + 1))
    assert sum(ids.values()) - n <= window


async def test_publishing_waits_while_the_consumer_queues_are_full_and_loses_nothing(
    channel: Any, tmp_path: Path
) -> None:
    """QUEUE_MAX_RECORDS: with nobody consuming, the extractor stops publishing near the bound
    (200 records = 20 messages of 10, read again every 2 messages, 10 messages in flight), says so
    on /health and in its log, and goes on once the queues drain; every record arrives once."""
    port = free_port()
    env = dict(
        os.environ,
        DATA_DIR=str(tmp_path / "data"),
        HEALTH_PORT=str(port),
        LOG_FORMAT="json",
        QUEUE_MAX_RECORDS="200",
        MESSAGE_RECORDS="10",
        PUBLISH_WINDOW="100",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "extractor",
        "--once",
        "--source",
        str(SAMPLES / "discogs_20200806_artists.xml.gz"),
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    log_text = asyncio.ensure_future(proc.stderr.read() if proc.stderr else asyncio.sleep(0, b""))

    async def artists_status() -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=5) as client:
            try:
                body = (await client.get(f"http://127.0.0.1:{port}/health")).json()
            except httpx.HTTPError:
                return {}
            return dict(body.get("files", {}).get("artists", {}))

    try:
        deadline = time.monotonic() + 60
        while not (await artists_status()).get("waiting_for_consumers"):
            assert proc.returncode is None and time.monotonic() < deadline, "never paused"
            await asyncio.sleep(0.2)
        # graphinator's queue, read exactly: near the bound, far from the file's 100 messages.
        first = await drain(channel, "graphinator.artists")
        assert 20 <= len(first) <= 20 + 2 + 10
        # tableinator's is still full: publishing stays paused, nothing new arrives.
        await asyncio.sleep(2)
        assert (await artists_status())["waiting_for_consumers"] is True
        assert await drain(channel, "graphinator.artists") == []
        assert proc.returncode is None
        # The consumers catch up: the file completes.
        received = list(first)
        while proc.returncode is None:
            received += await drain(channel, "graphinator.artists")
            await drain(channel, "tableinator.artists")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.2)
        received += await drain(channel, "graphinator.artists")
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    err = (await log_text).decode()
    assert proc.returncode == 0, err[-3000:]
    assert "publishing_paused" in err and "publishing_resumed" in err
    records = [d for d in unpack(received) if d.kind == "record"]
    assert len(records) == 1000
    assert len({r.id for r in records}) == 1000
    assert kinds_of(received) == {"record": 1000, "file_complete": 1, "extraction_complete": 1}
