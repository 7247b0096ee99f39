"""Shared harness of bench_graphinator / bench_tableinator: pre-fill `<consumer>.releases` with N
synthetic releases, start the real worker (`python -m <consumer>`), time the drain.

Synthetic ids start at 10^9 so a run never touches real data; they are removed before and after.
Prints ONE JSON line: records/s, batch p50/p99 latency, the worker's peak RSS.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import orjson

from common.amqp import declare_all_record_topology, declare_records_exchange
from common.clients import create_amqp_connection
from common.messages import RecordMessage
from common.settings import AmqpSettings

ROOT = Path(__file__).resolve().parent.parent
BASE = 1_000_000_000
VERSION = "20990101"
ROLES = ("Producer", "Mixed By", "Written-By", "Engineer", "Mastered By")


def credit(aid: int, role: str | None = None) -> dict[str, Any]:
    return {
        "id": BASE + aid,
        "name": f"Bench Artist {aid}",
        "anv": None,
        "join": None,
        "role": role,
        "tracks": None,
    }


def release(i: int) -> dict[str, Any]:
    """A release of realistic size (~3 KB JSON): credits, labels, tracks, identifiers, videos."""
    tracks = 8 + i % 10
    return {
        "id": BASE + i,
        "status": "Accepted",
        "title": f"Benchmark Release {i}",
        "artists": [credit((i * 7 + k) % 200_000) for k in range(1 + i % 2)],
        "extraartists": [
            credit((i * 13 + k) % 500_000, ROLES[k % len(ROLES)])
            for k in range(3 + i % 4)
        ],
        "labels": [{"id": BASE + i % 50_000, "name": f"Bench Label {i % 50_000}", "catno": f"BL-{i:07d}"}],
        "series": [],
        "formats": [{"name": "Vinyl", "qty": 1, "text": None, "descriptions": ["LP", "Album"]}],
        "genres": [["Electronic", "Rock", "Jazz", "Hip Hop", "Pop"][i % 5]],
        "styles": [["House", "Techno", "Punk", "Bop", "Trap", "Synth-pop", "Ambient"][i % 7]],
        "country": ["UK", "US", "Germany", "Japan", "France"][i % 5],
        "released": f"{1960 + i % 60}-0{1 + i % 9}-00",
        "year": 1960 + i % 60,
        "notes": "Recorded live. " * (i % 5),
        "data_quality": "Correct",
        "master_id": BASE + i // 3,
        "is_main_release": i % 3 == 0,
        "tracklist": [
            {"position": f"{'AB'[t % 2]}{t}", "title": f"Track {t} of {i}", "duration": "4:05", "artists": [],
             "extraartists": [], "sub_tracks": []}
            for t in range(tracks)
        ],
        "identifiers": [{"type": "Barcode", "value": f"{i:013d}", "description": None}],
        "videos": [{"src": f"https://www.youtube.com/watch?v={i:011d}", "duration": 245, "embed": True,
                    "title": f"Video {i}", "description": None}],
        "companies": [{"id": BASE + i % 9000, "name": f"Pressing Plant {i % 9000}", "catno": None,
                       "entity_type": 17, "entity_type_name": "Pressed By", "resource_url": None}],
        "images": [],
    }  # fmt: skip


def body(i: int) -> bytes:
    record = release(i)
    sha = hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return RecordMessage(
        type="releases", id=record["id"], sha256=sha, version=VERSION, record=record
    ).to_bytes()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def prefill(consumer: str, n: int) -> None:
    """Publish n release messages (confirmed, pipelined) so they sit in `<consumer>.releases`."""
    connection = await create_amqp_connection(AmqpSettings(), attempts=3)
    channel = await connection.channel(publisher_confirms=True)
    await declare_all_record_topology(channel)
    for name in ("graphinator.releases", "tableinator.releases"):
        await (await channel.declare_queue(name, passive=True)).purge()
    exchange = await declare_records_exchange(channel)
    window = 2000
    for start in range(0, n, window):
        await asyncio.gather(
            *(
                exchange.publish(aio_pika.Message(body(i), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                                 routing_key="releases")
                for i in range(start, min(n, start + window))
            )
        )  # fmt: skip
    other = "tableinator" if consumer == "graphinator" else "graphinator"
    await (await channel.declare_queue(f"{other}.releases", passive=True)).purge()
    await connection.close()


async def health(port: int) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/health", timeout=aiohttp.ClientTimeout(total=5)) as resp,
    ):
        data: dict[str, Any] = await resp.json()
        return data


async def bench(
    consumer: str, n: int, cleanup: Callable[[], Awaitable[None]], extra_env: dict[str, str] | None = None
) -> dict[str, Any]:
    await cleanup()
    await prefill(consumer, n)
    port = free_port()
    env = {**os.environ, "HEALTH_PORT": str(port), "CONSUME_TYPES": "releases", "LOG_LEVEL": "WARNING",
           "LOG_FORMAT": "json", **(extra_env or {})}  # fmt: skip
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, then only polled
        [sys.executable, "-m", consumer], cwd=ROOT, env=env, stderr=subprocess.PIPE
    )
    status: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            try:
                status = await health(port)
            except (aiohttp.ClientError, OSError):
                continue
            done = status["written"]["releases"] + status["unchanged"]["releases"]
            if done >= n:
                break
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{consumer} exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}"
                )
        else:
            raise RuntimeError(f"{consumer} did not drain {n} messages in time")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    timing = status["timing"]["releases"]
    elapsed = timing["last_commit_at"] - timing["first_message_at"]
    result = {
        "benchmark": consumer,
        "records": n,
        "seconds": round(elapsed, 2),
        "records_per_s": round(n / elapsed, 1),
        "batch_size": status["batch_size"],
        "batch_p50_s": timing["batch_p50_s"],
        "batch_p99_s": timing["batch_p99_s"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "dead_lettered": status["dlq_counts"]["releases"],
    }
    await cleanup()
    return result
