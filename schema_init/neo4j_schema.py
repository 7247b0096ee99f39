"""Neo4j constraints and indexes (design §5). Every statement is idempotent (IF NOT EXISTS)."""

from __future__ import annotations

from typing import Final

from neo4j import AsyncDriver, AsyncSession

from common.logging import get_logger

log = get_logger(__name__)

ENTITY_LABELS: Final = ("Artist", "Label", "Master", "Release")

STATEMENTS: Final[tuple[str, ...]] = (
    # Unique keys; each constraint is backed by a range index.
    *(
        f"CREATE CONSTRAINT {label.lower()}_id IF NOT EXISTS FOR (n:{label}) REQUIRE n.id IS UNIQUE"
        for label in (*ENTITY_LABELS, "User")
    ),
    "CREATE CONSTRAINT genre_name IF NOT EXISTS FOR (n:Genre) REQUIRE n.name IS UNIQUE",
    "CREATE CONSTRAINT style_name IF NOT EXISTS FOR (n:Style) REQUIRE n.name IS UNIQUE",
    # Exact-name lookups used by explore, expand and trends.
    "CREATE INDEX artist_name IF NOT EXISTS FOR (n:Artist) ON (n.name)",
    "CREATE INDEX label_name IF NOT EXISTS FOR (n:Label) ON (n.name)",
    "CREATE INDEX master_title IF NOT EXISTS FOR (n:Master) ON (n.title)",
    "CREATE INDEX release_title IF NOT EXISTS FOR (n:Release) ON (n.title)",
    "CREATE INDEX release_year IF NOT EXISTS FOR (n:Release) ON (n.year)",
    # Sweeping records that a newer dump no longer contains.
    *(
        f"CREATE INDEX {label.lower()}_dump_version IF NOT EXISTS FOR (n:{label}) ON (n.dump_version)"
        for label in ENTITY_LABELS
    ),
    # Autocomplete: the full-text indexes (FULLTEXT_INDEXES below) are created after these.
)


# Autocomplete: one full-text index per searchable type so a type filter stays an index read.
# Eventually consistent: a commit only queues its Lucene updates and a background thread applies
# them (a few ms later), so Lucene work stays off the writers' commit path and two writer
# transactions do not queue behind one index writer. A freshly written name shows in autocomplete
# after that short delay; `CALL db.index.fulltext.awaitEventuallyConsistentIndexRefresh()` waits it out.
FULLTEXT_INDEXES: Final[dict[str, str]] = {
    "artist_name_fulltext": "(n:Artist) ON EACH [n.name]",
    "label_name_fulltext": "(n:Label) ON EACH [n.name]",
    "master_title_fulltext": "(n:Master) ON EACH [n.title]",
    "release_title_fulltext": "(n:Release) ON EACH [n.title]",
    "genre_style_name_fulltext": "(n:Genre|Style) ON EACH [n.name]",
}
EVENTUALLY_CONSISTENT: Final = "fulltext.eventually_consistent"


def fulltext_statement(name: str) -> str:
    return (
        f"CREATE FULLTEXT INDEX {name} IF NOT EXISTS FOR {FULLTEXT_INDEXES[name]} "
        f"OPTIONS {{indexConfig: {{`{EVENTUALLY_CONSISTENT}`: true}}}}"
    )


async def _fulltext_to_rebuild(session: AsyncSession) -> list[str]:
    """Full-text indexes of ours that exist with other settings (made by an older schema-init)."""
    result = await session.run("SHOW FULLTEXT INDEXES YIELD name, options RETURN name, options")
    stale = []
    async for row in result:
        config = (row["options"] or {}).get("indexConfig") or {}
        if row["name"] in FULLTEXT_INDEXES and config.get(EVENTUALLY_CONSISTENT) is not True:
            stale.append(str(row["name"]))
    return stale


async def apply_neo4j_schema(driver: AsyncDriver, database: str = "neo4j") -> int:
    """Create every constraint and index, wait for them to come online; return how many statements ran.

    A failing statement raises: a half-built schema must not look like success.
    """
    async with driver.session(database=database) as session:
        for statement in STATEMENTS:
            result = await session.run(statement)
            await result.consume()
        # An index option cannot be altered: an older full-text index is dropped and rebuilt
        # (autocomplete misses its names until the rebuild is online, awaited below).
        for name in await _fulltext_to_rebuild(session):
            log.info("neo4j_fulltext_index_rebuilt", index=name)
            result = await session.run(f"DROP INDEX {name} IF EXISTS")
            await result.consume()
        for name in FULLTEXT_INDEXES:
            result = await session.run(fulltext_statement(name))
            await result.consume()
        result = await session.run("CALL db.awaitIndexes(300)")
        await result.consume()
    count = len(STATEMENTS) + len(FULLTEXT_INDEXES)
    log.info("neo4j_schema_applied", statements=count)
    return count
