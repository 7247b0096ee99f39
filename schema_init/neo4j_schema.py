"""Neo4j constraints and indexes (design §5). Every statement is idempotent (IF NOT EXISTS)."""

from __future__ import annotations

from typing import Final

from neo4j import AsyncDriver

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
    # Autocomplete: one full-text index per searchable type so a type filter stays an index read.
    "CREATE FULLTEXT INDEX artist_name_fulltext IF NOT EXISTS FOR (n:Artist) ON EACH [n.name]",
    "CREATE FULLTEXT INDEX label_name_fulltext IF NOT EXISTS FOR (n:Label) ON EACH [n.name]",
    "CREATE FULLTEXT INDEX master_title_fulltext IF NOT EXISTS FOR (n:Master) ON EACH [n.title]",
    "CREATE FULLTEXT INDEX release_title_fulltext IF NOT EXISTS FOR (n:Release) ON EACH [n.title]",
    "CREATE FULLTEXT INDEX genre_style_name_fulltext IF NOT EXISTS FOR (n:Genre|Style) ON EACH [n.name]",
)


async def apply_neo4j_schema(driver: AsyncDriver, database: str = "neo4j") -> int:
    """Create every constraint and index, wait for them to come online; return how many statements ran.

    A failing statement raises: a half-built schema must not look like success.
    """
    async with driver.session(database=database) as session:
        for statement in STATEMENTS:
            result = await session.run(statement)
            await result.consume()
        result = await session.run("CALL db.awaitIndexes(300)")
        await result.consume()
    log.info("neo4j_schema_applied", statements=len(STATEMENTS))
    return len(STATEMENTS)
