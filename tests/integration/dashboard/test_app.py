"""`python -m dashboard` as a real process: /health, /ready, /metrics, /api/metrics, and the
WebSocket feed (a snapshot at least every 2 s, one collection loop shared by every viewer)."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import REPO_ROOT, free_port

pytestmark = pytest.mark.integration


def start_dashboard(port: int, **env: str) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        "DASHBOARD_PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "EXTRACTOR_URL": f"http://127.0.0.1:{free_port()}",
        "GRAPHINATOR_URL": f"http://127.0.0.1:{free_port()}",
        "TABLEINATOR_URL": f"http://127.0.0.1:{free_port()}",
        "API_HEALTH_URL": f"http://127.0.0.1:{free_port()}",
        "CURATOR_URL": f"http://127.0.0.1:{free_port()}",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "dashboard"], cwd=REPO_ROOT, env=environment, stderr=subprocess.PIPE
    )


def wait_ready(base: str, process: subprocess.Popen[bytes], attempts: int = 100) -> None:
    for _ in range(attempts):
        if process.poll() is not None:
            raise AssertionError(
                f"dashboard exited: {process.stderr.read().decode() if process.stderr else ''}"
            )
        try:
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("dashboard never became ready")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def dashboard() -> Iterator[str]:
    port = free_port()
    process = start_dashboard(port)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)
        yield base
    finally:
        stop(process)


async def next_update(ws: ClientConnection, timeout: float = 6.0) -> dict[str, Any]:
    while True:
        message = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
        if message["type"] == "metrics_update":
            data: dict[str, Any] = message["data"]
            return data


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


async def test_health_ready_metrics_and_latest_snapshot(dashboard: str) -> None:
    async with httpx.AsyncClient(base_url=dashboard) as client:
        health = (await client.get("/health")).json()
        assert health["status"] == "healthy"
        assert health["service"] == "dashboard"
        assert (await client.get("/ready")).status_code == 200
        latest = (await client.get("/api/metrics")).json()
        assert latest["neo4j"]["status"] == "up"
        assert latest["postgres"]["status"] == "up"
        assert latest["rabbitmq"]["status"] == "up"
        assert {s["name"] for s in latest["services"]} == {
            "extractor",
            "graphinator",
            "tableinator",
            "api",
            "curator",
        }
        assert all(s["status"] == "down" for s in latest["services"])
        metrics = (await client.get("/metrics")).text
        assert metric(metrics, "dashboard_websocket_connections") == 0
        assert metric(metrics, "dashboard_collections_total") >= 1
        page = await client.get("/")
        assert page.status_code == 200
        assert "dashboard.js" in page.text
        assert (await client.get("/vendor/chart.umd.min.js")).status_code == 200
        history = (await client.get("/api/history")).json()
        assert history["points"]


async def test_websocket_pushes_every_two_seconds_and_viewers_share_one_loop(dashboard: str) -> None:
    url = dashboard.replace("http://", "ws://") + "/ws"
    viewers = [await connect(url) for _ in range(5)]
    try:
        first = orjson.loads(await viewers[0].recv())
        assert first["type"] == "history"
        async with httpx.AsyncClient(base_url=dashboard) as client:
            assert metric((await client.get("/metrics")).text, "dashboard_websocket_connections") == 5

        seen: list[list[int]] = []
        stamps: list[datetime] = []
        for index, ws in enumerate(viewers):
            updates = [await next_update(ws) for _ in range(3)]
            seqs = [u["seq"] for u in updates]
            seen.append(seqs)
            if index == 0:
                stamps = [datetime.fromisoformat(u["timestamp"]) for u in updates]
        # One collection per interval for everyone: consecutive pushes are consecutive passes ...
        for seqs in seen:
            assert seqs == list(range(seqs[0], seqs[0] + 3)), seqs
        # ... the viewers received the same passes (at most one pass apart while they were read) ...
        assert max(s[0] for s in seen) - min(s[0] for s in seen) <= 3
        # ... and they arrive at least every 2 s (the collection interval; small scheduling slack).
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
        assert all(gap <= 2.5 for gap in gaps), gaps

        async with httpx.AsyncClient(base_url=dashboard) as client:
            health = (await client.get("/health")).json()
        latest_seq = max(s[-1] for s in seen)
        # Five viewers for several passes, yet the loop ran once per pass, not once per viewer.
        assert health["collections"] <= latest_seq + 2
    finally:
        for ws in viewers:
            await ws.close()

    async with httpx.AsyncClient(base_url=dashboard) as client:
        for _ in range(50):
            if metric((await client.get("/metrics")).text, "dashboard_websocket_connections") == 0:
                break
            await asyncio.sleep(0.1)
        assert metric((await client.get("/metrics")).text, "dashboard_websocket_connections") == 0


async def test_a_viewer_reconnects_after_a_restart_and_gets_a_fresh_feed() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"ws://127.0.0.1:{port}/ws"
    process = start_dashboard(port)
    try:
        wait_ready(base, process)
        async with connect(url) as ws:
            before = await next_update(ws)
            assert before["seq"] >= 1
    finally:
        stop(process)
    process = start_dashboard(port)
    try:
        wait_ready(base, process)
        async with connect(url) as ws:
            history = orjson.loads(await ws.recv())
            assert history["type"] == "history"
            after = await next_update(ws)
            assert after["neo4j"]["status"] == "up"
    finally:
        stop(process)
