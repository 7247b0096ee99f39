"""Cypher for explore and user reads. Every query is parameterised: user input only ever travels
as a parameter; the few fragments spliced into query text come from the fixed tables below, keyed
by validated enum values. Ids are Discogs integers in the graph and strings in the api.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from neo4j import AsyncDriver

from api.services.neo4j import read

EXPLORE_TYPES: Final = ("artist", "genre", "label", "style")
NODE_TYPES: Final = ("artist", "release", "label", "genre", "style")
AUTOCOMPLETE_TYPES: Final = EXPLORE_TYPES

LABEL: Final = {
    "artist": "Artist",
    "label": "Label",
    "genre": "Genre",
    "style": "Style",
    "release": "Release",
}

# (category, display name) per explore type, in display order (reference §2.6.2).
CATEGORIES: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "artist": (("releases", "Releases"), ("labels", "Labels"), ("aliases", "Aliases & Members")),
    "genre": (("releases", "Releases"), ("artists", "Artists"), ("labels", "Labels"), ("styles", "Styles")),
    "label": (("releases", "Releases"), ("artists", "Artists"), ("genres", "Genres")),
    "style": (("releases", "Releases"), ("artists", "Artists"), ("labels", "Labels"), ("genres", "Genres")),
}

# How a type's releases hang off the center node `n`.
RELEASES_OF: Final = {
    "artist": "(r:Release)-[:BY]->(n)",
    "label": "(r:Release)-[:ON]->(n)",
    "genre": "(r:Release)-[:IS]->(n)",
    "style": "(r:Release)-[:IS]->(n)",
}
# Popularity of a node = its number of incoming release links (degree store, cheap).
POPULARITY: Final = {
    "artist": "COUNT { (n)<-[:BY]-() }",
    "label": "COUNT { (n)<-[:ON]-() }",
    "genre": "COUNT { (n)<-[:IS]-() }",
    "style": "COUNT { (n)<-[:IS]-() }",
}
# Child pattern from a release `r` to child `c`: (pattern, child type, id expression).
CHILD_OF_RELEASE: Final = {
    "labels": ("(r)-[:ON]->(c:Label)", "label", "c.id"),
    "artists": ("(r)-[:BY]->(c:Artist)", "artist", "c.id"),
    "genres": ("(r)-[:IS]->(c:Genre)", "genre", "c.name"),
    "styles": ("(r)-[:IS]->(c:Style)", "style", "c.name"),
}
# Categories listed by name instead of by release count (reference §4.4).
BY_NAME: Final = {("genre", "artists"), ("style", "artists")}

FULLTEXT_INDEX: Final = {
    "artist": "artist_name_fulltext",
    "label": "label_name_fulltext",
    "genre": "genre_style_name_fulltext",
    "style": "genre_style_name_fulltext",
}

YEAR_OF_R: Final = (
    "coalesce(CASE WHEN r.year > 0 THEN r.year END, "
    "head(COLLECT { MATCH (r)-[:DERIVED_FROM]->(m:Master) WHERE m.year > 0 RETURN m.year }))"
)


@dataclass(frozen=True)
class Ref:
    """How to find one center node: by Discogs id (artist/label/release) or by exact name."""

    type: str
    id: int | None = None
    name: str | None = None

    def params(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}


def parse_id(value: str | None) -> int | None:
    """A Discogs id from its string form, or None when it is not a plain non-negative integer."""
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 18:
        return None
    return int(value)


def center_match(ref: Ref) -> str:
    """A MATCH that binds exactly one node `n` (or none). Name collisions resolve to the most
    linked node, then the lowest id, so explore, expand, node and trends agree."""
    label = LABEL[ref.type]
    if ref.type in ("genre", "style"):
        return f"MATCH (n:{label} {{name: $name}})"
    if ref.id is not None:
        return f"MATCH (n:{label} {{id: $id}})"
    key = "title" if ref.type == "release" else "name"
    order = f"{POPULARITY[ref.type]} DESC, " if ref.type in POPULARITY else ""
    return f"MATCH (n:{label} {{{key}: $name}}) WITH n ORDER BY {order}n.id LIMIT 1"


def _sid(value: Any) -> str:
    return "" if value is None else str(value)


# --- autocomplete --------------------------------------------------------------------------------

LUCENE_SPECIAL: Final = re.compile(r'([+\-&|!(){}\[\]^"~*?:\\/])')
_WORD: Final = re.compile(r"\w+", re.UNICODE)
MAX_QUERY_WORDS: Final = 8
# Full-text hits ranked again by popularity (among equal scores): `limit` x this, at least the
# minimum. Every candidate costs the index a stored-field read and the query a degree count.
CANDIDATES_PER_RESULT: Final = 5
MIN_CANDIDATES: Final = 50


def escape_lucene(text: str) -> str:
    """Backslash-escape Lucene's query syntax characters (and spaces) so text is a literal term."""
    return LUCENE_SPECIAL.sub(r"\\\1", text).replace(" ", "\\ ")


def normalise_query(q: str) -> str:
    return " ".join(q.lower().split())


def lucene_prefix_query(q: str) -> str | None:
    """`warp rec` -> `(warp OR warp*) AND (rec OR rec*)`: every word required, each a prefix, an
    exact word scoring higher. Words are what the standard analyzer would index (letters and
    digits), lowercased (so AND/OR/NOT are never operators) and escaped; None when no word is left."""
    words = _WORD.findall(normalise_query(q))[:MAX_QUERY_WORDS]
    if not words:
        return None
    parts = [f"({w} OR {w}*)" for w in (escape_lucene(w) for w in words)]
    return " AND ".join(parts)


async def autocomplete(
    driver: AsyncDriver, type_: str, q: str, limit: int, *, timeout: float, database: str
) -> list[dict[str, Any]]:
    query = lucene_prefix_query(q)
    if query is None:
        return []
    label = LABEL[type_]
    id_expr = "n.name" if type_ in ("genre", "style") else "n.id"
    # Rank and de-duplicate (one entry per name: its best-ranked node) in the database, so only
    # `limit` rows travel back: decoding the candidates in Python was most of this route's CPU.
    cypher = f"""
        CALL db.index.fulltext.queryNodes($index, $query, {{limit: $candidates}}) YIELD node AS n, score
        WHERE n:{label} AND n.name IS NOT NULL
        WITH n, score, {POPULARITY[type_]} AS popularity
        ORDER BY score DESC, popularity DESC, n.name, {id_expr}
        WITH n.name AS name, head(collect({{id: {id_expr}, score: score, popularity: popularity}})) AS best
        ORDER BY best.score DESC, best.popularity DESC, name, best.id
        LIMIT $limit
        RETURN best.id AS id, name, best.score AS score
    """
    rows = await read(
        driver,
        cypher,
        {
            "index": FULLTEXT_INDEX[type_],
            "query": query,
            "candidates": max(MIN_CANDIDATES, limit * CANDIDATES_PER_RESULT),
            "limit": limit,
        },
        timeout=timeout,
        database=database,
    )
    return [
        {"id": _sid(row["id"]), "name": row["name"], "score": round(float(row["score"]), 6)} for row in rows
    ]


# --- explore ---------------------------------------------------------------------------------------


def _count_children(type_: str, category: str) -> str:
    rel = RELEASES_OF[type_]
    if category == "releases":
        return f"COUNT {{ MATCH {rel} RETURN DISTINCT r }}"
    if category == "aliases":
        return "COUNT { MATCH (n)-[:ALIAS_OF|MEMBER_OF]-(c:Artist) WHERE c <> n RETURN DISTINCT c }"
    pattern = CHILD_OF_RELEASE[category][0]
    return f"COUNT {{ MATCH {rel} MATCH {pattern} RETURN DISTINCT c }}"


async def explore(driver: AsyncDriver, ref: Ref, *, timeout: float, database: str) -> dict[str, Any] | None:
    counts = ",\n".join(f"{_count_children(ref.type, cat)} AS {cat}" for cat, _ in CATEGORIES[ref.type])
    id_expr = "n.name" if ref.type in ("genre", "style") else "n.id"
    cypher = f"{center_match(ref)}\nRETURN {id_expr} AS id, n.name AS name,\n{counts}"
    rows = await read(driver, cypher, ref.params(), timeout=timeout, database=database)
    if not rows:
        return None
    row = rows[0]
    return {
        "center": {"id": _sid(row["id"]), "name": row["name"] or "", "type": ref.type},
        "categories": [
            {"id": f"cat-{cat}", "name": display, "category": cat, "count": int(row[cat])}
            for cat, display in CATEGORIES[ref.type]
        ],
    }


def _expand_queries(type_: str, category: str) -> tuple[str, str]:
    """(page query, total query) for one (type, category); both bind the center as `n`."""
    rel = RELEASES_OF[type_]
    if category == "releases":
        page = f"""
            MATCH {rel}
            WITH DISTINCT r
            WITH r, CASE WHEN r.year > 0 THEN r.year END AS year
            ORDER BY year IS NULL, year DESC, r.id
            SKIP $offset LIMIT $limit
            RETURN r.id AS id, r.title AS name, 'release' AS type, {YEAR_OF_R} AS year, null AS release_count
        """
        total = f"MATCH {rel} RETURN count(DISTINCT r) AS total"
        return page, total
    if category == "aliases":
        match = "MATCH (n)-[:ALIAS_OF|MEMBER_OF]-(c:Artist) WHERE c <> n AND c.id IS NOT NULL"
        page = f"""
            {match}
            WITH DISTINCT c
            ORDER BY c.id SKIP $offset LIMIT $limit
            RETURN c.id AS id, c.name AS name, 'artist' AS type, null AS year, null AS release_count
        """
        return page, f"{match} RETURN count(DISTINCT c) AS total"
    pattern, child_type, id_expr = CHILD_OF_RELEASE[category]
    if (type_, category) in BY_NAME:
        page = f"""
            MATCH {rel} MATCH {pattern}
            WITH DISTINCT c
            ORDER BY c.name, {id_expr} SKIP $offset LIMIT $limit
            RETURN {id_expr} AS id, c.name AS name, '{child_type}' AS type,
                   null AS year, null AS release_count
        """
    else:
        page = f"""
            MATCH {rel} MATCH {pattern}
            WITH c, count(DISTINCT r) AS release_count
            ORDER BY release_count DESC, c.name, {id_expr} SKIP $offset LIMIT $limit
            RETURN {id_expr} AS id, c.name AS name, '{child_type}' AS type, null AS year, release_count
        """
    total = f"MATCH {rel} MATCH {pattern} RETURN count(DISTINCT c) AS total"
    return page, total


async def expand_page(
    driver: AsyncDriver, ref: Ref, category: str, limit: int, offset: int, *, timeout: float, database: str
) -> list[dict[str, Any]]:
    page, _ = _expand_queries(ref.type, category)
    rows = await read(
        driver,
        f"{center_match(ref)}\n{page}",
        {**ref.params(), "limit": limit, "offset": offset},
        timeout=timeout,
        database=database,
    )
    children = []
    for row in rows:
        child: dict[str, Any] = {"id": _sid(row["id"]), "name": row["name"] or "", "type": row["type"]}
        if row["type"] == "release":
            child["year"] = row["year"]
        if row["release_count"] is not None:
            child["release_count"] = int(row["release_count"])
        children.append(child)
    return children


async def expand_total(driver: AsyncDriver, ref: Ref, category: str, *, timeout: float, database: str) -> int:
    _, total = _expand_queries(ref.type, category)
    rows = await read(
        driver, f"{center_match(ref)}\n{total}", ref.params(), timeout=timeout, database=database
    )
    return int(rows[0]["total"]) if rows else 0


# --- node details ------------------------------------------------------------------------------------


def _names(pattern: str, var: str, limit: int = 100) -> str:
    return (
        f"COLLECT {{ MATCH {pattern} WITH DISTINCT {var}.name AS x WHERE x IS NOT NULL "
        f"RETURN x ORDER BY x LIMIT {limit} }}"
    )


_NODE_RETURN: Final = {
    "artist": f"""
        RETURN n.id AS id, n.name AS name, n.realname AS realname, n.profile AS profile,
               COUNT {{ MATCH (r:Release)-[:BY]->(n) RETURN DISTINCT r }} AS release_count,
               {_names("(r:Release)-[:BY]->(n) MATCH (r)-[:IS]->(g:Genre)", "g")} AS genres,
               {_names("(r:Release)-[:BY]->(n) MATCH (r)-[:IS]->(s:Style)", "s")} AS styles,
               {_names("(n)-[:MEMBER_OF]->(g:Artist)", "g")} AS groups,
               {_names("(m:Artist)-[:MEMBER_OF]->(n)", "m")} AS members,
               {_names("(n)-[:ALIAS_OF]-(a:Artist)", "a")} AS aliases
    """,
    "release": f"""
        WITH n AS r
        RETURN r.id AS id, r.title AS name, {YEAR_OF_R} AS year, r.country AS country,
               r.released AS released, r.formats AS formats,
               {_names("(r)-[:BY]->(a:Artist)", "a")} AS artists,
               {_names("(r)-[:ON]->(l:Label)", "l")} AS labels,
               {_names("(r)-[:IS]->(g:Genre)", "g")} AS genres,
               {_names("(r)-[:IS]->(s:Style)", "s")} AS styles
    """,
    "label": f"""
        RETURN n.id AS id, n.name AS name, n.profile AS profile,
               COUNT {{ MATCH (r:Release)-[:ON]->(n) RETURN DISTINCT r }} AS release_count,
               {_names("(n)-[:SUBLABEL_OF]->(p:Label)", "p")} AS parent_labels,
               {_names("(s:Label)-[:SUBLABEL_OF]->(n)", "s")} AS sublabels
    """,
    "genre": """
        RETURN n.name AS id, n.name AS name,
               COUNT { MATCH (r:Release)-[:IS]->(n) RETURN DISTINCT r } AS release_count,
               COUNT { MATCH (r:Release)-[:IS]->(n) MATCH (r)-[:BY]->(a:Artist) RETURN DISTINCT a }
                   AS artist_count
    """,
}
_NODE_RETURN["style"] = _NODE_RETURN["genre"]


async def node_details(
    driver: AsyncDriver, type_: str, node_id: str, *, timeout: float, database: str
) -> dict[str, Any] | None:
    """Details of one node: by id first (artist/release/label), then by exact name/title."""
    refs: list[Ref] = []
    if type_ in ("genre", "style"):
        refs.append(Ref(type_, name=node_id))
    else:
        numeric = parse_id(node_id)
        if numeric is not None:
            refs.append(Ref(type_, id=numeric))
        refs.append(Ref(type_, name=node_id))
    for ref in refs:
        rows = await read(
            driver,
            f"{center_match(ref)}\n{_NODE_RETURN[type_]}",
            ref.params(),
            timeout=timeout,
            database=database,
        )
        if rows:
            row = rows[0]
            details = {k: v for k, v in row.items() if v is not None}
            details["id"] = _sid(row["id"])
            details["name"] = row["name"] or ""
            if type_ == "release":
                details["year"] = row["year"]
            return details
    return None


# --- trends ------------------------------------------------------------------------------------------


async def trends(driver: AsyncDriver, ref: Ref, *, timeout: float, database: str) -> list[dict[str, int]]:
    cypher = f"""
        {center_match(ref)}
        MATCH {RELEASES_OF[ref.type]}
        WITH DISTINCT r WHERE r.year > 0
        RETURN r.year AS year, count(r) AS count
        ORDER BY year
    """
    rows = await read(driver, cypher, ref.params(), timeout=timeout, database=database)
    return [{"year": int(row["year"]), "count": int(row["count"])} for row in rows]


# --- user data (written by the curator's sync) ---------------------------------------------------

_FIRST_ARTIST: Final = "head(COLLECT { MATCH (r)-[:BY]->(a:Artist) RETURN a.name ORDER BY a.name LIMIT 1 })"
_FIRST_LABEL: Final = "head(COLLECT { MATCH (r)-[:ON]->(l:Label) RETURN l.name ORDER BY l.name LIMIT 1 })"


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


async def user_items(
    driver: AsyncDriver,
    user_id: str,
    rel: str,
    limit: int,
    offset: int,
    *,
    timeout: float,
    database: str,
) -> tuple[list[dict[str, Any]], int]:
    """One page of the user's COLLECTED (one row per instance) or WANTS items, newest first."""
    if rel not in ("COLLECTED", "WANTS"):
        raise ValueError(rel)
    extra = ", c.folder_id AS folder_id, c.instance_id AS instance_id" if rel == "COLLECTED" else ""
    page = f"""
        MATCH (:User {{id: $user_id}})-[c:{rel}]->(r:Release)
        WITH c, r ORDER BY c.date_added IS NULL, c.date_added DESC, r.id, c.instance_id
        SKIP $offset LIMIT $limit
        RETURN r.id AS id, r.title AS title, {YEAR_OF_R} AS year, {_FIRST_ARTIST} AS artist,
               {_FIRST_LABEL} AS label, c.rating AS rating, c.date_added AS date_added{extra}
    """
    total = f"MATCH (:User {{id: $user_id}})-[c:{rel}]->(:Release) RETURN count(c) AS total"
    params = {"user_id": user_id, "limit": limit, "offset": offset}
    rows = await read(driver, page, params, timeout=timeout, database=database)
    count_rows = await read(driver, total, params, timeout=timeout, database=database)
    items = []
    for row in rows:
        item: dict[str, Any] = {
            "id": _sid(row["id"]),
            "title": row["title"],
            "year": _int_or_none(row["year"]),
            "artist": row["artist"],
            "label": row["label"],
            "rating": _int_or_none(row["rating"]),
            "date_added": None if row["date_added"] is None else str(row["date_added"]),
        }
        if rel == "COLLECTED":
            item["folder_id"] = _int_or_none(row["folder_id"])
            item["instance_id"] = None if row["instance_id"] is None else str(row["instance_id"])
        items.append(item)
    return items, int(count_rows[0]["total"]) if count_rows else 0


async def recommendations(
    driver: AsyncDriver, user_id: str, limit: int, *, timeout: float, database: str
) -> list[dict[str, Any]]:
    """Releases by the user's 10 most-collected artists that the user neither has nor wants,
    scored by the summed affinity of their artists (reference §5.3), deterministic ties."""
    cypher = f"""
        MATCH (u:User {{id: $user_id}})-[:COLLECTED]->(:Release)-[:BY]->(a:Artist)
        WITH u, a, count(*) AS affinity
        ORDER BY affinity DESC, a.id LIMIT 10
        MATCH (r:Release)-[:BY]->(a)
        WHERE NOT EXISTS {{ (u)-[:COLLECTED]->(r) }} AND NOT EXISTS {{ (u)-[:WANTS]->(r) }}
        WITH r, sum(affinity) AS score
        ORDER BY score DESC, r.id LIMIT $limit
        RETURN r.id AS id, r.title AS title, {YEAR_OF_R} AS year, {_FIRST_ARTIST} AS artist,
               {_FIRST_LABEL} AS label,
               COLLECT {{ MATCH (r)-[:IS]->(g:Genre) RETURN DISTINCT g.name AS g ORDER BY g }} AS genres,
               score
        ORDER BY score DESC, r.id
    """
    rows = await read(
        driver, cypher, {"user_id": user_id, "limit": limit}, timeout=timeout, database=database
    )
    return [
        {
            "id": _sid(row["id"]),
            "title": row["title"],
            "year": _int_or_none(row["year"]),
            "artist": row["artist"],
            "label": row["label"],
            "genres": row["genres"],
            "score": int(row["score"]),
        }
        for row in rows
    ]


async def collection_stats(
    driver: AsyncDriver, user_id: str, *, timeout: float, database: str
) -> dict[str, Any]:
    """Counts over collection instances: total, top 20 genres and labels, and decades."""
    base = "MATCH (:User {id: $user_id})-[c:COLLECTED]->(r:Release)"
    queries = {
        "total": f"{base} RETURN count(c) AS total",
        "by_genre": f"""{base} MATCH (r)-[:IS]->(g:Genre)
            RETURN g.name AS name, count(DISTINCT c) AS count ORDER BY count DESC, name LIMIT 20""",
        "by_label": f"""{base} MATCH (r)-[:ON]->(l:Label)
            RETURN l.name AS name, count(DISTINCT c) AS count ORDER BY count DESC, name LIMIT 20""",
        "by_decade": f"""{base} WITH c, {YEAR_OF_R} AS year WHERE year IS NOT NULL
            RETURN (year / 10) * 10 AS decade, count(c) AS count ORDER BY decade""",
    }
    params = {"user_id": user_id}
    out: dict[str, Any] = {}
    for key, cypher in queries.items():
        out[key] = await read(driver, cypher, params, timeout=timeout, database=database)
    return {
        "total": int(out["total"][0]["total"]) if out["total"] else 0,
        "by_genre": [{"name": r["name"], "count": int(r["count"])} for r in out["by_genre"]],
        "by_decade": [{"decade": int(r["decade"]), "count": int(r["count"])} for r in out["by_decade"]],
        "by_label": [{"name": r["name"], "count": int(r["count"])} for r in out["by_label"]],
    }


async def release_status(
    driver: AsyncDriver, user_id: str, release_ids: list[int], *, timeout: float, database: str
) -> dict[int, tuple[bool, bool]]:
    cypher = """
        MATCH (u:User {id: $user_id})
        UNWIND $ids AS rid
        MATCH (r:Release {id: rid})
        RETURN rid, EXISTS { (u)-[:COLLECTED]->(r) } AS c, EXISTS { (u)-[:WANTS]->(r) } AS w
    """
    rows = await read(
        driver, cypher, {"user_id": user_id, "ids": release_ids}, timeout=timeout, database=database
    )
    return {int(row["rid"]): (bool(row["c"]), bool(row["w"])) for row in rows}
