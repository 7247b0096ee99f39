"""Shared harness of bench_graphinator / bench_tableinator: pre-fill `<consumer>.releases` with N
synthetic releases in `records` messages of 100 (what the extractor sends; env
BENCH_MESSAGE_RECORDS), start the real worker (`python -m <consumer>`), time the drain.

Synthetic ids start at 10^9 so a run never touches real data; they are removed before and after.
Prints ONE JSON line: records/s, batch p50/p99 latency, the worker's peak RSS.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import resource
import signal
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
from common.messages import record_item_bytes, records_body
from common.settings import AmqpSettings
from tests.conftest import free_port

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


def item(i: int) -> bytes:
    """One release as an element of a `records` message (canonical JSON, its hash)."""
    data = orjson.dumps(release(i), option=orjson.OPT_SORT_KEYS)
    return record_item_bytes(BASE + i, hashlib.sha256(data).hexdigest(), data)


def bodies(n: int, per_message: int) -> list[bytes]:
    return [
        records_body("releases", VERSION, [item(i) for i in range(start, min(n, start + per_message))])
        for start in range(0, n, per_message)
    ]


async def prefill(consumer: str, n: int) -> None:
    """Publish n releases (confirmed, pipelined) so they sit in `<consumer>.releases`."""
    connection = await create_amqp_connection(AmqpSettings(), attempts=3)
    channel = await connection.channel(publisher_confirms=True)
    await declare_all_record_topology(channel)
    for name in ("graphinator.releases", "tableinator.releases"):
        await (await channel.declare_queue(name, passive=True)).purge()
    exchange = await declare_records_exchange(channel)
    messages = bodies(n, int(os.environ.get("BENCH_MESSAGE_RECORDS", "100")))
    window = 200
    for start in range(0, len(messages), window):
        await asyncio.gather(
            *(
                exchange.publish(aio_pika.Message(b, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                                 routing_key="releases")
                for b in messages[start : start + window]
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
