"""Record batches -> Neo4j (design §5), one write transaction per batch.

Model
-----
Nodes (`id` is the Discogs integer; every full node has `sha256`, `dump_version`,
`graph_model`, the GRAPH_MODEL it was written with, and `links_hash`, a hash of the relationships
its record owns, below):
  Artist{id, name, realname, profile}   Label{id, name, profile}
  Master{id, title, year:int, main_release:int}
  Release{id, title, year:int, released, country, formats:[str], is_main_release:bool}
  Genre{name}  Style{name}
`formats` holds one display string per `<format>`: an optional "<qty> x " prefix when qty is not
1, the format name, its descriptions, then its free text, joined by ", "
(e.g. `2 x Vinyl, 12", 33 ⅓ RPM`). The full format objects stay in PostgreSQL.

Relationships, and which record owns them (a record rebuilds exactly what it owns):
  MEMBER_OF  member -> group   asserted by the member (`groups`, flag via_member) and/or the
                               group (`members`, flag via_group); a rebuild clears its own flag and
                               deletes the edge only when no other record still asserts it
  ALIAS_OF   record -> alias   (`aliases`)
  SUBLABEL_OF child -> parent  asserted by the child (`parent_label`, via_child) and/or the parent
                               (`sublabels`, via_parent), same flag rule as MEMBER_OF
  BY         Release/Master -> Artist (main `artists` credits; `anv`, `join` kept on the edge)
  CREDITED   Artist -> Release (`extraartists` of the release and of every track/sub-track,
             `role` and `tracks` on the edge; a track credit without `tracks` gets the position)
  ON         Release -> Label, `catno` on the edge (one edge per distinct catno)
  DERIVED_FROM Release -> Master (`master_id`)
  IS         Release/Master -> Genre/Style
  PART_OF    Style -> Genre, only from records with exactly one genre (an unambiguous
             co-occurrence; the cartesian product of several genres x styles is noise). Shared
             taxonomy: never owned, never deleted.
Credits without an id (unlinked credits) produce no edge.

Stubs: a referenced Artist/Label/Master that has no record yet is MERGEd with the name seen in the
reference (none for a master) and no sha256; the full record fills it later and removes the
curator's `stub` flag (a sync creates `stub: true` nodes for releases the dump has not loaded yet).

Writes: the hash check reads the stored sha256 of the batch's ids first; only the records it says
must be written are decoded (they arrive as raw JSON, common.raw_messages) and mapped, so an
unchanged record, the bulk of a monthly update, costs an index lookup and little Python. Then one
statement per batch MERGEs the nodes, MERGEs every distinct target (stub, genre, style) once in
sorted key order, and CREATEs the owned edges by position in those node lists (no index lookup per
edge). The hash check and the writes happen in the same transaction: an unchanged sha256 only bumps
`dump_version`; a changed record's owned relationships are deleted and re-created. So are those of
an unchanged record written by an older GRAPH_MODEL (common.writes): a new version of this mapping
reaches every stored record the next time its message arrives in full (the next dump version, which
the extractor then publishes in full, or at once with `python -m extractor --reprocess`).
One shortcut: a changed record of the current GRAPH_MODEL whose mapping makes exactly the
relationships its stored `links_hash` stands for (most edits touch a title, notes or a tracklist,
not the credits) only gets its properties set; its edges stay as they are, element ids included.
The hash covers every relationship row: targets, the names a stub would get, edge properties. A
node without one (written before it existed) is rebuilt.
A record the check found absent but another transaction (a second batch in flight, another
replica) created meanwhile is not written twice: MERGE waits for that commit, the same hash counts
as unchanged, another hash retries the batch (ConcurrentWriteError).
A message from an older dump version than the stored one is ignored (`stale`).
An unchanged item (`"record": null`, docs/records.md) has nothing to map: with the stored sha256
and GRAPH_MODEL it is unchanged as above. Otherwise it cannot be written: a full node of the same
sha256 but an older GRAPH_MODEL only gets `dump_version` bumped (`outdated`: rejecting them would
flood the DLQ after every mapping change; write_batch logs a warning instead), a full node of
another sha256 gets it bumped too (still in the dump: the sweep keeps it) and the item is rejected,
and with no node or only a stub nothing is written and it is rejected. Only `python -m extractor
--reprocess` (every record in full) repairs those.

`remove_stale(driver, type, version)`: full nodes whose `dump_version` is older than `version`
lose their owned relationships and properties; a node something else still points at (a release
still credits the artist, a user collected the release) stays as a stub with its id and name, the
rest is deleted. Stubs that were never full records are left alone unless nothing points at them
any more.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, LiteralString

import orjson
from neo4j import AsyncDriver, AsyncManagedTransaction, unit_of_work

from common.logging import get_logger
from common.messages import RecordMessage
from common.raw_messages import RawRecord
from common.writes import GRAPH_MODEL, WriteResult, latest_per_id, unchanged_item_refusal

log = get_logger(__name__)

# Smallest part worth its own transaction when a batch is split for parallel writes.
_MIN_PART: Final = 100

LABELS: Final = {"artists": "Artist", "labels": "Label", "masters": "Master", "releases": "Release"}


@dataclass
class _Rows:
    """The Cypher parameters of one batch: node rows and relationship rows grouped by kind."""

    nodes: list[dict[str, Any]] = field(default_factory=list)
    rels: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    part_of: set[tuple[str, str]] = field(default_factory=set)

    def add(self, kind: str, row: dict[str, Any]) -> None:
        self.rels.setdefault(kind, []).append(row)

    def links_hash(self) -> int:
        """A 64-bit hash of every relationship row (targets, stub names, edge properties): equal
        hashes, equal owned relationships. The rows come in the record's order, so a reordered
        credit list hashes differently and is rebuilt, which is merely the slower path."""
        data = orjson.dumps([self.rels, sorted(self.part_of)])
        return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big", signed=True)


class ConcurrentWriteError(Exception):
    """A record was written by another transaction between the hash check and the write, in a
    different version: transient, the batch is retried."""


class RecordShapeError(ValueError):
    """The record cannot be mapped (wrong type where the contract says list/object)."""


def _list(record: dict[str, Any], key: str) -> list[Any]:
    value = record.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise RecordShapeError(f"{key} must be a list, got {type(value).__name__}")
    return value


def _obj(item: Any, key: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise RecordShapeError(f"{key} items must be objects, got {type(item).__name__}")
    return item


def _ref_id(item: dict[str, Any], key: str) -> int | None:
    value = item.get("id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordShapeError(f"{key}[].id must be an integer, got {value!r}")
    return value if value > 0 else None


def _names(record: dict[str, Any], key: str) -> list[str]:
    out: list[str] = []
    for value in _list(record, key):
        if isinstance(value, str) and value.strip():
            if value not in out:
                out.append(value)
        elif value is not None and not isinstance(value, str):
            raise RecordShapeError(f"{key} items must be strings")
    return out


def format_strings(formats: Iterable[Any]) -> list[str]:
    """`[{"name": "Vinyl", "qty": 2, "descriptions": ["12\\"", "LP"], "text": "Red"}]` ->
    `['2 x Vinyl, 12", LP, Red']`."""
    out: list[str] = []
    for fmt in formats:
        item = _obj(fmt, "formats")
        parts = [str(item["name"])] if item.get("name") else []
        parts += [str(d) for d in item.get("descriptions") or [] if d]
        if item.get("text"):
            parts.append(str(item["text"]))
        text = ", ".join(parts)
        qty = item.get("qty")
        if qty not in (None, 1, "1", "", 0):
            text = f"{qty} x {text}"
        out.append(text)
    return out


def _genre_rows(rows: _Rows, src: int, record: dict[str, Any]) -> None:
    genres = _names(record, "genres")
    styles = _names(record, "styles")
    for name in genres:
        rows.add("IS_GENRE", {"src": src, "name": name})
    for name in styles:
        rows.add("IS_STYLE", {"src": src, "name": name})
    if len(genres) == 1:
        rows.part_of.update((style, genres[0]) for style in styles)


def _by_rows(rows: _Rows, src: int, record: dict[str, Any]) -> None:
    seen: set[int] = set()
    for credit in _list(record, "artists"):
        item = _obj(credit, "artists")
        dst = _ref_id(item, "artists")
        if dst is None or dst in seen:
            continue
        seen.add(dst)
        rows.add(
            "BY",
            {
                "src": src,
                "dst": dst,
                "name": item.get("name"),
                "anv": item.get("anv"),
                "join": item.get("join"),
            },
        )


def _tracks(tracks: list[Any]) -> Iterable[dict[str, Any]]:
    for track in tracks:
        item = _obj(track, "tracklist")
        yield item
        yield from _tracks(_list(item, "sub_tracks"))


def _map_artist(rid: int, r: dict[str, Any], rows: _Rows) -> dict[str, Any]:
    aliases: set[int] = set()
    for alias in _list(r, "aliases"):
        item = _obj(alias, "aliases")
        dst = _ref_id(item, "aliases")
        if dst is not None and dst != rid and dst not in aliases:
            aliases.add(dst)
            rows.add("ALIAS_OF", {"src": rid, "dst": dst, "name": item.get("name")})
    for group in _list(r, "groups"):
        item = _obj(group, "groups")
        dst = _ref_id(item, "groups")
        if dst is not None and dst != rid:
            rows.add("MEMBER_OF_GROUP", {"src": rid, "dst": dst, "name": item.get("name")})
    for member in _list(r, "members"):
        item = _obj(member, "members")
        dst = _ref_id(item, "members")
        if dst is not None and dst != rid:
            rows.add("MEMBER_OF_MEMBER", {"src": rid, "dst": dst, "name": item.get("name")})
    return {"name": r.get("name"), "realname": r.get("realname"), "profile": r.get("profile")}


def _map_label(rid: int, r: dict[str, Any], rows: _Rows) -> dict[str, Any]:
    parent = r.get("parent_label")
    if parent is not None:
        item = _obj(parent, "parent_label")
        dst = _ref_id(item, "parent_label")
        if dst is not None and dst != rid:
            rows.add("SUBLABEL_OF_PARENT", {"src": rid, "dst": dst, "name": item.get("name")})
    for sub in _list(r, "sublabels"):
        item = _obj(sub, "sublabels")
        dst = _ref_id(item, "sublabels")
        if dst is not None and dst != rid:
            rows.add("SUBLABEL_OF_SUB", {"src": rid, "dst": dst, "name": item.get("name")})
    return {"name": r.get("name"), "profile": r.get("profile")}


def _map_master(rid: int, r: dict[str, Any], rows: _Rows) -> dict[str, Any]:
    _by_rows(rows, rid, r)
    _genre_rows(rows, rid, r)
    return {"title": r.get("title"), "year": r.get("year"), "main_release": r.get("main_release")}


def _map_release(rid: int, r: dict[str, Any], rows: _Rows) -> dict[str, Any]:
    _by_rows(rows, rid, r)
    _genre_rows(rows, rid, r)
    credits: set[tuple[int, str | None, str | None]] = set()

    def credit(item: dict[str, Any], tracks: str | None) -> None:
        dst = _ref_id(item, "extraartists")
        if dst is None:
            return
        key = (dst, item.get("role"), item.get("tracks") or tracks)
        if key not in credits:
            credits.add(key)
            rows.add(
                "CREDITED",
                {"src": rid, "dst": dst, "name": item.get("name"), "role": key[1], "tracks": key[2]},
            )

    for extra in _list(r, "extraartists"):
        credit(_obj(extra, "extraartists"), None)
    for track in _tracks(_list(r, "tracklist")):
        for extra in _list(track, "extraartists"):
            credit(_obj(extra, "extraartists"), track.get("position"))
    labels: set[tuple[int, str | None]] = set()
    for label in _list(r, "labels"):
        item = _obj(label, "labels")
        dst = _ref_id(item, "labels")
        if dst is None or (dst, item.get("catno")) in labels:
            continue
        labels.add((dst, item.get("catno")))
        rows.add("ON", {"src": rid, "dst": dst, "name": item.get("name"), "catno": item.get("catno")})
    master_id = r.get("master_id")
    if isinstance(master_id, int) and not isinstance(master_id, bool) and master_id > 0:
        rows.add("DERIVED_FROM", {"src": rid, "dst": master_id})
    elif master_id is not None:
        raise RecordShapeError(f"master_id must be a positive integer, got {master_id!r}")
    return {
        "title": r.get("title"),
        "year": r.get("year"),
        "released": r.get("released"),
        "country": r.get("country"),
        "formats": format_strings(_list(r, "formats")),
        "is_main_release": r.get("is_main_release"),
    }


_MAPPERS: Final[dict[str, Callable[[int, dict[str, Any], _Rows], dict[str, Any]]]] = {
    "artists": _map_artist,
    "labels": _map_label,
    "masters": _map_master,
    "releases": _map_release,
}


@dataclass(frozen=True)
class _Target:
    """A kind of node that relationships point at: MERGEd once per distinct key per batch."""

    param: str  # Cypher parameter and variable name of its node list
    label: str
    key: str  # unique property ("id" or "name")
    named: bool  # a stub carries the name seen in the referencing record


@dataclass(frozen=True)
class _Rel:
    """One kind of relationship row built by the mappers; `create` uses s (source), t (target) and
    r = [source index, target index, *props]."""

    kind: str
    target: str
    create: str
    props: tuple[str, ...] = ()


_TARGETS: Final[dict[str, _Target]] = {
    "Artist": _Target("t_artist", "Artist", "id", True),
    "Label": _Target("t_label", "Label", "id", True),
    "Master": _Target("t_master", "Master", "id", False),
    "Genre": _Target("t_genre", "Genre", "name", False),
    "Style": _Target("t_style", "Style", "name", False),
}

# Owned edges are CREATEd: a new node has none, and a changed record's were deleted earlier in the
# same transaction. MEMBER_OF / SUBLABEL_OF are shared (either side may assert them): MERGEd.
_IS = (_Rel("IS_GENRE", "Genre", "CREATE (s)-[:IS]->(t)"), _Rel("IS_STYLE", "Style", "CREATE (s)-[:IS]->(t)"))
_BY = _Rel("BY", "Artist", "CREATE (s)-[:BY {anv: r[2], join: r[3]}]->(t)", ("anv", "join"))
_RELS: Final[dict[str, tuple[_Rel, ...]]] = {
    "artists": (
        _Rel("ALIAS_OF", "Artist", "CREATE (s)-[:ALIAS_OF]->(t)"),
        _Rel("MEMBER_OF_GROUP", "Artist", "MERGE (s)-[m:MEMBER_OF]->(t) SET m.via_member = true"),
        _Rel("MEMBER_OF_MEMBER", "Artist", "MERGE (t)-[m:MEMBER_OF]->(s) SET m.via_group = true"),
    ),
    "labels": (
        _Rel("SUBLABEL_OF_PARENT", "Label", "MERGE (s)-[m:SUBLABEL_OF]->(t) SET m.via_child = true"),
        _Rel("SUBLABEL_OF_SUB", "Label", "MERGE (t)-[m:SUBLABEL_OF]->(s) SET m.via_parent = true"),
    ),
    "masters": (_BY, *_IS),
    "releases": (
        _BY,
        _Rel(
            "CREDITED", "Artist", "CREATE (t)-[:CREDITED {role: r[2], tracks: r[3]}]->(s)", ("role", "tracks")
        ),
        _Rel("ON", "Label", "CREATE (s)-[:ON {catno: r[2]}]->(t)", ("catno",)),
        _Rel("DERIVED_FROM", "Master", "CREATE (s)-[:DERIVED_FROM]->(t)"),
        *_IS,
    ),
}


def _write_statement(data_type: str) -> str:
    """One statement writes a batch: the nodes, every distinct target (stub) once, then each
    relationship kind by list position (no second index lookup per relationship row)."""
    label = LABELS[data_type]
    rels = _RELS[data_type]
    targets = [t for t in _TARGETS.values() if any(r.target == t.label for r in rels)]
    props = _NODE_PROPS[data_type]
    sets = ", ".join(f"x.{prop} = row[{i}]" for i, prop in enumerate(props, 1))
    sha, new = props.index("sha256") + 1, len(props) + 1
    # A record the hash check found absent but another transaction (a second batch in flight,
    # another replica) created meanwhile: MERGE waited for that commit and found the node with a
    # hash. It is `taken`: not written again (its relationships exist), its source slot is empty.
    # A null value removes the property (a changed record keeps nothing of its old version); a full
    # record is no (curator) stub any more.
    parts = [
        f"UNWIND $nodes AS row MERGE (n:{label} {{id: row[0]}}) "
        f"WITH n, row, CASE WHEN row[{new}] AND n.sha256 IS NOT NULL THEN n.sha256 END AS other "
        f"FOREACH (x IN CASE WHEN other IS NULL THEN [n] ELSE [] END | SET {sets} REMOVE x.stub) "
        "WITH collect(CASE WHEN other IS NULL THEN [n] ELSE [] END) AS src, "
        f"collect(CASE WHEN other IS NOT NULL THEN [row[0], other = row[{sha}]] END) AS taken"
    ]
    for t in targets:
        key, name = ("row[0]", " ON CREATE SET x.name = row[1]") if t.named else ("row", "")
        parts.append(
            f"CALL () {{ UNWIND ${t.param} AS row MERGE (x:{t.label} {{{t.key}: {key}}}){name} "
            f"RETURN collect(x) AS {t.param} }}"
        )
    for rel in rels:
        t = _TARGETS[rel.target]
        parts.append(
            f"CALL (src, {t.param}) {{ UNWIND $r_{rel.kind} AS r "
            f"UNWIND src[r[0]] AS s WITH s, {t.param}[r[1]] AS t, r {rel.create} }}"
        )
    if any(t.label == "Genre" for t in targets):
        parts.append(
            "CALL (t_style, t_genre) { UNWIND $part_of AS p WITH t_style[p[0]] AS s, t_genre[p[1]] AS g "
            "MERGE (s)-[:PART_OF]->(g) }"
        )
    parts.append("RETURN taken")
    return "\n".join(parts)


def _write_params(
    data_type: str,
    write: list[int],
    mapped: dict[int, tuple[dict[str, Any], _Rows]],
    new: set[int],
    same_links: set[int],
) -> dict[str, Any]:
    """The parameters of `_WRITE[data_type]`: rows reference nodes by their position in a list.
    The records of `same_links` keep the relationships they have: none of theirs are sent."""
    rels = _RELS[data_type]
    src_index = {rid: i for i, rid in enumerate(write)}
    # Every distinct target key, with the first non-empty name seen for it (a stub's name).
    names: dict[str, dict[Any, str | None]] = {t.label: {} for t in _TARGETS.values()}
    grouped: dict[str, list[dict[str, Any]]] = {}
    part_of: set[tuple[str, str]] = set()
    kinds = {rel.kind: rel for rel in rels}
    for rid in write:
        if rid in same_links:
            continue
        record_rows = mapped[rid][1]
        for kind, items in record_rows.rels.items():
            target = names[kinds[kind].target]
            key = "name" if kinds[kind].target in ("Genre", "Style") else "dst"
            for item in items:
                dst = item[key]
                if target.get(dst) is None:
                    target[dst] = item.get("name") or None
            grouped.setdefault(kind, []).extend(items)
        part_of |= record_rows.part_of
    props = _NODE_PROPS[data_type]
    params: dict[str, Any] = {"nodes": [[rid, *map(mapped[rid][0].get, props), rid in new] for rid in write]}
    positions: dict[str, dict[Any, int]] = {}
    for t in _TARGETS.values():
        if not any(r.target == t.label for r in rels):
            continue
        keys = sorted(names[t.label])  # a stable lock order
        positions[t.label] = {key: i for i, key in enumerate(keys)}
        params[t.param] = [[k, names[t.label][k]] for k in keys] if t.named else keys
    for rel in rels:
        index = positions[rel.target]
        key = "name" if rel.target in ("Genre", "Style") else "dst"
        items = grouped.get(rel.kind, [])
        rows: list[list[Any]]
        if not rel.props:
            rows = [[src_index[i["src"]], index[i[key]]] for i in items]
        elif len(rel.props) == 1:
            (p1,) = rel.props
            rows = [[src_index[i["src"]], index[i[key]], i.get(p1)] for i in items]
        else:
            p1, p2 = rel.props
            rows = [[src_index[i["src"]], index[i[key]], i.get(p1), i.get(p2)] for i in items]
        params[f"r_{rel.kind}"] = rows
    if "Genre" in positions:
        styles, genres = positions["Style"], positions["Genre"]
        params["part_of"] = sorted([styles[s], genres[g]] for s, g in part_of)
    return params


# Owned relationships of an existing node, deleted before its record is re-written. Shared edges
# (MEMBER_OF, SUBLABEL_OF) lose only this record's flag and survive while the other side asserts them.
_DROP_OWNED: Final[dict[str, str]] = {
    "artists": """UNWIND $ids AS id MATCH (n:Artist {id: id})
        CALL (n) { MATCH (n)-[r:ALIAS_OF]->() DELETE r }
        CALL (n) { MATCH (n)-[r:MEMBER_OF]->() WHERE r.via_group IS NULL DELETE r }
        CALL (n) { MATCH (n)-[r:MEMBER_OF]->() REMOVE r.via_member }
        CALL (n) { MATCH (n)<-[r:MEMBER_OF]-() WHERE r.via_member IS NULL DELETE r }
        CALL (n) { MATCH (n)<-[r:MEMBER_OF]-() REMOVE r.via_group }""",
    "labels": """UNWIND $ids AS id MATCH (n:Label {id: id})
        CALL (n) { MATCH (n)-[r:SUBLABEL_OF]->() WHERE r.via_parent IS NULL DELETE r }
        CALL (n) { MATCH (n)-[r:SUBLABEL_OF]->() REMOVE r.via_child }
        CALL (n) { MATCH (n)<-[r:SUBLABEL_OF]-() WHERE r.via_child IS NULL DELETE r }
        CALL (n) { MATCH (n)<-[r:SUBLABEL_OF]-() REMOVE r.via_parent }""",
    "masters": """UNWIND $ids AS id MATCH (n:Master {id: id})
        CALL (n) { MATCH (n)-[r:BY|IS]->() DELETE r }""",
    "releases": """UNWIND $ids AS id MATCH (n:Release {id: id})
        CALL (n) { MATCH (n)-[r:BY|ON|DERIVED_FROM|IS]->() DELETE r }
        CALL (n) { MATCH (n)<-[r:CREDITED]-() DELETE r }""",
}

_STUB_NEIGHBOURS: Final = """UNWIND $ids AS id MATCH (:{label} {{id: id}})--(x)
    WHERE x.sha256 IS NULL AND NOT x:Genre AND NOT x:Style RETURN collect(DISTINCT elementId(x)) AS near"""
_DELETE_ORPHAN_STUBS: Final = (
    """UNWIND $ids AS eid MATCH (x) WHERE elementId(x) = eid AND NOT (x)--() DELETE x"""
)

# What every full node carries besides its record's properties (the module docstring).
_BOOKKEEPING: Final = ("sha256", "dump_version", "graph_model", "links_hash")

# Every property a full record writes, in the order of the node rows of `_WRITE`.
_NODE_PROPS: Final[dict[str, tuple[str, ...]]] = {
    "artists": ("name", "realname", "profile", *_BOOKKEEPING),
    "labels": ("name", "profile", *_BOOKKEEPING),
    "masters": ("title", "year", "main_release", *_BOOKKEEPING),
    "releases": ("title", "year", "released", "country", "formats", "is_main_release", *_BOOKKEEPING),
}

# Properties a full record sets; remove_stale strips them (and _BOOKKEEPING) to leave a stub.
_FULL_PROPS: Final[dict[str, tuple[str, ...]]] = {
    "artists": ("realname", "profile"),
    "labels": ("profile",),
    "masters": ("year", "main_release"),
    "releases": ("year", "released", "country", "formats", "is_main_release"),
}


_WRITE: Final[dict[str, str]] = {data_type: _write_statement(data_type) for data_type in _RELS}


def _q(text: str) -> LiteralString:
    """Our statements are built only from constants above, never from record data."""
    return text  # mypy treats LiteralString as str


def _label(data_type: str) -> str:
    try:
        return LABELS[data_type]
    except KeyError:
        raise ValueError(f"unknown data type {data_type!r}") from None


async def _run(tx: AsyncManagedTransaction, query: str, **params: Any) -> list[dict[str, Any]]:
    result = await tx.run(_q(query), **params)
    return [record.data() async for record in result]


@dataclass
class Batch:
    """The records of one batch (the newest message per id, by id) and what the mapping made of
    those that had to be written: kept across the retries of a transaction."""

    data_type: str
    records: dict[int, RecordMessage | RawRecord]
    mapped: dict[int, tuple[dict[str, Any], _Rows]] = field(default_factory=dict)
    bad: dict[int, str] = field(default_factory=dict)  # id -> why it cannot be mapped

    def part(self, ids: Sequence[int]) -> Batch:
        return Batch(self.data_type, {rid: self.records[rid] for rid in ids})

    def map(self, ids: Iterable[int]) -> None:
        """Map each record of `ids` on its own (so one bad shape is rejected alone)."""
        mapper = _MAPPERS[self.data_type]
        for rid in ids:
            if rid in self.mapped or rid in self.bad:
                continue
            msg = self.records[rid]
            rows = _Rows()
            try:
                record = (
                    msg.record if isinstance(msg, RecordMessage) else orjson.loads(memoryview(msg.record))
                )
                if not isinstance(record, dict):  # an unchanged item: write_tx never maps one
                    raise RecordShapeError("an unchanged item has no record to map")
                props = mapper(rid, record, rows)
            except (RecordShapeError, TypeError, AttributeError, KeyError, orjson.JSONDecodeError) as exc:
                self.bad[rid] = f"bad record shape: {exc}"
                continue
            props["sha256"] = msg.sha256
            props["dump_version"] = msg.version
            props["graph_model"] = GRAPH_MODEL
            props["links_hash"] = rows.links_hash()
            self.mapped[rid] = (props, rows)


def select_batch(
    data_type: str, messages: Sequence[RecordMessage | RawRecord]
) -> tuple[Batch, list[tuple[RecordMessage | RawRecord, str]]]:
    """The batch to write (newest version per id) and the messages refused outright (wrong type).
    Records are mapped later, once the hash check has said which must be written: an unchanged
    record (the bulk of a monthly update) is never mapped."""
    batch = Batch(data_type, {})
    rejected: list[tuple[RecordMessage | RawRecord, str]] = []
    for msg in latest_per_id(list(messages)):
        if msg.type != data_type:
            rejected.append((msg, f"message type {msg.type!r} on the {data_type} queue"))
        else:
            batch.records[msg.id] = msg
    return batch, rejected


async def write_tx(tx: AsyncManagedTransaction, batch: Batch) -> WriteResult:
    """One batch (from `select_batch`) inside the caller's transaction: hash-check its ids, then
    map and write what is new or changed (a record that cannot be mapped is rejected alone, so is
    an unchanged item the graph does not hold in its version: see the module docstring)."""
    data_type = batch.data_type
    label = _label(data_type)
    result = WriteResult()
    if not batch.records:
        return result
    # One result row holding a list: a row per record costs the driver more than Neo4j the lookup.
    [found] = await _run(
        tx,
        f"UNWIND $ids AS id MATCH (n:{label} {{id: id}}) "
        "RETURN collect([n.id, n.sha256, n.dump_version, n.graph_model, n.links_hash]) AS stored",
        ids=list(batch.records),
    )
    existing: dict[int, list[Any]] = {row[0]: row for row in found["stored"]}
    bumps: list[list[Any]] = []
    write: list[int] = []
    for rid, msg in batch.records.items():
        old = existing.get(rid)
        if old is not None and old[1] is not None and old[2] is not None:
            _, sha256, version, model, _ = old
            if version > msg.version:
                result.stale += 1
                continue
            current = sha256 == msg.sha256 and model == GRAPH_MODEL
            if current or msg.unchanged:
                # In this dump, so kept from the sweep; an unchanged item has no record to rewrite
                # a node of another sha256 or graph model with.
                if version < msg.version:
                    bumps.append([rid, msg.version])
                if current:
                    result.unchanged += 1
                elif sha256 == msg.sha256:
                    result.outdated += 1  # written by an older GRAPH_MODEL (see write_batch)
                else:
                    result.rejected.append((msg, unchanged_item_refusal("the graph", msg.sha256, sha256)))
                continue
        elif msg.unchanged:  # no node, or only a stub: nothing to keep
            result.rejected.append((msg, unchanged_item_refusal("the graph", msg.sha256, None)))
            continue
        write.append(rid)
    if bumps:
        await _run(
            tx,
            # Guarded: a newer version committed since the hash check is never set back.
            f"UNWIND $rows AS r MATCH (n:{label} {{id: r[0]}}) WHERE n.dump_version < r[1] "
            "SET n.dump_version = r[1]",
            rows=bumps,
        )
    batch.map(write)
    result.rejected += [(batch.records[rid], batch.bad[rid]) for rid in write if rid in batch.bad]
    write = [rid for rid in write if rid in batch.mapped]
    if not write:
        return result
    # A changed record whose relationships are those stored (same links_hash and mapping) only
    # gets its properties set; the other existing nodes (full or stub) are rebuilt.
    same_links = {
        rid
        for rid in write
        if rid in existing
        and existing[rid][3] == GRAPH_MODEL
        and existing[rid][4] == batch.mapped[rid][0]["links_hash"]
    }
    changed = [rid for rid in write if rid in existing and rid not in same_links]
    near: list[str] = []
    if changed:
        neighbours = await _run(tx, _STUB_NEIGHBOURS.format(label=label), ids=changed)
        near = neighbours[0]["near"] if neighbours else []
        await _run(tx, _DROP_OWNED[data_type], ids=changed)
    new = set(write).difference(existing)
    params = _write_params(data_type, write, batch.mapped, new, same_links)
    written = await _run(tx, _WRITE[data_type], **params)
    # The driver keeps a query's parameters on its result, which sits in a reference cycle: emptied
    # now, the row lists are freed at once instead of waiting for (and slowing) the cyclic GC.
    for rows in params.values():
        rows.clear()
    taken = written[0]["taken"] if written else []
    if not all(same for _, same in taken):
        # Another version of a record landed meanwhile: retry, the hash check then decides.
        ids = sorted(rid for rid, same in taken if not same)
        raise ConcurrentWriteError(f"{label} {ids[:5]} written meanwhile by another transaction")
    result.unchanged += len(taken)
    if near:
        # Stubs only the old version of a changed record pointed at carry nothing any more.
        await _run(tx, _DELETE_ORPHAN_STUBS, ids=near)
    result.written = len(write) - len(taken)
    return result


async def write_batch(
    driver: AsyncDriver,
    data_type: str,
    messages: Sequence[RecordMessage | RawRecord],
    database: str = "neo4j",
    timeout: float | None = None,
    parallel: int = 1,
) -> WriteResult:
    """Write one batch of records of `data_type`; idempotent.

    The batch is split into `parallel` contiguous id ranges, each written in its own transaction
    (concurrently, so Neo4j works on them on several cores); each record's hash check and writes
    stay in one transaction. A deadlock between them is transient: the driver retries that part,
    and the result counts it in `retries`.
    Records that cannot be mapped are returned in `rejected` (the rest is written). Store errors
    propagate: the caller decides between retrying (transient) and bisecting (permanent); parts
    that committed before are unchanged on the retry. `timeout` bounds each transaction (a lock
    held elsewhere then fails it instead of hanging).
    """
    _label(data_type)
    batch, rejected = select_batch(data_type, messages)
    attempts = 0

    async def attempt(tx: AsyncManagedTransaction, part: Batch) -> WriteResult:
        # execute_write re-runs this after a transient error (a deadlock): counted as a retry.
        nonlocal attempts
        attempts += 1
        return await write_tx(tx, part)

    work = unit_of_work(timeout=timeout)(attempt) if timeout else attempt

    async def write_part(part: Batch) -> WriteResult:
        async with driver.session(database=database) as session:
            return await session.execute_write(work, part)

    ids = list(batch.records)  # sorted by id
    size = max(1, -(-len(ids) // max(1, parallel)), _MIN_PART)
    parts = [batch.part(ids[i : i + size]) for i in range(0, len(ids), size)]
    result = WriteResult()
    if len(parts) == 1:
        result = await write_part(parts[0])
    elif parts:
        outcomes = await asyncio.gather(*(write_part(part) for part in parts), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
            result = result.merge(outcome)
    result.rejected = [*rejected, *result.rejected]
    result.retries = attempts - len(parts)
    if result.outdated:
        log.warning(
            "unchanged_records_of_an_older_graph_model",
            data_type=data_type,
            count=result.outdated,
            graph_model=GRAPH_MODEL,
            advice="run the extractor with --reprocess to rewrite them",
        )
    return result


async def await_fulltext_refresh(driver: AsyncDriver, database: str = "neo4j") -> None:
    """Wait until every committed write is visible to full-text searches (the autocomplete indexes
    are eventually consistent, see schema_init.neo4j_schema)."""
    await driver.execute_query(
        "CALL db.index.fulltext.awaitEventuallyConsistentIndexRefresh()", database_=database
    )


async def remove_stale(driver: AsyncDriver, data_type: str, version: str, database: str = "neo4j") -> int:
    """Remove full `data_type` records last seen in a dump older than `version`; return how many.

    Each one loses the relationships it owns and its record properties; it is deleted when nothing
    else points at it, else kept as a stub (id and name) for the records that still reference it.
    """
    label = _label(data_type)
    strip = ", ".join(f"n.{prop}" for prop in (*_BOOKKEEPING, *_FULL_PROPS[data_type]))
    drop_owned = _DROP_OWNED[data_type].replace("UNWIND $ids AS id MATCH (n:" + label + " {id: id})", "")
    query = f"""
        MATCH (n:{label}) WHERE n.dump_version < $version
        CALL (n) {{
            OPTIONAL MATCH (n)--(x) WHERE x.sha256 IS NULL AND NOT x:Genre AND NOT x:Style
            WITH n, collect(DISTINCT x) AS near
            {drop_owned}
            REMOVE {strip}
            WITH n, near
            CALL (n) {{ WITH n WHERE NOT (n)--() DELETE n }}
            UNWIND near AS x
            WITH DISTINCT x WHERE NOT (x)--()
            DELETE x
        }} IN TRANSACTIONS OF 1000 ROWS
        RETURN count(*) AS removed"""
    async with driver.session(database=database) as session:
        result = await session.run(_q(query), version=version)
        record = await result.single()
        removed = int(record["removed"]) if record else 0
    log.info(
        "stale_records_removed",
        data_type=data_type,
        version=version,
        removed=removed,
    )
    return removed
