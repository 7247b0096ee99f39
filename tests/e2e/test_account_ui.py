"""Signed-in explore UI in Chromium: register and sign in, link Discogs through the out-of-band PIN
flow (the fake Discogs server stands in for discogs.com), sync (a real curator process), then see
the collection, wantlist, stats and the "in collection" marks on the graph; sign out."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from neo4j import AsyncDriver
from playwright.async_api import expect

from api.queries.user_queries import set_app_config
from common.crypto import SecretBox
from tests.conftest import free_port
from tests.e2e.conftest import (
    ARTIFACTS,
    SampleGraph,
    Server,
    api_env,
    screenshot,
    start_process,
    stop_process,
    wait_http,
)
from tests.fakes.discogs_api import FakeDiscogs
from tests.integration.discogs_support import ENCRYPTION_KEYS, CuratorProcess, purge_sync_queue

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

DISCOGS_USER = "vinyl_fan"


@pytest.fixture
async def fake_discogs() -> AsyncIterator[FakeDiscogs]:
    server = FakeDiscogs()
    await server.start(free_port())
    yield server
    await server.stop()


@pytest.fixture
def discogs_api(fake_discogs: FakeDiscogs, sample_graph: SampleGraph) -> Iterator[Server]:
    """A second api process wired to the fake Discogs (the session one talks to nobody)."""
    env = api_env(
        ENCRYPTION_KEYS=ENCRYPTION_KEYS,
        DISCOGS_API_URL=fake_discogs.base_url,
        DISCOGS_AUTHORIZE_URL=fake_discogs.authorize_url,
    )
    log = ARTIFACTS / "logs" / "api-discogs.log"
    process = start_process("api", env, log)
    base = f"http://127.0.0.1:{env['API_PORT']}"
    try:
        wait_http(f"{base}/ready", process, log)
        yield Server(base, process, log, env)
    finally:
        stop_process(process)


@pytest.fixture
async def curator(fake_discogs: FakeDiscogs, amqp_connection: Any) -> AsyncIterator[CuratorProcess]:
    await purge_sync_queue(amqp_connection)
    worker = CuratorProcess(fake_discogs)
    await worker.start()
    yield worker
    await worker.stop()


async def artist_releases(driver: AsyncDriver, artist_id: str) -> list[tuple[int, str]]:
    async with driver.session() as session:
        result = await session.run(
            "MATCH (a:Artist)<-[:BY]-(r:Release) WHERE toString(a.id) = $id "
            "RETURN r.id AS id, r.title AS title ORDER BY r.id LIMIT 3",
            id=artist_id,
        )
        return [(int(r["id"]), str(r["title"])) async for r in result]


async def test_sign_in_link_discogs_sync_and_see_the_collection(
    curator: CuratorProcess,
    discogs_api: Server,
    page_factory: Any,
    fake_discogs: FakeDiscogs,
    sample_graph: SampleGraph,
    neo4j_driver: AsyncDriver,
    pg_pool: Any,
) -> None:
    releases = await artist_releases(neo4j_driver, sample_graph.artist_id)
    assert len(releases) >= 2
    user = fake_discogs.add_user(DISCOGS_USER)
    for release_id, title in releases[:2]:
        user.add_collected(release_id, title, rating=4, artist=sample_graph.artist, year=1999)
    wanted_id, wanted_title = releases[-1] if len(releases) > 2 else releases[0]
    user.add_wanted(wanted_id, wanted_title, artist=sample_graph.artist)
    async with pg_pool.connection() as conn:
        box = SecretBox([ENCRYPTION_KEYS])
        await set_app_config(conn, box, "discogs_consumer_key", fake_discogs.consumer_key)
        await set_app_config(conn, box, "discogs_consumer_secret", fake_discogs.consumer_secret)

    page, _ = await page_factory()
    await page.goto(discogs_api.base + "/")

    # Register (then signed in automatically).
    email = f"e2e-{uuid.uuid4().hex[:8]}@example.com"
    await page.get_by_test_id("signin-open").click()
    await page.get_by_test_id("auth-switch").click()
    await page.get_by_test_id("auth-email").fill(email)
    await page.get_by_test_id("auth-password").fill("correct horse battery")
    await page.get_by_test_id("auth-submit").click()
    await expect(page.get_by_test_id("user-email")).to_have_text(email)
    await expect(page.get_by_test_id("auth-dialog")).to_be_hidden()

    # Link Discogs: authorize on "discogs.com" (the fake) in another tab, paste the code.
    await page.get_by_test_id("tab-me").click()
    await expect(page.get_by_test_id("discogs-status")).to_have_attribute("data-state", "unlinked")
    await page.get_by_test_id("discogs-connect").click()
    link = page.get_by_test_id("authorize-link")
    await expect(link).to_have_attribute("href", re.compile(r"oauth_token="))
    href = await link.get_attribute("href")
    discogs_tab = await page.context.new_page()
    await discogs_tab.goto(href or "")
    await discogs_tab.select_option("select[name=username]", DISCOGS_USER)
    await discogs_tab.click("#authorize")
    verifier = await discogs_tab.locator("#verifier").inner_text()
    await discogs_tab.close()
    await page.get_by_test_id("pin-input").fill(verifier)
    await page.get_by_test_id("pin-submit").click()
    await expect(page.get_by_test_id("discogs-status")).to_contain_text(
        f"Linked to Discogs as {DISCOGS_USER}"
    )
    await screenshot(page, "account-01-linked")

    # Sync, with live status, until it completes.
    await page.get_by_test_id("sync").click()
    status = page.get_by_test_id("sync-status")
    await expect(status).to_have_attribute("data-state", "completed", timeout=90_000)
    await expect(status).to_contain_text("Last sync completed")

    # My collection, wantlist and stats.
    table = page.get_by_test_id("collection-table")
    await expect(table).to_be_visible()
    for _, title in releases[:2]:
        await expect(table).to_contain_text(title)
    await screenshot(page, "account-02-collection")
    await page.get_by_test_id("view-wantlist").click()
    await expect(page.get_by_test_id("wantlist-table")).to_contain_text(wanted_title)
    await page.get_by_test_id("view-stats").click()
    await expect(page.get_by_test_id("stats-total")).to_contain_text("2 items")
    await page.get_by_test_id("view-recommendations").click()
    await expect(page.get_by_test_id("me-view")).to_have_attribute("data-state", "ready")

    # The graph marks the synced releases.
    await page.fill("#search-input", sample_graph.artist)
    await page.select_option("#search-type", "artist")
    await page.keyboard.press("Enter")
    await page.locator('g.node.k-category[data-key="cat:releases"]').click()
    collected = page.locator("g.node.k-child.in-collection")
    await expect(collected).to_have_count(2)
    await expect(page.locator("g.node.k-child.in-wantlist")).to_have_count(1)
    await collected.first.click()
    await expect(page.get_by_test_id("badge-collection")).to_be_visible()
    await screenshot(page, "account-03-marked-graph")

    # Sign out: the marks and the personal panel go away.
    await page.get_by_test_id("signout").click()
    await expect(page.get_by_test_id("signin-open")).to_be_visible()
    await expect(page.locator("g.node.k-child.in-collection")).to_have_count(0)
