"""The explore web UI served by the api at `/`, in Chromium, against the samples loaded into Neo4j:
search -> graph -> expand -> detail -> trends; load more and keyboard use; share and restore a
snapshot; empty and error states; a phone-sized viewport."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.e2e.conftest import SampleGraph, Server, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def explore_via_search(page: Page, name: str, kind: str) -> None:
    await page.fill("#search-input", name[:4])
    option = page.locator(f'#suggestions li[data-type="{kind}"][data-name="{name}"]')
    if await option.count() == 0:  # the prefix matched many: type the whole name
        await page.fill("#search-input", name)
    await expect(option).to_be_visible()
    await option.click()
    await expect(page.locator(f'g.node.k-center[data-name="{name}"]')).to_have_count(1)
    await expect(page.locator("#graph-status")).to_be_hidden()


async def child_keys(page: Page) -> set[str]:
    keys: list[Any] = await page.locator("g.node.k-child").evaluate_all(
        "els => els.map(e => e.getAttribute('data-key'))"
    )
    return {str(k) for k in keys}


async def test_search_graph_expand_detail_trends(
    page_factory: Any, api_server: Server, sample_graph: SampleGraph
) -> None:
    page, _ = await page_factory()
    await page.goto(api_server.base + "/")
    await expect(page.locator("#graph-status")).to_contain_text("Search for an artist")

    await explore_via_search(page, sample_graph.artist, "artist")
    await screenshot(page, "explore-01-center")

    releases = page.locator('g.node.k-category[data-key="cat:releases"]')
    await expect(releases).to_have_attribute(
        "aria-label", re.compile(rf"^Releases, {sample_graph.release_count} items")
    )
    await expect(releases).to_have_attribute("aria-expanded", "false")
    await releases.click()
    await expect(releases).to_have_attribute("aria-expanded", "true")
    shown = min(30, sample_graph.release_count)
    await expect(page.locator('g.node.k-child[data-type="release"]')).to_have_count(shown)

    labels = page.locator('g.node.k-category[data-key="cat:labels"]')
    await labels.click()
    await expect(page.locator('g.node.k-child[data-type="label"]')).to_have_count(
        min(30, sample_graph.label_count)
    )
    await screenshot(page, "explore-02-expanded")

    # Detail panel for a release, with its Discogs link.
    release = page.locator('g.node.k-child[data-type="release"]').first
    release_id = await release.get_attribute("data-id")
    release_name = await release.get_attribute("data-name")
    await release.click()
    details = page.locator("#panel-details")
    await expect(details).to_have_attribute("data-state", "ready")
    await expect(page.get_by_test_id("detail-name")).to_have_text(release_name or "")
    await expect(page.get_by_test_id("discogs-link")).to_have_attribute(
        "href", f"https://www.discogs.com/release/{release_id}"
    )
    await expect(details.locator('[data-field="artists"]')).to_contain_text(sample_graph.artist)
    await screenshot(page, "explore-03-release-detail")

    # A label's details, then explore from it (re-centre).
    label = page.locator('g.node.k-child[data-type="label"]').first
    label_name = await label.get_attribute("data-name")
    await label.click()
    await expect(page.get_by_test_id("detail-name")).to_have_text(label_name or "")
    await expect(details.locator('[data-field="release_count"]')).to_have_text(re.compile(r"^\d+$"))
    await expect(page.get_by_test_id("discogs-link")).to_have_attribute(
        "href", re.compile(r"^https://www\.discogs\.com/label/\d+$")
    )

    # Trends for the centre artist.
    await page.locator("g.node.k-center").click()
    await expect(page.get_by_test_id("detail-name")).to_have_text(sample_graph.artist)
    await expect(details.locator('[data-field="release_count"]')).to_have_text(
        str(sample_graph.release_count)
    )
    await page.get_by_test_id("detail-trends").click()
    status = page.get_by_test_id("trends-status")
    await expect(status).to_have_attribute("data-state", re.compile("ready|empty"))
    if await status.get_attribute("data-state") == "ready":
        await expect(status).to_contain_text(re.compile(r"\d+ releases? from \d{4} to \d{4}"))
        await expect(page.get_by_test_id("trends-chart")).to_be_visible()
    await screenshot(page, "explore-04-trends")

    # Collapse hides the children again; re-expanding reuses what was loaded.
    await releases.click()
    await expect(releases).to_have_attribute("aria-expanded", "false")
    await expect(page.locator('g.node.k-child[data-type="release"]')).to_have_count(0)

    # Explore from the label: the label becomes the centre.
    await label.click()
    await page.get_by_test_id("detail-explore").click()
    await expect(page.locator(f'g.node.k-center[data-name="{label_name}"]')).to_have_count(1)
    await expect(page.locator('g.node.k-category[data-key="cat:artists"]')).to_have_count(1)


async def test_load_more_zoom_and_keyboard(
    page_factory: Any, api_server: Server, sample_graph: SampleGraph
) -> None:
    page, _ = await page_factory()
    await page.goto(api_server.base + "/")
    # Keyboard only: "/" focuses the search, pick the genre type, Enter explores.
    await page.keyboard.press("/")
    await expect(page.locator("#search-input")).to_be_focused()
    await page.select_option("#search-type", "genre")
    await page.locator("#search-input").focus()
    await page.keyboard.type(sample_graph.genre)
    await expect(page.locator(f'#suggestions li[data-name="{sample_graph.genre}"]')).to_be_visible()
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("Enter")
    center = page.locator(f'g.node.k-center[data-name="{sample_graph.genre}"]')
    await expect(center).to_have_count(1)
    await expect(center).to_be_focused()

    releases = page.locator('g.node.k-category[data-key="cat:releases"]')
    await releases.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator('g.node.k-child[data-type="release"]')).to_have_count(30)
    more = page.locator('g.node.k-more[data-key="more:releases"]')
    await expect(more).to_have_count(1)
    await more.focus()
    await page.keyboard.press("Enter")
    expected = min(60, sample_graph.genre_release_count)
    await expect(page.locator('g.node.k-child[data-type="release"]')).to_have_count(expected)
    if sample_graph.genre_release_count <= 60:
        await expect(more).to_have_count(0)
    await screenshot(page, "explore-05-load-more")

    # Zoom buttons change the transform of the zoom layer; drag moves a node.
    layer = page.locator("g.zoom-layer")
    before = await layer.get_attribute("transform")
    await page.click("#zoom-in")
    await expect(layer).not_to_have_attribute("transform", before or "")
    node = page.locator('g.node.k-child[data-type="release"]').first
    box = await node.bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    await page.mouse.down()
    await page.mouse.move(box["x"] + 120, box["y"] + 80, steps=8)
    await page.mouse.up()

    # Collapse all from the toolbar.
    await page.click("#collapse-all")
    await expect(page.locator("g.node.k-child")).to_have_count(0)


async def test_share_and_restore_a_snapshot(
    page_factory: Any, api_server: Server, sample_graph: SampleGraph
) -> None:
    page, _ = await page_factory()
    await page.goto(api_server.base + "/")
    await explore_via_search(page, sample_graph.artist, "artist")
    await page.locator('g.node.k-category[data-key="cat:releases"]').click()
    await page.locator('g.node.k-category[data-key="cat:labels"]').click()
    await expect(page.locator('g.node.k-child[data-type="label"]')).to_have_count(
        min(30, sample_graph.label_count)
    )
    original = await child_keys(page)
    assert original

    await page.get_by_test_id("share").click()
    link = page.get_by_test_id("share-link")
    await expect(link).to_have_value(re.compile(r"/\?snapshot=[A-Za-z0-9_-]+$"))
    url = await link.input_value()
    await screenshot(page, "share-01-dialog")
    await page.get_by_test_id("share-copy").click()
    await page.click("#share-close")

    other, _ = await page_factory()
    await other.goto(url)
    await expect(other.locator(f'g.node.k-center[data-name="{sample_graph.artist}"]')).to_have_count(1)
    await expect(other.locator("g.node.k-child")).to_have_count(len(original))
    assert await child_keys(other) == original
    await expect(other.locator('g.node.k-category[data-key="cat:releases"]')).to_have_attribute(
        "aria-expanded", "true"
    )
    await screenshot(other, "share-02-restored")

    # An unknown token says so instead of showing a broken graph.
    gone, watch = await page_factory()
    watch.allowed.append("404")
    await gone.goto(api_server.base + "/?snapshot=doesnotexist0000")
    await expect(gone.get_by_test_id("graph-status")).to_contain_text("expired or does not exist")


async def test_empty_result_and_phone_layout(
    page_factory: Any, api_server: Server, sample_graph: SampleGraph
) -> None:
    page, watch = await page_factory()
    watch.allowed.append("404")  # the api answers 404 for a name that does not exist
    await page.goto(api_server.base + "/")
    await page.select_option("#search-type", "artist")
    await page.fill("#search-input", "Nobody By This Name Zzyzx")
    await page.keyboard.press("Enter")
    await expect(page.get_by_test_id("graph-status")).to_contain_text("No artist named")
    await expect(page.get_by_test_id("share")).to_be_disabled()

    phone, _ = await page_factory(390, 844, is_mobile=True, has_touch=True)
    await phone.goto(api_server.base + "/")
    await explore_via_search(phone, sample_graph.artist, "artist")
    await phone.locator('g.node.k-category[data-key="cat:releases"]').tap()
    await expect(phone.locator('g.node.k-child[data-type="release"]').first).to_be_visible()
    width = await phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
    await expect(phone.locator("#panel-details")).to_be_visible()
    await screenshot(phone, "explore-06-phone")
