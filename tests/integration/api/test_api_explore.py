"""Explore routes against the fixture graph in the real Neo4j (cache in the real Redis)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from neo4j import AsyncDriver

from api.queries.neo4j_queries import escape_lucene, lucene_prefix_query
from tests.integration.api.conftest import assert_envelope
from tests.integration.api.graph_fixture import APHEX_RELEASES

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
async def _graph(graph: AsyncDriver) -> AsyncDriver:
    return graph


async def get(client: httpx.AsyncClient, url: str, **params: Any) -> dict[str, Any]:
    resp = await client.get(url, params=params)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


# --- autocomplete ----------------------------------------------------------------------------------


def test_lucene_escaping_and_word_prefix_query() -> None:
    assert escape_lucene("AC+DC") == "AC\\+DC"
    assert escape_lucene("a b") == "a\\ b"
    assert escape_lucene("x:y") == "x\\:y"
    assert lucene_prefix_query("Warp  Rec") == "(warp OR warp*) AND (rec OR rec*)"
    # Operators and syntax never survive: words only, lowercased.
    assert lucene_prefix_query('name:"x" OR *') == "(name OR name*) AND (x OR x*) AND (or OR or*)"
    assert lucene_prefix_query("!!! ~~") is None


async def test_autocomplete_prefix_ranked_by_score_then_popularity(client: httpx.AsyncClient) -> None:
    body = await get(client, "/api/autocomplete", q="aph")
    names = [r["name"] for r in body["results"]]
    assert names == ["Aphex Twin", "Aphex Tribute Band"]  # equal score: more releases first
    assert all(set(r) == {"id", "name", "score"} and isinstance(r["score"], float) for r in body["results"])
    assert body["results"][0]["id"] == "1"


async def test_autocomplete_multi_word_and_exact_word_ranks_first(client: httpx.AsyncClient) -> None:
    body = await get(client, "/api/autocomplete", q="warp rec", type="label")
    assert [r["name"] for r in body["results"]] == ["Warp Records"]  # same-name labels de-duplicated
    assert body["results"][0]["id"] == "100"  # the more popular of the two namesakes
    body = await get(client, "/api/autocomplete", q="warp", type="label")
    assert [r["name"] for r in body["results"]][:1] == ["Warp Records"]
    assert {r["name"] for r in body["results"]} == {"Warp Records", "Warp Singles"}


@pytest.mark.parametrize(
    ("q", "expected"),
    [("AC/DC", "AC/DC"), ("ac+dc", "AC/DC"), ("sunn o)))", "Sunn O)))"), ('"Autechre"', "Autechre")],
)
async def test_autocomplete_special_characters_are_literal(
    client: httpx.AsyncClient, q: str, expected: str
) -> None:
    body = await get(client, "/api/autocomplete", q=q)
    assert [r["name"] for r in body["results"]][:1] == [expected]


@pytest.mark.parametrize(
    "q", ["*:*", "a OR b", "name:x AND", "\\\\x", "((((", "~~~~~~", "a^10", "[a TO z]", "../.."]
)
async def test_autocomplete_injection_attempts_are_harmless(client: httpx.AsyncClient, q: str) -> None:
    body = await get(client, "/api/autocomplete", q=q)
    assert isinstance(body["results"], list)
    assert len(body["results"]) <= 10


async def test_autocomplete_genre_and_style(client: httpx.AsyncClient) -> None:
    body = await get(client, "/api/autocomplete", q="ele", type="Genre")
    assert body["results"] == [
        {"id": "Electronic", "name": "Electronic", "score": body["results"][0]["score"]}
    ]
    body = await get(client, "/api/autocomplete", q="hard r", type="style")
    assert [r["name"] for r in body["results"]] == ["Hard Rock"]


async def test_autocomplete_bounds(client: httpx.AsyncClient) -> None:
    assert_envelope(await client.get("/api/autocomplete", params={"q": "a"}), 422, "validation_error")
    assert_envelope(await client.get("/api/autocomplete", params={"q": "a" * 201}), 422)
    assert_envelope(await client.get("/api/autocomplete"), 422)
    for limit in (0, 51, -1):
        assert_envelope(await client.get("/api/autocomplete", params={"q": "aph", "limit": limit}), 422)
    body = assert_envelope(await client.get("/api/autocomplete", params={"q": "aph", "type": "release"}), 400)
    assert body["code"] == "invalid_type" and "artist" in body["error"]
    body = await get(client, "/api/autocomplete", q="aph", limit=1)
    assert len(body["results"]) == 1


async def test_autocomplete_is_cached_in_redis_with_ttl(
    client: httpx.AsyncClient, redis_client: aioredis.Redis, neo4j_driver: AsyncDriver
) -> None:
    first = await get(client, "/api/autocomplete", q="Autech")
    keys = [k async for k in redis_client.scan_iter("cache:v1:autocomplete:*")]
    assert keys
    ttls = [await redis_client.ttl(k) for k in keys]
    assert all(0 < t <= 300 for t in ttls)
    # A cache hit does not read the graph: rename the node, the cached answer stays until expiry.
    async with neo4j_driver.session() as s:
        await (await s.run("MATCH (a:Artist {id: 10}) SET a.name = 'Autechre Renamed'")).consume()
    try:
        again = await get(client, "/api/autocomplete", q="  autech ")  # normalised to the same key
        assert again == first
    finally:
        async with neo4j_driver.session() as s:
            await (await s.run("MATCH (a:Artist {id: 10}) SET a.name = 'Autechre'")).consume()


async def test_autocomplete_inputs_with_the_same_words_share_one_cache_entry(
    client: httpx.AsyncClient, redis_client: aioredis.Redis
) -> None:
    async for key in redis_client.scan_iter("cache:v1:autocomplete:*"):
        await redis_client.delete(key)
    first = await get(client, "/api/autocomplete", q="Aphex (")
    assert [r["name"] for r in first["results"]][:1] == ["Aphex Twin"]
    for same in ("aphex", "  APHEX  ", "aphex)", "(aphex"):
        assert await get(client, "/api/autocomplete", q=same) == first
    assert len([k async for k in redis_client.scan_iter("cache:v1:autocomplete:*")]) == 1
    # No word left (only punctuation): nothing to search, nothing cached.
    assert (await get(client, "/api/autocomplete", q="((!"))["results"] == []
    assert len([k async for k in redis_client.scan_iter("cache:v1:autocomplete:*")]) == 1


# --- explore ---------------------------------------------------------------------------------------


async def test_explore_artist(client: httpx.AsyncClient) -> None:
    body = await get(client, "/api/explore", name="Aphex Twin", type="Artist")
    assert body["center"] == {"id": "1", "name": "Aphex Twin", "type": "artist"}
    cats = {c["category"]: c for c in body["categories"]}
    assert [c["category"] for c in body["categories"]] == ["releases", "labels", "aliases"]
    assert cats["releases"]["count"] == APHEX_RELEASES
    assert cats["labels"]["count"] == 2
    assert cats["aliases"] == {
        "id": "cat-aliases",
        "name": "Aliases & Members",
        "category": "aliases",
        "count": 2,
    }


async def test_explore_group_counts_members(client: httpx.AsyncClient) -> None:
    body = await get(client, "/api/explore", name="Autechre")
    assert {c["category"]: c["count"] for c in body["categories"]} == {
        "releases": 5,
        "labels": 1,
        "aliases": 2,
    }


@pytest.mark.parametrize(
    ("type_", "name", "counts"),
    [
        ("genre", "Electronic", {"releases": 18, "artists": 3, "labels": 3, "styles": 3}),
        ("label", "Warp Records", {"releases": 13, "artists": 2, "genres": 1}),
        ("style", "IDM", {"releases": 17, "artists": 2, "labels": 2, "genres": 1}),
    ],
)
async def test_explore_other_types(
    client: httpx.AsyncClient, type_: str, name: str, counts: dict[str, int]
) -> None:
    body = await get(client, "/api/explore", name=name, type=type_)
    assert body["center"]["type"] == type_ and body["center"]["name"] == name
    assert {c["category"]: c["count"] for c in body["categories"]} == counts


async def test_explore_by_id_picks_the_namesake(client: httpx.AsyncClient) -> None:
    body = await get(client, "/api/explore", type="label", id="101")
    assert body["center"] == {"id": "101", "name": "Warp Records", "type": "label"}
    assert {c["category"]: c["count"] for c in body["categories"]}["releases"] == 1


async def test_explore_errors(client: httpx.AsyncClient) -> None:
    body = assert_envelope(await client.get("/api/explore", params={"name": "Nobody"}), 404, "not_found")
    assert "Artist" in body["error"] and "Nobody" in body["error"]
    assert_envelope(await client.get("/api/explore", params={"name": ""}), 404)
    assert_envelope(
        await client.get("/api/explore", params={"name": "x", "type": "release"}), 400, "invalid_type"
    )
    assert_envelope(await client.get("/api/explore"), 422)
    assert_envelope(await client.get("/api/explore", params={"name": "x" * 513}), 422)
    assert_envelope(await client.get("/api/explore", params={"id": "abc"}), 400, "invalid_id")


# --- expand ----------------------------------------------------------------------------------------


async def test_expand_releases_paginates_newest_first_nulls_last(client: httpx.AsyncClient) -> None:
    seen: list[dict[str, Any]] = []
    offset = 0
    while True:
        body = await get(
            client,
            "/api/expand",
            node_id="Aphex Twin",
            type="artist",
            category="releases",
            limit=4,
            offset=offset,
        )
        assert body["total"] == APHEX_RELEASES and body["limit"] == 4 and body["offset"] == offset
        assert body["has_more"] == (offset + len(body["children"]) < APHEX_RELEASES)
        seen += body["children"]
        offset += 4
        if not body["has_more"]:
            break
    ids = [c["id"] for c in seen]
    assert len(ids) == len(set(ids)) == APHEX_RELEASES  # deterministic: no repeats, no gaps
    assert all(c["type"] == "release" and "year" in c for c in seen)
    own_years = [c["year"] for c in seen[:-2]]
    assert own_years == sorted(own_years, reverse=True)
    # 1011 (year 0) and 1012 (no year; 2001 from its master for display) sort last.
    assert ids[-2:] == ["1011", "1012"]
    assert seen[-2]["year"] is None and seen[-1]["year"] == 2001


async def test_expand_counted_categories(client: httpx.AsyncClient) -> None:
    body = await get(client, "/api/expand", node_id="Aphex Twin", type="artist", category="labels")
    assert body["children"] == [
        {"id": "100", "name": "Warp Records", "type": "label", "release_count": 9},
        {"id": "103", "name": "Rephlex", "type": "label", "release_count": 4},
    ]
    body = await get(client, "/api/expand", node_id="Electronic", type="genre", category="styles")
    assert [(c["id"], c["release_count"]) for c in body["children"]] == [
        ("IDM", 17),
        ("Ambient", 6),
        ("Techno", 6),
    ]
    body = await get(client, "/api/expand", node_id="Warp Records", type="label", category="genres")
    assert body["children"] == [
        {"id": "Electronic", "name": "Electronic", "type": "genre", "release_count": 13}
    ]


async def test_expand_aliases_and_name_ordered_artists(client: httpx.AsyncClient) -> None:
    body = await get(client, "/api/expand", node_id="Autechre", type="artist", category="aliases")
    assert [c["name"] for c in body["children"]] == ["Sean Booth", "Rob Brown"]  # by id
    assert body["total"] == 2 and body["has_more"] is False
    body = await get(client, "/api/expand", node_id="Electronic", type="genre", category="artists", limit=2)
    assert [c["name"] for c in body["children"]] == ["Aphex Twin", "Autechre"]
    assert body["has_more"] is True and body["total"] == 3
    assert all("release_count" not in c and "year" not in c for c in body["children"])


async def test_expand_unknown_parent_is_empty(client: httpx.AsyncClient) -> None:
    body = await get(client, "/api/expand", node_id="Nobody", type="artist", category="releases")
    assert body == {"children": [], "total": 0, "offset": 0, "limit": 50, "has_more": False}


async def test_expand_bounds(client: httpx.AsyncClient) -> None:
    base = {"node_id": "Aphex Twin", "type": "artist", "category": "releases"}
    for bad in ({"limit": 0}, {"limit": 201}, {"offset": -1}, {"offset": 10_001}):
        assert_envelope(await client.get("/api/expand", params={**base, **bad}), 422)
    body = assert_envelope(await client.get("/api/expand", params={**base, "category": "styles"}), 400)
    assert body["code"] == "invalid_category" and "Valid:" in body["error"] and "styles" in body["error"]
    assert_envelope(await client.get("/api/expand", params={**base, "type": "master"}), 400, "invalid_type")
    assert_envelope(await client.get("/api/expand", params={"type": "artist", "category": "releases"}), 422)


# --- node ------------------------------------------------------------------------------------------


async def test_node_artist_by_id_and_by_name(client: httpx.AsyncClient) -> None:
    by_id = await get(client, "/api/node/1")
    by_name = await get(client, "/api/node/Aphex Twin", type="artist")
    assert by_id == by_name
    assert by_id["name"] == "Aphex Twin" and by_id["release_count"] == APHEX_RELEASES
    assert by_id["genres"] == ["Electronic"] and by_id["styles"] == ["Ambient", "IDM", "Techno"]
    assert by_id["groups"] == [] and by_id["aliases"] == ["Richard D. James", "The Tuss"]
    member = await get(client, "/api/node/11")
    assert member["groups"] == ["Autechre"]


async def test_node_release_label_genre_style(client: httpx.AsyncClient) -> None:
    release = await get(client, "/api/node/1002", type="release")
    assert release["name"] == "Selected Ambient Works 85-92" and release["year"] == 1992
    assert isinstance(release["year"], int)
    assert release["artists"] == ["Aphex Twin"] and release["labels"] == ["Rephlex"]
    assert release["genres"] == ["Electronic"] and release["styles"] == ["Ambient", "IDM"]
    by_title = await get(client, "/api/node/Selected Ambient Works 85-92", type="release")
    assert by_title["id"] == "1002"
    no_year = await get(client, "/api/node/1011", type="release")
    assert no_year["year"] is None
    label = await get(client, "/api/node/100", type="label")
    assert (
        label["name"] == "Warp Records"
        and label["release_count"] == 13
        and label["sublabels"] == ["Warp Singles"]
    )
    genre = await get(client, "/api/node/Electronic", type="genre")
    assert genre == {"id": "Electronic", "name": "Electronic", "release_count": 18, "artist_count": 3}
    style = await get(client, "/api/node/Hard Rock", type="style")
    assert style["artist_count"] == 1


async def test_node_errors(client: httpx.AsyncClient) -> None:
    assert_envelope(await client.get("/api/node/999999"), 404, "not_found")
    assert_envelope(await client.get("/api/node/Nobody", params={"type": "genre"}), 404)
    assert_envelope(await client.get("/api/node/1", params={"type": "user"}), 400, "invalid_type")
    assert_envelope(await client.get("/api/node/" + "x" * 513), 422)


# --- trends ----------------------------------------------------------------------------------------


async def test_trends_yearly_series(client: httpx.AsyncClient) -> None:
    body = await get(client, "/api/trends", name="Aphex Twin")
    assert body["name"] == "Aphex Twin" and body["type"] == "artist"
    data = body["data"]
    assert [p["year"] for p in data] == sorted(p["year"] for p in data)
    assert {p["year"]: p["count"] for p in data}[1998] == 2  # own 1998 release + the Autechre one
    assert sum(p["count"] for p in data) == APHEX_RELEASES - 2  # two releases have no year
    label = await get(client, "/api/trends", name="Atlantic", type="label")
    assert label["data"] == [{"year": 1979, "count": 1}, {"year": 1980, "count": 1}]
    style = await get(client, "/api/trends", name="Hard Rock", type="style")
    assert len(style["data"]) == 2


async def test_trends_unknown_and_errors(client: httpx.AsyncClient) -> None:
    body = await get(client, "/api/trends", name="Nobody", type="genre")
    assert body == {"name": "Nobody", "type": "genre", "data": []}
    assert_envelope(await client.get("/api/trends", params={"name": "x", "type": "release"}), 400)
    assert_envelope(await client.get("/api/trends"), 422)
