"""Explore routes against the graph of the real Discogs samples, written by the pipeline's own
code (extractor parser -> graphinator writer; see sample_graph.py).

Every expected value below was read off the sample XML (samples/discogs_20200806_*.xml.gz and
the 2026 files), not off the graph: e.g. John Tejada (artist 62) is the main artist of releases
30, 66, 83, 84 and 98, each on a different label, lists 3 aliases and 10 groups; Svek (label 5)
carries 7 releases; 24 releases are tagged Blues.
The graph is loaded once for this module (about 4,000 records); no test here changes it.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from neo4j import AsyncDriver

from tests.integration.api.conftest import assert_envelope
from tests.integration.api.sample_graph import load_samples

pytestmark = pytest.mark.integration

TEJADA_GROUPS = [
    "2 Cities",
    "Bavaria (2)",
    "I'm Not A Gun",
    "John Tejada & Arian Leviste",
    "John Tejada & Justin Maxwell",
    "John Tejada & Titonton Duvanté",
    "Lis-10",
    "Palette All-Stars",
    "The Monitors (6)",
    "Wajatta",
]
TEJADA_ALIAS_AND_GROUP_IDS = [61, 9094, 9722, 17625, 31657, 66486, 94495, 110569, 198379, 1217962,
                              3686353, 4454175, 6427199]  # fmt: skip
BLUES_BY_YEAR = {1958: 1, 1961: 2, 1969: 1, 1972: 1, 1976: 2, 1983: 1, 1984: 1, 1989: 1, 1992: 2,
                 1996: 1, 2001: 1, 2006: 1, 2012: 1, 2013: 2, 2016: 2, 2018: 1, 2019: 1}  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
async def sample_graph(neo4j_driver: AsyncDriver) -> dict[str, int]:
    """The samples, loaded once for this module into an emptied database."""
    async with neo4j_driver.session() as session:
        await (
            await session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS")
        ).consume()
    return await load_samples(neo4j_driver)


async def get(client: httpx.AsyncClient, url: str, **params: Any) -> dict[str, Any]:
    resp = await client.get(url, params=params)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def counts(body: dict[str, Any]) -> dict[str, int]:
    return {c["category"]: c["count"] for c in body["categories"]}


async def test_every_sample_record_was_written(
    sample_graph: dict[str, int], neo4j_driver: AsyncDriver
) -> None:
    assert sample_graph["discogs_20200806_releases.xml.gz"] == 1000
    assert sample_graph["discogs_20260201_labels_first15.xml"] == 15
    assert sample_graph["discogs_20260201_masters.xml"] == 4
    async with neo4j_driver.session() as session:
        rows = await (
            await session.run(
                "MATCH (n) WHERE n.sha256 IS NOT NULL RETURN labels(n)[0] AS label, count(*) AS full"
            )
        ).data()
    # 1,000 of each 2020 file; the 15 + 4 current-layout records have ids of their own.
    assert {r["label"]: r["full"] for r in rows} == {
        "Artist": 1000,
        "Label": 1015,
        "Master": 1004,
        "Release": 1000,
    }


# --- autocomplete ----------------------------------------------------------------------------------


async def test_autocomplete_artist_and_label(client: httpx.AsyncClient) -> None:
    body = await get(client, "/api/autocomplete", q="persuader")
    assert body["results"][0]["id"] == "1"
    assert body["results"][0]["name"] == "The Persuader"
    body = await get(client, "/api/autocomplete", q="John Tej", limit=50)
    names = [r["name"] for r in body["results"]]
    assert names[0] == "John Tejada"  # the exact two-word match ranks above his duos
    assert body["results"][0]["id"] == "62"
    assert {"John Tejada & Arian Leviste", "John Tejada & Titonton Duvanté"} <= set(names)
    assert all("john" in n.lower() and "tej" in n.lower() for n in names)
    body = await get(client, "/api/autocomplete", q="svek", type="label")
    assert body["results"][0] == {"id": "5", "name": "Svek", "score": body["results"][0]["score"]}
    # A 2026 current-layout label is searchable too.
    body = await get(client, "/api/autocomplete", q="membran", type="label")
    assert [r["id"] for r in body["results"]][:1] == ["113400"]


async def test_autocomplete_genre_and_style(client: httpx.AsyncClient) -> None:
    body = await get(client, "/api/autocomplete", q="blu", type="genre")
    assert [r["name"] for r in body["results"]] == ["Blues"]
    assert body["results"][0]["id"] == "Blues"
    body = await get(client, "/api/autocomplete", q="deep hou", type="style")
    assert [r["name"] for r in body["results"]] == ["Deep House"]
    body = await get(client, "/api/autocomplete", q="zzqx", type="style")
    assert body["results"] == []


# --- explore ----------------------------------------------------------------------------------------


async def test_explore_artist_counts(client: httpx.AsyncClient) -> None:
    body = await get(client, "/api/explore", name="John Tejada", type="artist")
    assert body["center"] == {"id": "62", "name": "John Tejada", "type": "artist"}
    # 5 releases on 5 labels; 3 aliases + 10 groups (group 61 also lists him as a member: one edge).
    assert counts(body) == {"releases": 5, "labels": 5, "aliases": 13}
    body = await get(client, "/api/explore", name="The Persuader", type="artist")
    assert counts(body) == {"releases": 3, "labels": 1, "aliases": 7}


async def test_explore_label_genre_style_counts(client: httpx.AsyncClient) -> None:
    body = await get(client, "/api/explore", name="Svek", type="label")
    assert body["center"] == {"id": "5", "name": "Svek", "type": "label"}
    assert counts(body) == {"releases": 7, "artists": 5, "genres": 1}
    body = await get(client, "/api/explore", name="Blues", type="genre")
    assert body["center"] == {"id": "Blues", "name": "Blues", "type": "genre"}
    assert counts(body) == {"releases": 24, "artists": 21, "labels": 21, "styles": 24}
    body = await get(client, "/api/explore", name="Deep House", type="style")
    assert counts(body) == {"releases": 69, "artists": 54, "labels": 45, "genres": 1}
    resp = await client.get("/api/explore", params={"name": "john tejada"})  # exact, case-sensitive
    assert_envelope(resp, 404, "not_found")


# --- expand -----------------------------------------------------------------------------------------


async def test_expand_artist_releases_pages_by_year(client: httpx.AsyncClient) -> None:
    params = {"node_id": "John Tejada", "type": "artist", "category": "releases"}
    first = await get(client, "/api/expand", **params, limit=2, offset=0)
    assert first["total"] == 5 and first["has_more"] is True
    assert first["children"] == [
        {"id": "30", "name": "Song Forms & Freedom EP", "type": "release", "year": 2000},
        {"id": "98", "name": "Significant Numbers", "type": "release", "year": 2000},
    ]
    rest = await get(client, "/api/expand", **params, limit=10, offset=2)
    assert [(c["id"], c["year"]) for c in rest["children"]] == [("66", 1998), ("83", 1998), ("84", 1998)]
    assert rest["has_more"] is False


async def test_expand_artist_aliases_and_labels(client: httpx.AsyncClient) -> None:
    body = await get(
        client, "/api/expand", node_id="John Tejada", type="artist", category="aliases", limit=50
    )
    assert [c["id"] for c in body["children"]] == [str(i) for i in TEJADA_ALIAS_AND_GROUP_IDS]
    assert body["total"] == 13
    names = {c["name"] for c in body["children"]}
    assert set(TEJADA_GROUPS) | {"Autodidact", "Lucid Dream", "Mr. Hazeltine"} == names
    body = await get(client, "/api/expand", node_id="John Tejada", type="artist", category="labels")
    assert {c["name"] for c in body["children"]} == {
        "Mosaic",
        "A13",
        "Palette Recordings",
        "Residual Recordings",
        "7th City",
    }
    assert all(c["release_count"] == 1 and c["type"] == "label" for c in body["children"])


async def test_expand_label_artists_by_release_count(client: httpx.AsyncClient) -> None:
    body = await get(client, "/api/expand", node_id="Svek", type="label", category="artists")
    assert [(c["name"], c["release_count"]) for c in body["children"]] == [
        ("The Persuader", 3),
        ("Mr. James Barth & A.D.", 2),
        ("Conceiled Project", 1),
        ("Johannes Foufas", 1),
        ("Max Reich", 1),
    ]
    body = await get(client, "/api/expand", node_id="Svek", type="label", category="genres")
    assert body["children"] == [
        {"id": "Electronic", "name": "Electronic", "type": "genre", "release_count": 7}
    ]


async def test_expand_genre_styles_and_releases(client: httpx.AsyncClient) -> None:
    body = await get(client, "/api/expand", node_id="Blues", type="genre", category="styles", limit=4)
    assert [(c["name"], c["release_count"]) for c in body["children"]] == [
        ("Rhythm & Blues", 5),
        ("Blues Rock", 4),
        ("Rock & Roll", 4),
        ("Country Blues", 3),
    ]
    assert body["total"] == 24 and body["has_more"] is True
    body = await get(client, "/api/expand", node_id="Blues", type="genre", category="releases", limit=200)
    assert body["total"] == 24 and len(body["children"]) == 24
    years = [c["year"] for c in body["children"]]
    assert years[0] == 2019  # Chicken Skin Music
    assert years[-2:] == [None, None]  # the two releases without a release date come last
    body = await get(client, "/api/expand", node_id="Deep House", type="style", category="genres")
    assert body["children"] == [
        {"id": "Electronic", "name": "Electronic", "type": "genre", "release_count": 69}
    ]


# --- node -------------------------------------------------------------------------------------------


async def test_node_release_details(client: httpx.AsyncClient) -> None:
    body = await get(client, "/api/node/1", type="release")
    assert body == {
        "id": "1",
        "name": "Stockholm",
        "year": 1999,
        "country": "Sweden",
        "released": "1999-03-00",
        "formats": ['2 x Vinyl, 12", 33 ⅓ RPM'],
        "artists": ["The Persuader"],
        "labels": ["Svek"],
        "genres": ["Electronic"],
        "styles": ["Deep House"],
    }
    body = await get(client, "/api/node/Song Forms & Freedom EP", type="release")  # by title
    assert body["id"] == "30" and body["year"] == 2000 and body["country"] == "UK"
    assert body["formats"] == ['Vinyl, 12", EP']


async def test_node_artist_details(client: httpx.AsyncClient) -> None:
    body = await get(client, "/api/node/62", type="artist")
    assert body["name"] == "John Tejada"
    assert body["release_count"] == 5
    assert body["genres"] == ["Electronic"]
    assert body["styles"] == ["House", "Tech House", "Techno"]
    assert body["groups"] == TEJADA_GROUPS
    assert body["aliases"] == ["Autodidact", "Lucid Dream", "Mr. Hazeltine"]
    assert body["realname"] == "John Tejada"
    body = await get(client, "/api/node/The Persuader", type="artist")  # by name
    assert body["id"] == "1" and body["realname"] == "Jesper Dahlbäck" and body["release_count"] == 3


async def test_node_label_genre_style_details(client: httpx.AsyncClient) -> None:
    body = await get(client, "/api/node/5", type="label")
    assert body["name"] == "Svek" and body["release_count"] == 7
    assert body["parent_labels"] == ["Goldhead Music"]
    # The 2020 labels sample has emptied <sublabels> (samples/README caveat 2): the parent's
    # sublabels come from the children's <parentLabel>.
    body = await get(client, "/api/node/1068221", type="label")
    assert body["sublabels"] == [
        "Andy Kirk In Chronology",
        "Dizzy Gillespie In Chronology",
        "Mary Lou Williams In Chronology",
        "Sonny Stitt In Chronology",
    ]
    body = await get(client, "/api/node/Membran", type="label")  # a 2026 current-layout record
    assert body["id"] == "113400" and body["parent_labels"] == ["Membran Media GmbH"]
    body = await get(client, "/api/node/Blues", type="genre")
    assert body["artist_count"] == 21 and body["release_count"] == 24
    body = await get(client, "/api/node/Deep House", type="style")
    assert body["artist_count"] == 54 and body["release_count"] == 69
    resp = await client.get("/api/node/999999999", params={"type": "release"})
    assert_envelope(resp, 404, "not_found")


# --- trends -----------------------------------------------------------------------------------------


async def test_trends_series(client: httpx.AsyncClient) -> None:
    body = await get(client, "/api/trends", name="Blues", type="genre")
    assert body["name"] == "Blues" and body["type"] == "genre"
    assert {p["year"]: p["count"] for p in body["data"]} == BLUES_BY_YEAR
    assert [p["year"] for p in body["data"]] == sorted(BLUES_BY_YEAR)
    body = await get(client, "/api/trends", name="John Tejada", type="artist")
    assert body["data"] == [{"year": 1998, "count": 3}, {"year": 2000, "count": 2}]
    body = await get(client, "/api/trends", name="Svek", type="label")
    assert body["data"] == [{"year": 1998, "count": 6}, {"year": 1999, "count": 1}]
