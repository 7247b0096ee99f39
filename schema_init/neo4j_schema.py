"""Neo4j constraints and indexes (design §5). Every statement is idempotent (IF NOT EXISTS)."""

from __future__ import annotations

from typing import Final

from neo4j import AsyncDriver, AsyncSession
from neo4j.exceptions import Neo4jError

from common.logging import get_logger

log = get_logger(__name__)

ENTITY_LABELS: Final = ("Artist", "Label", "Master", "Release")


class SchemaError(RuntimeError):
    """A schema statement failed (e.g. a uniqueness constraint over nodes that break it)."""


# Autocomplete: one full-text index per searchable type, so a type filter stays an index read.
# Eventually consistent: a commit hands its Lucene updates to a background thread instead of
# refreshing the index itself, which cost about an eighth of the graph write rate (each commit's
# refresh wrote a small segment that Lucene then had to merge). Searches lag commits by milliseconds;
# graphinator waits for them to catch up before it reports a dump version done.
FULLTEXT_INDEXES: Final[dict[str, tuple[str, str]]] = {
    "artist_name_fulltext": ("Artist", "name"),
    "label_name_fulltext": ("Label", "name"),
    "master_title_fulltext": ("Master", "title"),
    "release_title_fulltext": ("Release", "title"),
    "genre_style_name_fulltext": ("Genre|Style", "name"),
}
_FULLTEXT_OPTIONS: Final = "OPTIONS {indexConfig: {`fulltext.eventually_consistent`: true}}"

STATEMENTS: Final[tuple[str, ...]] = (
    # Unique keys; each constraint is backed by a range index.
    *(
        f"CREATE CONSTRAINT {label.lower()}_id IF NOT EXISTS FOR (n:{label}) REQUIRE n.id IS UNIQUE"
        for label in (*ENTITY_LABELS, "User")
    ),
    "CREATE CONSTRAINT genre_name IF NOT EXISTS FOR (n:Genre) REQUIRE n.name IS UNIQUE",
    "CREATE CONSTRAINT style_name IF NOT EXISTS FOR (n:Style) REQUIRE n.name IS UNIQUE",
    # Exact-name lookups: artist_name, label_name and release_title serve explore, expand and trends
    # by name; master_title and release_year no api route uses (kept for Cypher users: the write
    # cost of both was within noise of none).
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
)
FULLTEXT_STATEMENTS: Final[tuple[str, ...]] = tuple(
    f"CREATE FULLTEXT INDEX {name} IF NOT EXISTS FOR (n:{labels}) ON EACH [n.{prop}] {_FULLTEXT_OPTIONS}"
    for name, (labels, prop) in FULLTEXT_INDEXES.items()
)


async def _drop_outdated_fulltext(session: AsyncSession) -> list[str]:
    """Drop our full-text indexes built by an older schema (not eventually consistent) so the
    CREATE below rebuilds them from the stored nodes; returns their names."""
    result = await session.run(
        "SHOW FULLTEXT INDEXES YIELD name, options "
        "WHERE name IN $names AND NOT coalesce(options.indexConfig.`fulltext.eventually_consistent`, false) "
        "RETURN collect(name) AS names",
        names=list(FULLTEXT_INDEXES),
    )
    record = await result.single()
    outdated: list[str] = record["names"] if record else []
    for name in outdated:
        await (await session.run(f"DROP INDEX {name} IF EXISTS")).consume()
        log.info("neo4j_fulltext_index_rebuilt", index=name, reason="now eventually consistent")
    return outdated


async def apply_neo4j_schema(driver: AsyncDriver, database: str = "neo4j") -> int:
    """Create every constraint and index, wait for them to come online; return how many statements ran.

    A failing statement raises SchemaError: a half-built schema must not look like success.
    """
    async with driver.session(database=database) as session:
        await _drop_outdated_fulltext(session)
        for statement in (*STATEMENTS, *FULLTEXT_STATEMENTS, "CALL db.awaitIndexes(300)"):
            try:
                result = await session.run(statement)
                await result.consume()
            except Neo4jError as exc:
                raise SchemaError(f"{statement.split(' IF NOT EXISTS')[0]} failed: {exc.message}") from exc
    count = len(STATEMENTS) + len(FULLTEXT_STATEMENTS)
    log.info("neo4j_schema_applied", statements=count)
    return count
