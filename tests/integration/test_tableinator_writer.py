"""tableinator.writer against the real PostgreSQL: typed columns, JSONB, full-text search,
idempotency, changes, versions and the sweep of rows missing from a newer dump."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from psycopg import AsyncConnection
from psycopg.errors import DataError
from psycopg_pool import AsyncConnectionPool

from common.raw_messages import decode_message
from tableinator import writer
from tableinator.writer import remove_stale, seen_table, write_batch
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

Pool = AsyncConnectionPool[AsyncConnection[dict[str, Any]]]


async def rows(pool: Pool, sql: str, *params: Any) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(sql, params)
        return await cur.fetchall()


async def seen_in(pool: Pool, table: str = "releases") -> dict[int, str]:
    """id -> the dump each record is marked as last seen in."""
    marks = await rows(pool, f"SELECT id, dump_version FROM {seen_table(table)}")
    return {r["id"]: r["dump_version"] for r in marks}


async def test_records_land_in_typed_columns_and_jsonb(clean_postgres: Pool) -> None:
    pool = clean_postgres
    result = await write_batch(
        pool, "releases", [message("releases", RELEASE_1), message("releases", RELEASE_2)]
    )
    assert (result.written, result.unchanged, result.rejected) == (2, 0, [])
    got = await rows(
        pool,
        "SELECT id, sha256, dump_version, title, year, country, master_id, data FROM releases ORDER BY id",
    )
    assert got[0] == {
        "id": 1,
        "sha256": message("releases", RELEASE_1).sha256,
        "dump_version": V1,
        "title": "Stockholm",
        "year": 1999,
        "country": "Sweden",
        "master_id": 1660109,
        "data": RELEASE_1,
    }
    assert await seen_in(pool) == {1: V1, 2: V1}
    assert got[1]["data"]["labels"] == [
        {"id": 5, "name": "Svek", "catno": "SK 026"},
        {"id": 5, "name": "Svek", "catno": "SK026"},
    ]
    # Full-text search over the generated tsvector.
    found = await rows(
        pool, "SELECT id FROM releases WHERE search @@ plainto_tsquery('simple', 'knockin boots')"
    )
    assert found == [{"id": 2}]

    await write_batch(pool, "artists", [message("artists", ARTIST_2), message("artists", ARTIST_26)])
    await write_batch(pool, "labels", [message("labels", LABEL_107799)])
    await write_batch(pool, "masters", [message("masters", MASTER_2280259)])
    assert await rows(pool, "SELECT id, name FROM artists ORDER BY id") == [
        {"id": 2, "name": "Mr. James Barth & A.D."},
        {"id": 26, "name": "Alexi Delano"},
    ]
    assert await rows(
        pool, "SELECT id FROM artists WHERE search @@ plainto_tsquery('simple', 'lekebusch')"
    ) == [{"id": 2}]
    assert await rows(pool, "SELECT id, name, data->'parent_label'->>'name' AS parent FROM labels") == [
        {"id": 107799, "name": "Novalis", "parent": "AVC Audio Video Communications AG"}
    ]
    assert await rows(pool, "SELECT id, title, year FROM masters") == [
        {"id": 2280259, "title": "The Complete Bach Edition", "year": 2012}
    ]


async def test_redelivered_batch_changes_nothing(clean_postgres: Pool) -> None:
    pool = clean_postgres
    batch = [message("releases", RELEASE_1), message("releases", RELEASE_2)]
    await write_batch(pool, "releases", batch)
    before = await rows(pool, "SELECT * FROM releases ORDER BY id")
    again = await write_batch(pool, "releases", [*batch, *batch])
    assert (again.written, again.unchanged) == (0, 2)
    assert await rows(pool, "SELECT * FROM releases ORDER BY id") == before  # updated_at included
    assert await seen_in(pool) == {1: V1, 2: V1}


async def test_changed_record_and_versions(clean_postgres: Pool) -> None:
    pool = clean_postgres
    await write_batch(pool, "releases", [message("releases", RELEASE_1), message("releases", RELEASE_2)])
    new = changed(RELEASE_2, title="Knockin' Boots Vol. 2", year=None, country=None, master_id=None)
    result = await write_batch(
        pool, "releases", [message("releases", new, V2), message("releases", RELEASE_1, V2)]
    )
    assert (result.written, result.unchanged) == (1, 1)
    got = await rows(
        pool, "SELECT id, title, year, country, master_id, dump_version, data FROM releases ORDER BY id"
    )
    # Row 1 keeps the content (and version) it was written from; both are marked seen in V2.
    assert [(r["id"], r["dump_version"]) for r in got] == [(1, V1), (2, V2)]
    assert await seen_in(pool) == {1: V2, 2: V2}
    assert got[1]["title"] == "Knockin' Boots Vol. 2"
    assert (got[1]["year"], got[1]["country"], got[1]["master_id"]) == (None, None, None)
    assert got[1]["data"] == new
    # A late redelivery of the older version never rolls the row back.
    late = await write_batch(pool, "releases", [message("releases", RELEASE_2, V1)])
    assert (late.written, late.stale) == (0, 1)
    assert (await rows(pool, "SELECT title FROM releases WHERE id = 2"))[0][
        "title"
    ] == "Knockin' Boots Vol. 2"
    assert await seen_in(pool) == {1: V2, 2: V2}


@pytest.mark.parametrize("form", ["decoded", "raw JSON"])
async def test_unchanged_items_bump_the_rows_held_and_reject_the_others(
    clean_postgres: Pool, form: str
) -> None:
    """Unchanged items (no record) never become rows: a row of that sha256 is marked seen in the
    new dump (so the sweep keeps it); a row of another sha256 is kept too but the item is rejected,
    as is one for a record the table lacks."""
    pool = clean_postgres
    r1, r2, r3, r5 = (message("releases", r) for r in (RELEASE_1, RELEASE_2, *map(synthetic_release, (3, 5))))
    await write_batch(pool, "releases", [r1, r2, r3, r5])
    before = await rows(pool, "SELECT * FROM releases ORDER BY id")

    r3_changed = message("releases", changed(synthetic_release(3), title="Retitled"), V2)
    batch: list[Any] = [
        unchanged(message("releases", RELEASE_1, V2)),  # the sha256 the table holds
        unchanged(message("releases", changed(RELEASE_2, title="Missed"), V2)),  # another sha256
        unchanged(message("releases", changed(RELEASE_1, id=99), V2)),  # no row
        r3_changed,
    ]
    if form == "raw JSON":
        batch = [decode_message(m.to_bytes()) for m in batch]
        assert all(type(m).__name__ == "RawRecord" for m in batch)
    result = await write_batch(pool, "releases", batch)

    assert (result.written, result.unchanged, result.stale) == (1, 1, 0)
    reasons = {m.id: why for m, why in result.rejected}
    assert sorted(reasons) == [2, 99]
    assert f"but table releases holds sha256 {r2.sha256[:12]}" in reasons[2]
    assert "table releases does not hold the record" in reasons[99]
    assert all("run the extractor with --reprocess" in why for why in reasons.values())
    after = await rows(pool, "SELECT * FROM releases ORDER BY id")
    assert await seen_in(pool) == {1: V2, 2: V2, 3: V2, 5: V1}
    assert (after[2]["title"], after[2]["sha256"], after[2]["dump_version"]) == (
        "Retitled",
        r3_changed.sha256,
        V2,
    )
    # Apart from the rewritten row 3, no row changed at all: no row for 99, rows 1 and 2 keep
    # their record, hash and version (updated_at too: a mark is no rewrite).
    assert [r for r in after if r["id"] != 3] == [r for r in before if r["id"] != 3]

    # A first load (no row exists): the new record lands, the unchanged item alone is rejected.
    new = message("releases", synthetic_release(7), V2)
    first = await write_batch(
        pool, "releases", [new, unchanged(message("releases", synthetic_release(8), V2))]
    )
    assert (first.written, [m.id for m, _ in first.rejected]) == (1, [8])
    # An unchanged item older than the row is stale, not rejected, whatever its sha256.
    late = await write_batch(
        pool, "releases", [unchanged(message("releases", changed(RELEASE_2, title="Old"), V1))]
    )
    assert (late.stale, late.rejected) == (1, [])
    assert (await seen_in(pool))[2] == V2
    # The sweep of V2 keeps every row marked seen in it (the mismatched row 2 too).
    assert await remove_stale(pool, "releases", V2) == 1
    assert await rows(pool, "SELECT id, sha256 FROM releases ORDER BY id") == [
        {"id": 1, "sha256": r1.sha256},
        {"id": 2, "sha256": r2.sha256},
        {"id": 3, "sha256": r3_changed.sha256},
        {"id": 7, "sha256": new.sha256},
    ]


async def test_remove_stale_deletes_rows_absent_from_the_newer_dump(clean_postgres: Pool) -> None:
    pool = clean_postgres
    await write_batch(pool, "releases", [message("releases", RELEASE_1), message("releases", RELEASE_2)])
    await write_batch(pool, "releases", [message("releases", RELEASE_2, V2)])
    assert await remove_stale(pool, "releases", V2) == 1
    assert await rows(pool, "SELECT id FROM releases") == [{"id": 2}]
    assert await seen_in(pool) == {2: V2}
    assert await remove_stale(pool, "releases", V2) == 0


async def test_the_sweep_walks_every_chunk_and_keeps_what_a_newer_dump_marked(
    clean_postgres: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stale records spread among kept ones, swept 3 marks at a time: every chunk is reached, and
    a mark for a row that no longer exists (an orphan) goes too without counting as a record."""
    pool = clean_postgres
    monkeypatch.setattr(writer, "SWEEP_CHUNK", 3)
    every = [message("releases", synthetic_release(i)) for i in range(1, 21)]
    await write_batch(pool, "releases", every)
    kept = [m for m in every if m.id % 3 == 0]
    await write_batch(pool, "releases", [message("releases", synthetic_release(m.id), V2) for m in kept])
    async with pool.connection() as conn:
        await conn.execute("INSERT INTO releases_seen (id, dump_version) VALUES (500, %s)", (V1,))

    assert await remove_stale(pool, "releases", V2) == 20 - len(kept)
    assert [r["id"] for r in await rows(pool, "SELECT id FROM releases ORDER BY id")] == [m.id for m in kept]
    assert await seen_in(pool) == {m.id: V2 for m in kept}


async def test_bad_typed_field_is_rejected_alone_and_a_db_error_raises(clean_postgres: Pool) -> None:
    pool = clean_postgres
    bad = changed(RELEASE_1, id=99, year="nineteen")
    result = await write_batch(pool, "releases", [message("releases", bad), message("releases", RELEASE_2)])
    assert result.written == 1
    assert [(m.id, "year must be int" in why) for m, why in result.rejected] == [(99, True)]
    # PostgreSQL refuses a NUL character in JSONB: the whole batch fails (the consumer bisects).
    nul = changed(RELEASE_1, id=98, notes="bad \u0000 byte")
    with pytest.raises(DataError):
        await write_batch(pool, "releases", [message("releases", nul), message("releases", RELEASE_1)])
    assert await rows(pool, "SELECT id FROM releases ORDER BY id") == [{"id": 2}]


async def test_raw_and_decoded_messages_store_the_same_rows(clean_postgres: Pool) -> None:
    pool = clean_postgres
    records = [synthetic_release(i) for i in range(1, 6)]
    await write_batch(pool, "releases", [message("releases", r) for r in records])
    decoded = await rows(pool, "SELECT * FROM releases ORDER BY id")
    async with pool.connection() as conn:
        await conn.execute("TRUNCATE releases, releases_seen")
    raw = [decode_message(message("releases", r).to_bytes()) for r in records]
    assert all(type(m).__name__ == "RawRecord" for m in raw)
    result = await write_batch(pool, "releases", raw)  # type: ignore[arg-type]
    assert (result.written, result.unchanged) == (5, 0)
    again = await rows(pool, "SELECT * FROM releases ORDER BY id")
    strip = [{k: v for k, v in r.items() if k != "updated_at"} for r in again]
    assert strip == [{k: v for k, v in r.items() if k != "updated_at"} for r in decoded]
    assert again[0]["data"] == records[0]
    bad = decode_message(message("releases", changed(RELEASE_1, id=97, year="1999")).to_bytes())
    result = await write_batch(pool, "releases", [bad])  # type: ignore[list-item]
    assert [(m.id, "year must be int" in why) for m, why in result.rejected] == [(97, True)]


async def test_concurrent_first_loads_of_the_same_records_both_succeed(clean_postgres: Pool) -> None:
    """Two replicas loading the same new ids at once: the loser of the race merges instead."""
    pool = clean_postgres
    for round_ in range(3):
        batch = [message("releases", synthetic_release(1000 * round_ + i)) for i in range(1, 200)]
        first, second = await asyncio.gather(
            write_batch(pool, "releases", batch), write_batch(pool, "releases", batch)
        )
        assert first.written + second.written == len(batch)
        assert first.unchanged + second.unchanged == len(batch)
        assert not first.rejected and not second.rejected
    assert (await rows(pool, "SELECT count(*) AS c FROM releases"))[0]["c"] == 3 * 199
