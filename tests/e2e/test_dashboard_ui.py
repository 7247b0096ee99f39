"""The ops dashboard in Chromium: its numbers change live while the real pipeline (extractor ->
RabbitMQ -> graphinator + tableinator) ingests the samples, and its WebSocket reconnects by
itself after the dashboard restarts."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from neo4j import AsyncDriver
from playwright.async_api import Page, expect

from tests.conftest import SAMPLES, free_port
from tests.e2e.conftest import (
    ARTIFACTS,
    SAMPLE_VERSION,
    Server,
    screenshot,
    start_process,
    stop_process,
    wait_http,
)
from tests.integration.consumer_broker import reset_queues

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

INGEST_TIMEOUT_MS = 180_000


def service_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "LOG_FORMAT": "json", "CONNECT_ATTEMPTS": "3", **extra}


class Processes:
    def __init__(self) -> None:
        self.started: list[Any] = []

    def start(self, module: str, env: dict[str, str], health: str | None = None, *args: str) -> Any:
        log = ARTIFACTS / "logs" / f"{module}.log"
        process = start_process(module, env, log, *args)
        self.started.append(process)
        if health:
            wait_http(health, process, log)
        return process


@pytest.fixture
def processes() -> Iterator[Processes]:
    procs = Processes()
    yield procs
    for process in reversed(procs.started):
        stop_process(process)


def dashboard_env(port: int, urls: dict[str, str]) -> dict[str, str]:
    dead = {
        k: f"http://127.0.0.1:{free_port()}" for k in ("EXTRACTOR_URL", "GRAPHINATOR_URL", "TABLEINATOR_URL")
    }
    dead |= {
        "API_HEALTH_URL": f"http://127.0.0.1:{free_port()}",
        "CURATOR_URL": f"http://127.0.0.1:{free_port()}",
    }
    return service_env(DASHBOARD_PORT=str(port), **(dead | urls))


async def count(page: Page, testid: str) -> int:
    text = (await page.get_by_test_id(testid).inner_text()).replace(",", "").replace("\u202f", "").strip()
    return int(text) if text.isdigit() else 0


async def wait_count(page: Page, testid: str, minimum: int) -> int:
    await page.wait_for_function(
        """([id, min]) => {
            const el = document.querySelector(`[data-testid="${id}"]`);
            return el && Number(el.textContent.replace(/[^0-9]/g, "")) >= min;
        }""",
        arg=[testid, minimum],
        timeout=INGEST_TIMEOUT_MS,
    )
    return await count(page, testid)


async def test_dashboard_numbers_change_while_the_pipeline_ingests(
    processes: Processes,  # first: its servers outlive the pages (torn down after them)
    page_factory: Any,
    api_server: Server,
    clean_neo4j: AsyncDriver,
    clean_postgres: Any,
    amqp_connection: Any,
    tmp_path: Path,
) -> None:
    # The counts below are exact: nothing from an earlier run may be waiting in the record queues.
    await reset_queues(amqp_connection)
    graph_port, table_port, extractor_port, dash_port = free_port(), free_port(), free_port(), free_port()
    processes.start(
        "graphinator", service_env(HEALTH_PORT=str(graph_port)), f"http://127.0.0.1:{graph_port}/ready"
    )
    processes.start(
        "tableinator", service_env(HEALTH_PORT=str(table_port)), f"http://127.0.0.1:{table_port}/ready"
    )
    urls = {
        "EXTRACTOR_URL": f"http://127.0.0.1:{extractor_port}",
        "GRAPHINATOR_URL": f"http://127.0.0.1:{graph_port}",
        "TABLEINATOR_URL": f"http://127.0.0.1:{table_port}",
        "API_HEALTH_URL": f"http://127.0.0.1:{api_server.env['HEALTH_PORT']}",
    }
    base = f"http://127.0.0.1:{dash_port}"
    processes.start("dashboard", dashboard_env(dash_port, urls), f"{base}/ready")

    page, _ = await page_factory(1440, 1000)
    await page.goto(base + "/")
    await expect(page.get_by_test_id("ws-state")).to_have_attribute("data-state", "connected")
    await expect(page.get_by_test_id("service-graphinator-status")).to_have_text("ready")
    await expect(page.get_by_test_id("service-tableinator-status")).to_have_text("ready")
    await expect(page.get_by_test_id("service-api-status")).to_have_text("ready")
    await expect(page.get_by_test_id("service-extractor-status")).to_have_text("down")
    await expect(page.get_by_test_id("store-neo4j-status")).to_have_text("up")
    await expect(page.get_by_test_id("postgres-artists")).to_have_text("0")
    await expect(page.get_by_test_id("neo4j-releases")).to_have_text("0")
    await expect(page.locator('[data-testid="queue-graphinator.artists"]')).to_have_count(1)
    await screenshot(page, "dashboard-01-idle")

    source = tmp_path / "source"
    source.mkdir()
    for data_type in ("artists", "labels", "masters", "releases"):
        name = f"discogs_{SAMPLE_VERSION}_{data_type}.xml.gz"
        (source / name).symlink_to(SAMPLES / name)
    processes.start(
        "extractor",
        service_env(HEALTH_PORT=str(extractor_port), DATA_DIR=str(tmp_path / "data")),
        None,
        "--source",
        str(source),
    )

    # The extractor comes up and the numbers move while records flow.
    await expect(page.get_by_test_id("service-extractor-status")).not_to_have_text("down", timeout=60_000)
    first = await wait_count(page, "postgres-releases", 1)
    await screenshot(page, "dashboard-02-ingesting")
    assert await wait_count(page, "extracted-releases", 1000) == 1000
    assert await wait_count(page, "postgres-artists", 1000) == 1000
    assert await wait_count(page, "postgres-releases", 1000) == 1000
    assert await wait_count(page, "neo4j-releases", 1000) >= 1000
    assert await wait_count(page, "neo4j-artists", 1000) >= 1000
    assert first <= 1000
    await expect(page.locator('[data-testid="pipeline-releases"]')).to_contain_text(
        re.compile("done|complete", re.I)
    )
    await screenshot(page, "dashboard-03-ingested")


async def test_dashboard_reconnects_after_a_restart(processes: Processes, page_factory: Any) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    first = processes.start("dashboard", dashboard_env(port, {}), f"{base}/ready")

    page, watch = await page_factory()
    # While the server is away the browser logs its failed reconnect attempts; that is the point here.
    watch.allowed += ["WebSocket connection to", "ERR_CONNECTION_REFUSED"]
    await page.goto(base + "/")
    state = page.get_by_test_id("ws-state")
    await expect(state).to_have_attribute("data-state", "connected")
    updated = page.get_by_test_id("updated")
    await expect(updated).to_have_attribute("data-seq", re.compile(r"^\d+$"))
    seq = int(await updated.get_attribute("data-seq") or 0)
    await expect(updated).not_to_have_attribute("data-seq", str(seq))  # pushed again without asking

    stop_process(first)
    await expect(state).to_have_attribute("data-state", "disconnected")
    await expect(state).to_contain_text("retrying")
    await screenshot(page, "dashboard-04-disconnected")

    processes.start("dashboard", dashboard_env(port, {}), f"{base}/ready")
    await expect(state).to_have_attribute("data-state", "connected", timeout=20_000)
    await expect(page.get_by_test_id("events")).to_contain_text("reconnected")
    await expect(page.get_by_test_id("store-postgres-status")).to_have_text("up")
