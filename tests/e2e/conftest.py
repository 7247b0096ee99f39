"""Browser tests: Debian's Chromium driven by Playwright (never a downloaded browser), against the
real api / dashboard processes of this stack, with the sample dumps loaded into Neo4j by the real
parser and graph writer.

Every page fails its test on any console error or uncaught page error. Screenshots of the main
screens go to test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from neo4j import AsyncDriver
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

from common.messages import RecordMessage
from extractor.parser import iter_records
from graphinator.writer import await_fulltext_refresh, write_batch
from tests.conftest import REPO_ROOT, SAMPLES, free_port

ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
JWT_SECRET = "e2e-secret-key-that-is-long-enough-0123456789abcdef"
SAMPLE_VERSION = "20200806"


# ------------------------------------------------------------------------------------------- data


@dataclass
class SampleGraph:
    """Names picked from the loaded samples for the tests to search for."""

    artist: str
    artist_id: str
    release_count: int
    label_count: int
    genre: str = ""
    genre_release_count: int = 0
    counts: dict[str, int] = field(default_factory=dict)


async def load_samples(driver: AsyncDriver) -> dict[str, int]:
    """Parse the four sample dumps and write them with the graph writer (what graphinator does)."""
    counts: dict[str, int] = {}
    for data_type in ("artists", "labels", "masters", "releases"):
        path = SAMPLES / f"discogs_{SAMPLE_VERSION}_{data_type}.xml.gz"
        batch: list[RecordMessage] = []
        written = 0
        for parsed in iter_records(path, data_type):
            if parsed.error or parsed.record is None or parsed.id is None or parsed.sha256 is None:
                continue
            batch.append(
                RecordMessage(
                    type=data_type,
                    id=parsed.id,
                    sha256=parsed.sha256,
                    version=SAMPLE_VERSION,
                    record=parsed.record,
                )
            )
            if len(batch) >= 250:
                await write_batch(driver, data_type, batch)
                written += len(batch)
                batch = []
        if batch:
            await write_batch(driver, data_type, batch)
            written += len(batch)
        counts[data_type] = written
    await await_fulltext_refresh(driver)
    return counts


async def pick_artist(driver: AsyncDriver) -> SampleGraph:
    """The artist with the most releases that also has labels and dated releases (for trends)."""
    query = """
        MATCH (a:Artist)<-[:BY]-(r:Release)
        WHERE a.name IS NOT NULL AND NOT a.name IN ['Various', 'Unknown Artist']
        WITH a, count(DISTINCT r) AS releases
        ORDER BY releases DESC, a.id
        LIMIT 50
        MATCH (a)<-[:BY]-(r:Release)-[:ON]->(l:Label)
        WITH a, releases, count(DISTINCT l) AS labels
        WHERE labels > 0
        RETURN toString(a.id) AS id, a.name AS name, releases, labels
        ORDER BY releases DESC, labels DESC, id
        LIMIT 1
    """
    async with driver.session() as session:
        record = await (await session.run(query)).single()
    assert record is not None, "the samples produced no artist with releases on a label"
    return SampleGraph(
        artist=record["name"],
        artist_id=record["id"],
        release_count=record["releases"],
        label_count=record["labels"],
    )


@pytest.fixture(scope="session")
async def sample_graph(neo4j_driver: AsyncDriver) -> SampleGraph:
    async with neo4j_driver.session() as session:
        await (
            await session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS")
        ).consume()
    counts = await load_samples(neo4j_driver)
    graph = await pick_artist(neo4j_driver)
    graph.counts = counts
    async with neo4j_driver.session() as session:
        record = await (
            await session.run(
                "MATCH (g:Genre)<-[:IS]-(r:Release) WITH g, count(DISTINCT r) AS n "
                "RETURN g.name AS name, n ORDER BY n DESC, name LIMIT 1"
            )
        ).single()
    assert record is not None and record["n"] > 30, "the samples need a genre with more than one page"
    graph.genre, graph.genre_release_count = record["name"], record["n"]
    return graph


# ---------------------------------------------------------------------------------------- servers


@dataclass
class Server:
    base: str
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]


def start_process(module: str, env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        return subprocess.Popen(  # our own module, no shell
            [sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT
        )


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path, attempts: int = 300) -> None:
    for _ in range(attempts):
        if process.poll() is not None:
            raise AssertionError(f"{url}: process exited\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered 200\n{log.read_text()[-4000:]}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def api_env(**extra: str) -> dict[str, str]:
    port, health = free_port(), free_port()
    return {
        **os.environ,
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "HEALTH_PORT": str(health),
        "JWT_SECRET_KEY": JWT_SECRET,
        "LOGIN_RATE_LIMIT": "100000",
        "REGISTER_RATE_LIMIT": "100000",
        "SNAPSHOT_RATE_LIMIT": "100000",
        "CONNECT_ATTEMPTS": "3",
        "LOG_FORMAT": "json",
        **extra,
    }


@pytest.fixture(scope="session")
def api_server(sample_graph: SampleGraph) -> Iterator[Server]:
    env = api_env()
    log = ARTIFACTS / "logs" / "api.log"
    process = start_process("api", env, log)
    base = f"http://127.0.0.1:{env['API_PORT']}"
    try:
        wait_http(f"{base}/ready", process, log)
        yield Server(base, process, log, env)
    finally:
        stop_process(process)


# ---------------------------------------------------------------------------------------- browser


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        await instance.close()


class ConsoleWatch:
    """Collects console errors and uncaught exceptions of a page; the test fails on any."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.allowed: list[str] = []

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not any(a in message.text for a in self.allowed):
            self.errors.append(f"console.error: {message.text} @ {message.location}")

    def on_page_error(self, error: Any) -> None:
        self.errors.append(f"page error: {error}")


@pytest.fixture
async def page_factory(browser: Browser) -> AsyncIterator[Any]:
    """new_page(width, height) -> (page, watch); every page is checked for console errors."""
    contexts = []
    watches: list[ConsoleWatch] = []

    async def new_page(width: int = 1366, height: int = 860, **options: Any) -> tuple[Page, ConsoleWatch]:
        context = await browser.new_context(viewport={"width": width, "height": height}, **options)
        contexts.append(context)
        page = await context.new_page()
        watch = ConsoleWatch()
        watches.append(watch)
        page.on("console", watch.on_console)
        page.on("pageerror", watch.on_page_error)
        page.set_default_timeout(15_000)
        return page, watch

    yield new_page
    for context in contexts:
        await context.close()
    errors = [e for w in watches for e in w.errors]
    assert not errors, "browser console errors:\n" + "\n".join(errors)


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=False)
    return path
