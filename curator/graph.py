"""Neo4j side of a sync: `(:User {id})-[:COLLECTED|WANTS]->(:Release)`.

One write transaction per list (the driver retries it on transient errors such as deadlocks):
- the User node (its `discogs_username` always follows the current link);
- a stub Release `{id, title, year, stub: true}` from the API's basic information when the dump
  has not provided the release yet, with BY/ON/IS links to (stub) artists, labels, genres and
  styles so listings, stats and recommendations work before the next dump; a real dump record
  replaces the stub's properties and outgoing relationships;
- one COLLECTED relationship per owned instance (`instance_id`, `rating`, `folder_id`,
  `date_added`) or one WANTS per wanted release (`rating`, `date_added`, `notes`), stamped with
  the sync id; whatever this sync did not stamp is removed, and stub releases nobody references
  any more are deleted.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from neo4j import AsyncDriver, AsyncManagedTransaction, unit_of_work

BATCH: Final = 500

_USER = """
MERGE (u:User {id: $user_id})
SET u.discogs_username = $username, u.synced_at = $synced_at
"""

_STUBS = """
UNWIND $items AS item
MERGE (r:Release {id: item.release_id})
  ON CREATE SET r.title = item.title, r.year = item.year, r.stub = true
WITH r, item WHERE r.stub = true AND r.sha256 IS NULL
FOREACH (a IN item.artists |
  MERGE (ar:Artist {id: a.id}) ON CREATE SET ar.name = a.name, ar.stub = true
  MERGE (r)-[:BY]->(ar))
FOREACH (l IN item.labels |
  MERGE (lb:Label {id: l.id}) ON CREATE SET lb.name = l.name, lb.stub = true
  MERGE (r)-[on:ON]->(lb) SET on.catno = l.catno)
FOREACH (g IN item.genres | MERGE (gn:Genre {name: g}) MERGE (r)-[:IS]->(gn))
FOREACH (s IN item.styles | MERGE (st:Style {name: s}) MERGE (r)-[:IS]->(st))
"""

_COLLECTED = """
MATCH (u:User {id: $user_id})
UNWIND $items AS item
MATCH (r:Release {id: item.release_id})
MERGE (u)-[c:COLLECTED {instance_id: item.instance_id}]->(r)
SET c.rating = item.rating, c.folder_id = item.folder_id, c.date_added = item.date_added,
    c.sync_id = $sync_id, c.synced_at = $synced_at
"""

_WANTS = """
MATCH (u:User {id: $user_id})
UNWIND $items AS item
MATCH (r:Release {id: item.release_id})
MERGE (u)-[w:WANTS]->(r)
SET w.rating = item.rating, w.date_added = item.date_added, w.notes = item.notes,
    w.sync_id = $sync_id, w.synced_at = $synced_at
"""

_PRUNE = """
MATCH (:User {id: $user_id})-[x:%s]->(r:Release)
WHERE x.sync_id IS NULL OR x.sync_id <> $sync_id
WITH x, r.id AS release_id
DELETE x
RETURN collect(DISTINCT release_id) AS release_ids, count(*) AS removed
"""

_DROP_ORPHAN_STUBS = """
UNWIND $release_ids AS rid
MATCH (r:Release {id: rid})
// sha256 is set only by graphinator: a release loaded from the dump is never an orphan stub.
WHERE r.stub = true AND r.sha256 IS NULL AND NOT EXISTS { (:User)-->(r) }
DETACH DELETE r
"""


async def write_list(
    driver: AsyncDriver,
    kind: Literal["COLLECTED", "WANTS"],
    *,
    user_id: str,
    username: str,
    sync_id: str,
    synced_at: str,
    items: list[dict[str, Any]],
    database: str | None = None,
    timeout: float | None = None,
) -> int:
    """Write one list for one user (see the module doc); returns how many relationships were removed.

    Each item: release_id, title, year, artists [{id, name}], labels [{id, name, catno}], genres,
    styles, rating, date_added, and instance_id + folder_id (collection) or notes (wants).
    """

    async def work(tx: AsyncManagedTransaction) -> int:
        await (await tx.run(_USER, user_id=user_id, username=username, synced_at=synced_at)).consume()
        for start in range(0, len(items), BATCH):
            chunk = items[start : start + BATCH]
            await (await tx.run(_STUBS, items=chunk)).consume()
            rel_query = _COLLECTED if kind == "COLLECTED" else _WANTS
            await (
                await tx.run(rel_query, user_id=user_id, items=chunk, sync_id=sync_id, synced_at=synced_at)
            ).consume()
        result = await tx.run(_PRUNE % kind, user_id=user_id, sync_id=sync_id)
        record = await result.single()
        removed_ids = list(record["release_ids"]) if record else []
        removed = int(record["removed"]) if record else 0
        if removed_ids:
            await (await tx.run(_DROP_ORPHAN_STUBS, release_ids=removed_ids)).consume()
        return removed

    async with driver.session(database=database) as session:
        return await session.execute_write(unit_of_work(timeout=timeout)(work) if timeout else work)
