"""A small graph in the shape graphinator writes (design §5), built with Cypher.

Used by the api tests for edge cases the real samples lack (name collisions, special characters,
missing years, users); test_api_samples.py covers the samples loaded by the real write path.
Kept small and explicit so every assertion in the tests can be checked by reading this file.
"""

from __future__ import annotations

from typing import Any

from neo4j import AsyncDriver

from graphinator.writer import await_fulltext_refresh

ARTISTS: list[dict[str, Any]] = [
    {"id": 1, "name": "Aphex Twin", "realname": "Richard David James", "profile": "Electronic musician"},
    {"id": 2, "name": "Richard D. James", "realname": None, "profile": None},
    {"id": 3, "name": "The Tuss", "realname": None, "profile": None},
    {"id": 10, "name": "Autechre", "realname": None, "profile": "Duo from Rochdale"},
    {"id": 11, "name": "Sean Booth", "realname": None, "profile": None},
    {"id": 12, "name": "Rob Brown", "realname": None, "profile": None},
    {"id": 30, "name": "AC/DC", "realname": None, "profile": None},
    {"id": 31, "name": "Sunn O)))", "realname": None, "profile": None},
    {"id": 40, "name": "Warp Artist", "realname": None, "profile": None},
    {"id": 41, "name": "Aphex Tribute Band", "realname": None, "profile": None},
]
LABELS: list[dict[str, Any]] = [
    {"id": 100, "name": "Warp Records", "profile": "Sheffield label"},
    {"id": 101, "name": "Warp Records", "profile": "A namesake with fewer releases"},
    {"id": 103, "name": "Rephlex", "profile": None},
    {"id": 104, "name": "Warp Singles", "profile": None},
    {"id": 105, "name": "Atlantic", "profile": None},
]
SUBLABELS = [(104, 100)]
GENRES = ["Electronic", "Rock"]
STYLES = [("IDM", "Electronic"), ("Ambient", "Electronic"), ("Techno", "Electronic"), ("Hard Rock", "Rock")]
MASTERS: list[dict[str, Any]] = [
    {"id": 500, "title": "Selected Ambient Works 85-92", "year": 1992},
    {"id": 501, "title": "Drukqs", "year": 2001},
]

# Aphex Twin: 12 releases 1001..1012; year 1990 + i, except 1012 has no year of its own (its master
# gives 2001 for display) and 1011 has year 0 (unknown).
RELEASES: list[dict[str, Any]] = []
for i in range(1, 13):
    year: int | None = 1990 + i
    if i == 11:
        year = 0
    if i == 12:
        year = None
    RELEASES.append(
        {
            "id": 1000 + i,
            "title": "Selected Ambient Works 85-92" if i == 2 else f"Aphex Release {i:02d}",
            "year": year,
            "country": "UK",
            "released": f"{year}-01-01" if year else None,
            "artists": [1],
            "labels": [103] if i <= 4 else [100],
            "genres": ["Electronic"],
            "styles": ["Ambient", "IDM"] if i % 2 == 0 else ["IDM"],
            "master": 500 if i == 2 else (501 if i == 12 else None),
        }
    )
# Autechre: 5 releases on Warp (id 100), years 1994..1998, one also credited to Aphex Twin.
for i in range(1, 6):
    RELEASES.append(
        {
            "id": 1100 + i,
            "title": f"Autechre Release {i}",
            "year": 1993 + i,
            "country": "UK",
            "released": None,
            "artists": [10, 1] if i == 5 else [10],
            "labels": [100],
            "genres": ["Electronic"],
            "styles": ["Techno", "IDM"],
            "master": None,
        }
    )
# The namesake "Warp Records" (101) has one release; AC/DC has two rock releases on Atlantic.
RELEASES += [
    {
        "id": 1201, "title": "Namesake Single", "year": 1999, "country": "US", "released": None,
        "artists": [40], "labels": [101], "genres": ["Electronic"], "styles": ["Techno"], "master": None,
    },
    {
        "id": 1301, "title": "Back in Black", "year": 1980, "country": "AU", "released": "1980-07-25",
        "artists": [30], "labels": [105], "genres": ["Rock"], "styles": ["Hard Rock"], "master": None,
    },
    {
        "id": 1302, "title": "Highway to Hell", "year": 1979, "country": "AU", "released": None,
        "artists": [30], "labels": [105], "genres": ["Rock"], "styles": ["Hard Rock"], "master": None,
    },
]  # fmt: skip

MEMBERS = [(11, 10), (12, 10)]  # member -> group
ALIASES = [(2, 1), (3, 1), (1, 2)]  # alias -> artist (Discogs lists aliases both ways)
CREDITS = [(2, 1001, "Producer")]  # artist -> release, role

APHEX_RELEASES = 13  # 12 own + 1 Autechre release crediting him
AUTECHRE_RELEASES = 5


async def load_graph(driver: AsyncDriver) -> None:
    """Create the fixture graph (the caller empties the database first)."""
    statements: list[tuple[str, dict[str, Any]]] = [
        ("UNWIND $rows AS a CREATE (n:Artist) SET n = a", {"rows": ARTISTS}),
        ("UNWIND $rows AS l CREATE (n:Label) SET n = l", {"rows": LABELS}),
        ("UNWIND $rows AS g CREATE (:Genre {name: g})", {"rows": GENRES}),
        (
            "UNWIND $rows AS s MATCH (g:Genre {name: s[1]}) CREATE (:Style {name: s[0]})-[:PART_OF]->(g)",
            {"rows": [list(s) for s in STYLES]},
        ),
        ("UNWIND $rows AS m CREATE (n:Master) SET n = m", {"rows": MASTERS}),
        (
            """
            UNWIND $rows AS r
            CREATE (n:Release {id: r.id, title: r.title, country: r.country})
            SET n.year = r.year, n.released = r.released
            WITH n, r
            CALL (n, r) {
                UNWIND r.artists AS aid MATCH (a:Artist {id: aid}) CREATE (n)-[:BY]->(a)
            }
            CALL (n, r) {
                UNWIND r.labels AS lid MATCH (l:Label {id: lid})
                CREATE (n)-[:ON {catno: 'CAT' + toString(n.id)}]->(l)
            }
            CALL (n, r) { UNWIND r.genres AS g MATCH (x:Genre {name: g}) CREATE (n)-[:IS]->(x) }
            CALL (n, r) { UNWIND r.styles AS s MATCH (x:Style {name: s}) CREATE (n)-[:IS]->(x) }
            CALL (n, r) {
                WITH n, r WHERE r.master IS NOT NULL
                MATCH (m:Master {id: r.master}) CREATE (n)-[:DERIVED_FROM]->(m)
            }
            """,
            {"rows": RELEASES},
        ),
        (
            "MATCH (m:Master {id: 500}), (a:Artist {id: 1}) CREATE (m)-[:BY]->(a)",
            {},
        ),
        (
            "UNWIND $rows AS p MATCH (a:Artist {id: p[0]}), (g:Artist {id: p[1]}) "
            "CREATE (a)-[:MEMBER_OF]->(g)",
            {"rows": [list(p) for p in MEMBERS]},
        ),
        (
            "UNWIND $rows AS p MATCH (a:Artist {id: p[0]}), (b:Artist {id: p[1]}) "
            "CREATE (a)-[:ALIAS_OF]->(b)",
            {"rows": [list(p) for p in ALIASES]},
        ),
        (
            "UNWIND $rows AS p MATCH (s:Label {id: p[0]}), (l:Label {id: p[1]}) "
            "CREATE (s)-[:SUBLABEL_OF]->(l)",
            {"rows": [list(p) for p in SUBLABELS]},
        ),
        (
            """UNWIND $rows AS c MATCH (a:Artist {id: c[0]}), (r:Release {id: c[1]})
               CREATE (a)-[:CREDITED {role: c[2]}]->(r)""",
            {"rows": [list(c) for c in CREDITS]},
        ),
    ]
    async with driver.session() as session:
        for cypher, params in statements:
            await (await session.run(cypher, params)).consume()
        await (await session.run("CALL db.awaitIndexes(60)")).consume()
    await await_fulltext_refresh(driver)


async def add_user_items(
    driver: AsyncDriver,
    user_id: str,
    collected: list[dict[str, Any]],
    wanted: list[dict[str, Any]],
) -> None:
    """What the curator's sync writes: a User node, COLLECTED per instance and WANTS per release."""
    async with driver.session() as session:
        await (
            await session.run(
                """
                MERGE (u:User {id: $uid})
                WITH u
                UNWIND $collected AS c
                MATCH (r:Release {id: c.release_id})
                CREATE (u)-[:COLLECTED {instance_id: c.instance_id, rating: c.rating,
                                        folder_id: c.folder_id, date_added: c.date_added}]->(r)
                """,
                {"uid": user_id, "collected": collected},
            )
        ).consume()
        await (
            await session.run(
                """
                MERGE (u:User {id: $uid})
                WITH u
                UNWIND $wanted AS w
                MATCH (r:Release {id: w.release_id})
                CREATE (u)-[:WANTS {rating: w.rating, date_added: w.date_added}]->(r)
                """,
                {"uid": user_id, "wanted": wanted},
            )
        ).consume()
