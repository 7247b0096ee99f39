"""graphinator.writer against the real Neo4j: the full model of design §5, idempotency, change
handling (stale relationships dropped) and the sweep of records missing from a newer dump."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from neo4j import AsyncDriver, AsyncManagedTransaction
from structlog.testing import capture_logs

from common.raw_messages import decode_message
from common.writes import GRAPH_MODEL, WriteResult
from graphinator.writer import (
    ConcurrentWriteError,
    format_strings,
    remove_stale,
    select_batch,
    write_batch,
    write_tx,
)
from tests.integration.consumer_support import (
    ARTIST_2,
    ARTIST_26,
    LABEL_107799,
    MASTER_2280259,
    RELEASE_1,
    RELEASE_2,
    V1,
    V2,
    changed,
    message,
    synthetic_release,
    unchanged,
)

pytestmark = pytest.mark.integration


async def q(driver: AsyncDriver, cypher: str, **params: Any) -> list[dict[str, Any]]:
    records, _, _ = await driver.execute_query(cypher, params)
    return [r.data() for r in records]


async def graph_snapshot(driver: AsyncDriver) -> tuple[list[Any], list[Any]]:
    """Every node and relationship with its properties, in a canonical order."""
    nodes = await q(driver, "MATCH (n) RETURN labels(n) AS l, properties(n) AS p")
    rels = await q(
        driver,
        "MATCH (a)-[r]->(b) RETURN labels(a)[0] AS a, coalesce(a.id, a.name) AS aid, type(r) AS t, "
        "properties(r) AS p, labels(b)[0] AS b, coalesce(b.id, b.name) AS bid",
    )
    return sorted(nodes, key=_canonical), sorted(rels, key=_canonical)


def _canonical(row: dict[str, Any]) -> str:
    """A sort key independent of the order Neo4j returns a node's properties in (it varies with
    how the node was written)."""
    return repr(sorted((k, sorted(v.items()) if isinstance(v, dict) else v) for k, v in row.items()))


def test_format_strings() -> None:
    assert format_strings(RELEASE_1["formats"]) == ['2 x Vinyl, 12", 33 ⅓ RPM']
    assert format_strings(
        [
            {"name": "CD", "qty": 1, "text": "Promo", "descriptions": ["Album"]},
            {"name": "File", "qty": None, "text": None, "descriptions": []},
        ]
    ) == ["CD, Album, Promo", "File"]


async def test_releases_land_with_exact_fields_and_relationships(clean_neo4j: AsyncDriver) -> None:
    driver = clean_neo4j
    result = await write_batch(
        driver, "releases", [message("releases", RELEASE_1), message("releases", RELEASE_2)]
    )
    assert (result.written, result.unchanged, result.rejected) == (2, 0, [])

    [r1] = await q(driver, "MATCH (r:Release {id: 1}) RETURN properties(r) AS p")
    assert isinstance(r1["p"].pop("links_hash"), int)  # what its relationships hash to
    assert r1["p"] == {
        "id": 1,
        "title": "Stockholm",
        "year": 1999,
        "released": "1999-03-00",
        "country": "Sweden",
        "formats": ['2 x Vinyl, 12", 33 ⅓ RPM'],
        "is_main_release": True,
        "sha256": message("releases", RELEASE_1).sha256,
        "dump_version": V1,
        "graph_model": GRAPH_MODEL,
    }
    assert isinstance(r1["p"]["year"], int)

    by = await q(
        driver,
        "MATCH (:Release {id: 1})-[:BY]->(a:Artist) RETURN a.id AS id, a.name AS name, a.sha256 AS sha",
    )
    assert by == [{"id": 1, "name": "The Persuader", "sha": None}]  # a stub with the credited name
    credited = await q(
        driver,
        "MATCH (a:Artist)-[c:CREDITED]->(:Release {id: 1}) RETURN a.id AS id, a.name AS name, c.role AS role",
    )
    assert credited == [{"id": 239, "name": "Jesper Dahlbäck", "role": "Music By [All Tracks By]"}]
    on = await q(
        driver,
        "MATCH (:Release {id: 2})-[o:ON]->(l:Label) RETURN l.id AS id, l.name AS name, o.catno AS catno "
        "ORDER BY catno",
    )
    assert on == [{"id": 5, "name": "Svek", "catno": "SK 026"}, {"id": 5, "name": "Svek", "catno": "SK026"}]
    roles = await q(
        driver,
        "MATCH (a:Artist)-[c:CREDITED]->(:Release {id: 2}) "
        "RETURN a.id AS id, c.role AS role ORDER BY id, role",
    )
    assert roles == [
        {"id": 26, "role": "Producer, Recorded By"},
        {"id": 26, "role": "Written-By"},
        {"id": 27, "role": "Producer, Recorded By"},
        {"id": 27, "role": "Written-By"},
    ]
    derived = await q(
        driver,
        "MATCH (r:Release)-[:DERIVED_FROM]->(m:Master) "
        "RETURN r.id AS r, m.id AS m, m.sha256 AS sha ORDER BY r",
    )
    assert derived == [{"r": 1, "m": 1660109, "sha": None}, {"r": 2, "m": 713738, "sha": None}]
    tags = await q(
        driver,
        "MATCH (:Release {id: 2})-[:IS]->(t) RETURN labels(t)[0] AS kind, t.name AS name ORDER BY kind, name",
    )
    assert tags == [
        {"kind": "Genre", "name": "Electronic"},
        {"kind": "Style", "name": "Broken Beat"},
        {"kind": "Style", "name": "Tech House"},
        {"kind": "Style", "name": "Techno"},
    ]
    part_of = await q(
        driver, "MATCH (s:Style)-[:PART_OF]->(g:Genre) RETURN s.name AS s, g.name AS g ORDER BY s"
    )
    assert part_of == [
        {"s": "Broken Beat", "g": "Electronic"},
        {"s": "Deep House", "g": "Electronic"},
        {"s": "Tech House", "g": "Electronic"},
        {"s": "Techno", "g": "Electronic"},
    ]
    counts = await q(driver, "MATCH (n) RETURN labels(n)[0] AS l, count(*) AS c ORDER BY l")
    assert counts == [
        {"l": "Artist", "c": 5},  # 1, 239 (release 1); 2, 26, 27 (release 2)
        {"l": "Genre", "c": 1},
        {"l": "Label", "c": 1},
        {"l": "Master", "c": 2},
        {"l": "Release", "c": 2},
        {"l": "Style", "c": 4},
    ]


async def test_artists_labels_masters_and_stub_filling(clean_neo4j: AsyncDriver) -> None:
    driver = clean_neo4j
    # The release first: artist 2 exists only as a stub named by the credit.
    await write_batch(driver, "releases", [message("releases", RELEASE_2)])
    [stub] = await q(driver, "MATCH (a:Artist {id: 2}) RETURN properties(a) AS p")
    assert stub["p"] == {"id": 2, "name": "Mr. James Barth & A.D."}

    result = await write_batch(
        driver, "artists", [message("artists", ARTIST_2), message("artists", ARTIST_26)]
    )
    assert result.written == 2
    [full] = await q(driver, "MATCH (a:Artist {id: 2}) RETURN properties(a) AS p")
    assert isinstance(full["p"].pop("links_hash"), int)
    assert full["p"] == {
        "id": 2,
        "name": "Mr. James Barth & A.D.",
        "realname": "Cari Lekebusch & Alexi Delano",
        "sha256": message("artists", ARTIST_2).sha256,
        "dump_version": V1,
        "graph_model": GRAPH_MODEL,
    }
    members = await q(
        driver,
        "MATCH (m:Artist)-[r:MEMBER_OF]->(g:Artist) RETURN m.id AS m, g.id AS g, m.name AS name, "
        "r.via_member AS vm, r.via_group AS vg ORDER BY m, g",
    )
    assert members == [
        {"m": 26, "g": 2, "name": "Alexi Delano", "vm": True, "vg": True},  # asserted by both records
        {"m": 26, "g": 254, "name": "Alexi Delano", "vm": True, "vg": None},
        {"m": 27, "g": 2, "name": "Cari Lekebusch", "vm": None, "vg": True},
    ]
    aliases = await q(
        driver, "MATCH (a:Artist)-[:ALIAS_OF]->(b) RETURN a.id AS a, b.id AS b, b.name AS n ORDER BY a, b"
    )
    assert aliases == [
        {"a": 2, "b": 2470, "n": "Puente Latino"},
        {"a": 2, "b": 19536, "n": "Yakari & Delano"},
        {"a": 26, "b": 50, "n": "ADNY"},
    ]
    # The release's credits still point at the (now full) artist node: one node per id.
    assert await q(driver, "MATCH (a:Artist {id: 26}) RETURN count(*) AS c") == [{"c": 1}]
    assert await q(driver, "MATCH (:Artist {id: 26})-[c:CREDITED]->() RETURN count(c) AS c") == [{"c": 2}]

    await write_batch(driver, "labels", [message("labels", LABEL_107799)])
    sub = await q(
        driver,
        "MATCH (c:Label)-[:SUBLABEL_OF]->(p:Label) RETURN c.id AS c, c.name AS cn, p.id AS p, p.name AS pn, "
        "p.sha256 AS psha",
    )
    assert sub == [
        {"c": 107799, "cn": "Novalis", "p": 278277, "pn": "AVC Audio Video Communications AG", "psha": None}
    ]

    await write_batch(driver, "masters", [message("masters", MASTER_2280259)])
    [master] = await q(driver, "MATCH (m:Master {id: 2280259}) RETURN properties(m) AS p")
    assert isinstance(master["p"].pop("links_hash"), int)
    assert master["p"] == {
        "id": 2280259,
        "title": "The Complete Bach Edition",
        "year": 2012,
        "main_release": 5355366,
        "sha256": message("masters", MASTER_2280259).sha256,
        "dump_version": V1,
        "graph_model": GRAPH_MODEL,
    }
    by = await q(
        driver, "MATCH (:Master {id: 2280259})-[b:BY]->(a) RETURN a.id AS id, a.name AS n, b.anv AS anv"
    )
    assert by == [{"id": 95537, "n": "Johann Sebastian Bach", "anv": "Bach"}]
    styles = await q(driver, "MATCH (:Master {id: 2280259})-[:IS]->(s:Style) RETURN s.name AS s ORDER BY s")
    assert [s["s"] for s in styles] == ["Baroque", "Cantata", "Mass"]


async def test_part_of_comes_only_from_records_with_one_genre(clean_neo4j: AsyncDriver) -> None:
    """Pipeline weakness 14: a record with two genres says nothing about which genre its styles
    belong to, so it links its genres and styles but makes no PART_OF."""
    two = changed(synthetic_release(1), genres=["Electronic", "Rock"], styles=["Breakbeat", "Punk"])
    one = changed(synthetic_release(2), genres=["Jazz"], styles=["Bop", "Hard Bop"])
    await write_batch(clean_neo4j, "releases", [message("releases", two), message("releases", one)])
    tags = await q(clean_neo4j, "MATCH (:Release {id: 1})-[:IS]->(t) RETURN t.name AS name ORDER BY name")
    assert [t["name"] for t in tags] == ["Breakbeat", "Electronic", "Punk", "Rock"]
    part_of = await q(
        clean_neo4j, "MATCH (s:Style)-[:PART_OF]->(g:Genre) RETURN s.name AS s, g.name AS g ORDER BY s"
    )
    assert part_of == [{"s": "Bop", "g": "Jazz"}, {"s": "Hard Bop", "g": "Jazz"}]


async def test_redelivered_batch_changes_nothing(clean_neo4j: AsyncDriver) -> None:
    driver = clean_neo4j
    batch = [message("releases", RELEASE_1), message("releases", RELEASE_2)]
    await write_batch(driver, "artists", [message("artists", ARTIST_2), message("artists", ARTIST_26)])
    await write_batch(driver, "releases", batch)
    before = await graph_snapshot(driver)
    again = await write_batch(driver, "releases", batch)
    assert (again.written, again.unchanged) == (0, 2)
    again = await write_batch(
        driver, "artists", [message("artists", ARTIST_26), message("artists", ARTIST_2)]
    )
    assert (again.written, again.unchanged) == (0, 2)
    assert await graph_snapshot(driver) == before
    # Duplicates inside one batch are written once.
    dup = await write_batch(driver, "releases", [*batch, *batch])
    assert dup.unchanged == 2
    assert await graph_snapshot(driver) == before


async def test_changed_record_updates_properties_and_drops_stale_relationships(
    clean_neo4j: AsyncDriver,
) -> None:
    driver = clean_neo4j
    await write_batch(driver, "releases", [message("releases", RELEASE_2)])
    await write_batch(driver, "artists", [message("artists", ARTIST_2), message("artists", ARTIST_26)])
    new_release = changed(
        RELEASE_2,
        title="Knockin' Boots Vol. 2",
        year=1999,
        labels=[{"id": 7, "name": "Other Label", "catno": "OL 1"}],
        extraartists=[RELEASE_2["extraartists"][0]],
        styles=["Techno"],
        master_id=None,
        is_main_release=None,
    )
    result = await write_batch(driver, "releases", [message("releases", new_release, V2)])
    assert result.written == 1
    [r] = await q(driver, "MATCH (r:Release {id: 2}) RETURN properties(r) AS p")
    assert r["p"]["title"] == "Knockin' Boots Vol. 2"
    assert r["p"]["year"] == 1999
    assert r["p"]["dump_version"] == V2
    assert "is_main_release" not in r["p"]
    out = await q(
        driver,
        "MATCH (:Release {id: 2})-[x]->(t) "
        "RETURN type(x) AS t, coalesce(t.id, t.name) AS dst, x.catno AS catno "
        "ORDER BY t, toString(dst)",
    )
    assert out == [
        {"t": "BY", "dst": 2, "catno": None},
        {"t": "IS", "dst": "Electronic", "catno": None},
        {"t": "IS", "dst": "Techno", "catno": None},
        {"t": "ON", "dst": 7, "catno": "OL 1"},
    ]
    credited = await q(driver, "MATCH (a)-[c:CREDITED]->(:Release {id: 2}) RETURN a.id AS a, c.role AS role")
    assert credited == [{"a": 26, "role": "Producer, Recorded By"}]

    # Artist 26 leaves group 2 in its own record; group 2 still lists it, so the edge stays.
    await write_batch(driver, "artists", [message("artists", changed(ARTIST_26, groups=[], aliases=[]), V2)])
    members = await q(
        driver,
        "MATCH (m)-[r:MEMBER_OF]->(g) RETURN m.id AS m, g.id AS g, r.via_member AS vm, r.via_group AS vg "
        "ORDER BY m, g",
    )
    assert members == [
        {"m": 26, "g": 2, "vm": None, "vg": True},
        {"m": 27, "g": 2, "vm": None, "vg": True},
    ]
    # Now the group drops member 26 too: the edge disappears; 27 stays.
    await write_batch(
        driver, "artists", [message("artists", changed(ARTIST_2, members=[ARTIST_2["members"][1]]), V2)]
    )
    members = await q(driver, "MATCH (m)-[:MEMBER_OF]->(g) RETURN m.id AS m, g.id AS g ORDER BY m")
    assert members == [{"m": 27, "g": 2}]
    assert await q(driver, "MATCH (:Artist {id: 26})-[:ALIAS_OF]->() RETURN count(*) AS c") == [{"c": 0}]


async def test_a_changed_record_with_the_same_relationships_keeps_its_edges(clean_neo4j: AsyncDriver) -> None:
    """Most edits touch a title, notes or a tracklist, not the credits: such a record only gets its
    properties set, its edges stay as they are (their element ids too), and the graph equals a
    fresh write of the new version. A node without `links_hash` (written before it existed) is
    rebuilt and gets one."""
    driver = clean_neo4j
    first = [RELEASE_1, RELEASE_2, synthetic_release(3)]
    await write_batch(driver, "releases", [message("releases", r) for r in first])
    edges = "MATCH (r:Release)-[x]-() RETURN r.id AS r, elementId(x) AS e ORDER BY r, e"
    before = await q(driver, edges)
    await q(driver, "MATCH (r:Release {id: 3}) REMOVE r.links_hash")
    one_track = [{**RELEASE_2["tracklist"][0], "duration": "9:99"}]
    second = [
        message("releases", changed(RELEASE_1, title="Stockholm (Remastered)", notes="Remastered."), V2),
        message("releases", changed(RELEASE_2, year=2000, tracklist=one_track), V2),
        message("releases", changed(synthetic_release(3), title="Retitled"), V2),
    ]
    result = await write_batch(driver, "releases", second)
    assert (result.written, result.unchanged) == (3, 0)

    after = await q(driver, edges)
    assert [e for e in after if e["r"] != 3] == [e for e in before if e["r"] != 3]
    assert len([e for e in after if e["r"] == 3]) == len([e for e in before if e["r"] == 3]) > 0
    props = await q(driver, "MATCH (r:Release) RETURN r.id AS id, r.title AS t, r.year AS y ORDER BY id")
    assert props == [
        {"id": 1, "t": "Stockholm (Remastered)", "y": 1999},
        {"id": 2, "t": RELEASE_2["title"], "y": 2000},
        {"id": 3, "t": "Retitled", "y": synthetic_release(3)["year"]},
    ]
    updated = await graph_snapshot(driver)
    await q(driver, "MATCH (n) DETACH DELETE n")
    await write_batch(driver, "releases", second)
    assert await graph_snapshot(driver) == updated


async def test_a_record_written_by_an_older_graph_model_is_rewritten_though_unchanged(
    clean_neo4j: AsyncDriver,
) -> None:
    """The sha256 covers the record, not what graphinator makes of it: after a change of the
    mapping (GRAPH_MODEL raised), the same record must not be skipped as unchanged, or the graph
    would keep the old mapping's properties and edges for ever."""
    driver = clean_neo4j
    batch = [message("releases", RELEASE_1), message("releases", RELEASE_2)]
    await write_batch(driver, "releases", batch)
    fresh = await graph_snapshot(driver)
    # What an older mapping left: release 1 without `formats` and with an edge the current one
    # does not make; release 2 written before nodes carried a graph_model at all.
    await q(
        driver,
        "MATCH (r:Release {id: 1}) SET r.graph_model = $old REMOVE r.formats "
        "MERGE (g:Genre {name: 'Old mapping'}) CREATE (r)-[:IS]->(g)",
        old=GRAPH_MODEL - 1,
    )
    await q(driver, "MATCH (r:Release {id: 2}) REMOVE r.graph_model")

    result = await write_batch(driver, "releases", batch)
    assert (result.written, result.unchanged) == (2, 0)
    await q(driver, "MATCH (g:Genre {name: 'Old mapping'}) DELETE g")  # taxonomy is never swept
    assert await graph_snapshot(driver) == fresh
    again = await write_batch(driver, "releases", batch)
    assert (again.written, again.unchanged) == (0, 2)


@pytest.mark.parametrize("form", ["decoded", "raw JSON"])
async def test_unchanged_items_bump_what_the_graph_holds_and_reject_what_it_does_not(
    clean_neo4j: AsyncDriver, form: str
) -> None:
    """Unchanged items (no record) are never written: a node of that sha256 gets the new dump
    version (so the sweep keeps it), also when an older GRAPH_MODEL wrote it (not rejected, or every
    record would be dead-lettered after a mapping change: a warning asks for --reprocess); a node of
    another sha256 is kept too but the item is rejected, as is one for a record the graph lacks."""
    driver = clean_neo4j
    r1, r2, r3, r4, r5 = (
        message("releases", r) for r in (RELEASE_1, RELEASE_2, *map(synthetic_release, (3, 4, 5)))
    )
    await write_batch(driver, "releases", [r1, r2, r3, r4, r5])
    # Release 4 as an older mapping left it (as in the graph-model test above); 98 a curator stub.
    await q(
        driver,
        "MATCH (r:Release {id: 4}) SET r.graph_model = $old REMOVE r.formats",
        old=GRAPH_MODEL - 1,
    )
    await q(driver, "CREATE (:Release {id: 98, title: 'From the API', stub: true})")
    before = await graph_snapshot(driver)

    r3_changed = message("releases", changed(synthetic_release(3), title="Retitled"), V2)
    batch: list[Any] = [
        unchanged(message("releases", RELEASE_1, V2)),  # the sha256 the graph holds
        unchanged(message("releases", changed(RELEASE_2, title="Missed"), V2)),  # another sha256
        unchanged(message("releases", changed(RELEASE_1, id=98), V2)),  # only a stub
        unchanged(message("releases", changed(RELEASE_1, id=99), V2)),  # no node at all
        r3_changed,
        unchanged(message("releases", synthetic_release(4), V2)),  # an older GRAPH_MODEL wrote it
    ]
    if form == "raw JSON":
        batch = [decode_message(m.to_bytes()) for m in batch]
        assert all(type(m).__name__ == "RawRecord" for m in batch)
    with capture_logs() as logs:
        result = await write_batch(driver, "releases", batch)

    assert (result.written, result.unchanged, result.outdated, result.stale) == (1, 1, 1, 0)
    assert result.processed == 3
    reasons = {m.id: why for m, why in result.rejected}
    assert sorted(reasons) == [2, 98, 99]
    assert all(m.unchanged for m, _ in result.rejected)
    assert f"but the graph holds sha256 {r2.sha256[:12]}" in reasons[2]
    assert "the graph does not hold the record" in reasons[98]
    assert "the graph does not hold the record" in reasons[99]
    assert all("run the extractor with --reprocess" in why for why in reasons.values())
    [warning] = [e for e in logs if e["event"] == "unchanged_records_of_an_older_graph_model"]
    assert warning["log_level"] == "warning" and warning["count"] == 1
    assert "--reprocess" in warning["advice"]

    versions = await q(driver, "MATCH (r:Release) RETURN r.id AS id, r.dump_version AS v ORDER BY id")
    assert versions == [
        {"id": 1, "v": V2},
        {"id": 2, "v": V2},
        {"id": 3, "v": V2},
        {"id": 4, "v": V2},
        {"id": 5, "v": V1},  # not in this batch
        {"id": 98, "v": None},  # the stub is left as it was, no node 99 was created
    ]
    [r3_node] = await q(driver, "MATCH (r:Release {id: 3}) RETURN r.title AS t, r.sha256 AS sha")
    assert r3_node == {"t": "Retitled", "sha": r3_changed.sha256}  # the changed record is rewritten
    # Apart from dump_version (and release 3's new title and hash), nothing changed: release 4 in
    # particular still lacks `formats` and keeps its old graph_model (not rewritten).
    assert _without_versions(await graph_snapshot(driver), retitled=3) == _without_versions(
        before, retitled=3
    )

    # An unchanged item older than the node is stale, not rejected, whatever its sha256.
    for old in (RELEASE_2, changed(RELEASE_2, title="Old")):
        late = await write_batch(driver, "releases", [unchanged(message("releases", old, V1))])
        assert (late.stale, late.rejected) == (1, [])
    assert await q(driver, "MATCH (r:Release {id: 2}) RETURN r.dump_version AS v") == [{"v": V2}]
    # The sweep of V2 keeps every bumped node (the mismatched release 2 and the outdated 4 too).
    assert await remove_stale(driver, "releases", V2) == 1
    remaining = await q(driver, "MATCH (r:Release) RETURN r.id AS id, r.sha256 AS sha ORDER BY id")
    assert [r["id"] for r in remaining] == [1, 2, 3, 4, 98]
    assert remaining[1]["sha"] == r2.sha256


def _without_versions(snapshot: tuple[list[Any], list[Any]], retitled: int) -> tuple[list[Any], list[Any]]:
    """`snapshot` without the nodes' dump_version, nor the title and sha256 of release `retitled`."""
    nodes = []
    for node in snapshot[0]:
        props = {k: v for k, v in node["p"].items() if k != "dump_version"}
        if node["l"] == ["Release"] and props["id"] == retitled:
            props = {k: v for k, v in props.items() if k not in ("title", "sha256")}
        nodes.append({"l": node["l"], "p": props})
    return sorted(nodes, key=_canonical), snapshot[1]


async def test_older_version_is_ignored_and_unchanged_records_get_the_new_version(
    clean_neo4j: AsyncDriver,
) -> None:
    driver = clean_neo4j
    await write_batch(driver, "releases", [message("releases", RELEASE_1, V2)])
    old = await write_batch(driver, "releases", [message("releases", changed(RELEASE_1, title="Old"), V1)])
    assert old.stale == 1
    assert await q(driver, "MATCH (r:Release {id: 1}) RETURN r.title AS t") == [{"t": "Stockholm"}]

    await write_batch(driver, "releases", [message("releases", RELEASE_2, V1)])
    bumped = await write_batch(driver, "releases", [message("releases", RELEASE_2, V2)])
    assert (bumped.written, bumped.unchanged) == (0, 1)
    assert await q(driver, "MATCH (r:Release {id: 2}) RETURN r.dump_version AS v") == [{"v": V2}]


async def test_remove_stale_deletes_records_absent_from_the_newer_dump(clean_neo4j: AsyncDriver) -> None:
    driver = clean_neo4j
    await write_batch(driver, "artists", [message("artists", ARTIST_2), message("artists", ARTIST_26)])
    await write_batch(driver, "releases", [message("releases", RELEASE_1), message("releases", RELEASE_2)])
    # The newer dump has release 2 (unchanged) and artist 26, not release 1 nor artist 2.
    await write_batch(driver, "releases", [message("releases", RELEASE_2, V2)])
    await write_batch(driver, "artists", [message("artists", ARTIST_26, V2)])

    assert await remove_stale(driver, "releases", V2) == 1
    assert await q(driver, "MATCH (r:Release) RETURN r.id AS id") == [{"id": 2}]
    # Release 1's own stubs (artists 1 and 239, master 1660109) went with it; shared ones stay.
    assert await q(driver, "MATCH (a:Artist) WHERE a.id IN [1, 239] RETURN a.id AS id") == []
    assert await q(driver, "MATCH (m:Master) RETURN m.id AS id") == [{"id": 713738}]

    assert await remove_stale(driver, "artists", V2) == 1
    # Artist 2 is absent from V2 but release 2 still credits it: it stays as a stub with its name.
    [a2] = await q(driver, "MATCH (a:Artist {id: 2}) RETURN properties(a) AS p")
    assert a2["p"] == {"id": 2, "name": "Mr. James Barth & A.D."}
    assert await q(driver, "MATCH (:Release {id: 2})-[:BY]->(a) RETURN a.id AS id") == [{"id": 2}]
    # Its own relationships went: no aliases, and MEMBER_OF 27->2 (asserted only by artist 2) is gone.
    assert await q(driver, "MATCH (:Artist {id: 2})-[:ALIAS_OF]->() RETURN count(*) AS c") == [{"c": 0}]
    members = await q(driver, "MATCH (m)-[r:MEMBER_OF]->(g) RETURN m.id AS m, g.id AS g ORDER BY m, g")
    assert members == [{"m": 26, "g": 2}, {"m": 26, "g": 254}]
    # Sweeping again is harmless.
    assert await remove_stale(driver, "artists", V2) == 0
    assert await q(driver, "MATCH (a:Artist {id: 26}) RETURN a.dump_version AS v") == [{"v": V2}]


@pytest.mark.parametrize("form", ["decoded", "raw JSON"])
async def test_bad_record_shape_is_rejected_alone(clean_neo4j: AsyncDriver, form: str) -> None:
    """Also in the form the consumer hands over (records as raw JSON, decoded only when written)."""
    bad = changed(RELEASE_1, id=99, artists={"not": "a list"})
    messages: list[Any] = [message("releases", RELEASE_2), message("releases", bad)]
    if form == "raw JSON":
        messages = [decode_message(m.to_bytes()) for m in messages]
        assert all(type(m).__name__ == "RawRecord" for m in messages)
    result = await write_batch(clean_neo4j, "releases", messages)
    assert result.written == 1
    assert [(m.id, "artists must be a list" in why) for m, why in result.rejected] == [(99, True)]
    assert await q(clean_neo4j, "MATCH (r:Release) RETURN r.id AS id") == [{"id": 2}]
    # The same records again: the written one is unchanged (never decoded), the bad one still bad.
    again = await write_batch(clean_neo4j, "releases", messages)
    assert (again.written, again.unchanged, len(again.rejected)) == (0, 1, 1)


async def test_a_batch_split_into_parallel_parts_writes_the_same_graph(clean_neo4j: AsyncDriver) -> None:
    """Parts written concurrently (each mapped when its turn comes) share stubs, collect every
    part's rejections and leave exactly the graph one transaction leaves."""
    driver = clean_neo4j
    records = [synthetic_release(i) for i in range(1, 301)]
    for bad_id in (7, 150, 299):  # one bad shape in each part
        records[bad_id - 1] = changed(records[bad_id - 1], artists={"not": "a list"})
    messages = [message("releases", r) for r in records]
    serial = await write_batch(driver, "releases", messages, parallel=1)
    expected = await graph_snapshot(driver)
    await q(driver, "MATCH (n) DETACH DELETE n")
    result = await write_batch(driver, "releases", messages, parallel=3)
    assert (result.written, result.unchanged) == (serial.written, serial.unchanged) == (297, 0)
    assert sorted(m.id for m, _ in result.rejected) == [7, 150, 299]
    assert await graph_snapshot(driver) == expected
    again = await write_batch(driver, "releases", messages, parallel=3)
    assert (again.written, again.unchanged, len(again.rejected)) == (0, 297, 3)


async def test_a_deadlock_the_driver_retries_is_counted_and_the_graph_is_complete(
    clean_neo4j: AsyncDriver,
) -> None:
    """Two parts of one batch whose artists alias each other's: each transaction creates its own
    nodes, then waits for the other's, so Neo4j aborts one (a deadlock) and the driver re-runs it
    inside execute_write. write_batch counts that retry; nothing is lost or doubled."""
    driver = clean_neo4j
    retries = 0
    rounds = 0
    while retries == 0 and rounds < 10:  # a round deadlocks unless one part ends before the other starts
        base = rounds * 10_000
        half = 500
        artists = [
            {
                "id": base + i,
                "name": f"A{base + i}",
                "aliases": [{"id": base + (i + half if i <= half else i - half)}],
            }
            for i in range(1, 2 * half + 1)
        ]
        result = await write_batch(driver, "artists", [message("artists", a) for a in artists], parallel=2)
        assert (result.written, result.unchanged, result.rejected) == (2 * half, 0, [])
        retries += result.retries
        rounds += 1
    assert retries >= 1, f"no deadlock in {rounds} rounds of crossing parts"
    [row] = await q(
        driver,
        "MATCH (a:Artist) RETURN count(a) AS nodes, count{ (:Artist)-[:ALIAS_OF]->(:Artist) } AS aliases, "
        "count{ MATCH (a:Artist) WHERE a.sha256 IS NULL RETURN a } AS stubs",
    )
    assert row == {"nodes": 1000 * rounds, "aliases": 1000 * rounds, "stubs": 0}


async def test_full_record_clears_the_curator_stub_flag(clean_neo4j: AsyncDriver) -> None:
    driver = clean_neo4j
    release, artist = message("releases", RELEASE_1), message("artists", ARTIST_2)
    await q(driver, "CREATE (:Release {id: $r, title: 'API title', stub: true})", r=release.id)
    await q(driver, "CREATE (:Artist {id: $a, name: 'API name', stub: true})", a=artist.id)
    await write_batch(driver, "releases", [release])
    await write_batch(driver, "artists", [artist])
    [r] = await q(driver, "MATCH (r:Release {id: $id}) RETURN properties(r) AS p", id=release.id)
    [a] = await q(driver, "MATCH (a:Artist {id: $id}) RETURN properties(a) AS p", id=artist.id)
    assert "stub" not in r["p"] and r["p"]["sha256"] == release.sha256
    assert "stub" not in a["p"] and a["p"]["sha256"] == artist.sha256


async def hold_open_write(
    driver: AsyncDriver, messages: list[Any]
) -> tuple[asyncio.Task[WriteResult], asyncio.Event]:
    """Write `messages` in a transaction that stays open (holding its locks) until the returned
    event is set; the task gives its WriteResult after the commit."""
    batch, _ = select_batch("releases", messages)
    wrote, commit = asyncio.Event(), asyncio.Event()

    async def work(tx: AsyncManagedTransaction) -> WriteResult:
        result = await write_tx(tx, batch)
        wrote.set()
        await commit.wait()
        return result

    async def run() -> WriteResult:
        async with driver.session() as session:
            return await session.execute_write(work)

    task = asyncio.create_task(run())
    await asyncio.wait_for(wrote.wait(), 30)
    return task, commit


async def test_a_second_writer_of_the_same_records_waits_and_finds_them_unchanged(
    clean_neo4j: AsyncDriver,
) -> None:
    """Two transactions with the same new records (a second batch in flight, another replica): the
    second waits for the first one's commit, then finds them written and creates nothing again; a
    different version written meanwhile makes it fail as transient, and its retry lands it."""
    driver = clean_neo4j
    v1 = [message("releases", synthetic_release(i, tracks=2)) for i in range(1, 21)]
    v2 = [
        message("releases", changed(synthetic_release(i, tracks=3), title=f"New {i}"), V2)
        for i in range(1, 21)
    ]
    await write_batch(driver, "releases", v1)
    expected_v1 = await graph_snapshot(driver)
    await q(driver, "MATCH (n) DETACH DELETE n")
    await write_batch(driver, "releases", v2)
    expected_v2 = await graph_snapshot(driver)

    await q(driver, "MATCH (n) DETACH DELETE n")
    first, commit = await hold_open_write(driver, v1)
    second = asyncio.create_task(write_batch(driver, "releases", v1))
    await asyncio.sleep(1.0)
    assert not second.done()  # waiting for the first writer's commit
    commit.set()
    assert (await first).written == 20
    result = await second
    assert (result.written, result.unchanged) == (0, 20)
    assert await graph_snapshot(driver) == expected_v1

    await q(driver, "MATCH (n) DETACH DELETE n")
    first, commit = await hold_open_write(driver, v1)
    newer = asyncio.create_task(write_batch(driver, "releases", v2))
    await asyncio.sleep(1.0)
    commit.set()
    await first
    with pytest.raises(ConcurrentWriteError):
        await newer
    retried = await write_batch(driver, "releases", v2)
    assert retried.written == 20
    assert await graph_snapshot(driver) == expected_v2


async def test_a_written_batch_leaves_its_rows_to_reference_counting(clean_neo4j: AsyncDriver) -> None:
    """The driver keeps a query's parameters on a result object that sits in a reference cycle;
    graphinator runs with the cyclic collector off (collecting on a timer), so a batch's row lists
    must be freed when the write returns, not left for the collector (1.2 M objects per 100k
    releases before, and 15% of graphinator's CPU spent walking them)."""
    batch = [message("releases", synthetic_release(i)) for i in range(1, 201)]
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        result = await write_batch(clean_neo4j, "releases", batch)
        gc.collect()
        lists = sum(1 for obj in gc.garbage if type(obj) is list)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert result.written == 200
    # A few per query are the driver's own; the rows of 200 releases would be thousands.
    assert lists < 100, f"{lists} lists left for the cyclic collector"
