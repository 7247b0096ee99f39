"""Record batches -> PostgreSQL (design §5), one transaction per batch.

Each table has a narrow twin, `<type>_seen (id, dump_version)`: the dump each record was last seen
in. The entity table's own `dump_version` is the dump its content was written from. Marking a
record seen is a small in-place update of the twin, not a rewrite of the wide row and its indexes
(migration 0004 says why).

Each batch is COPYed into a per-connection temporary staging table, then merged:
1. rows whose stored sha256 equals the message's are only marked seen in the message's dump; so
   is a row of another sha256 whose message is an unchanged item (`"record": null`,
   docs/records.md): still in the dump, kept from the sweep, but it has no record to replace the
   row with and is rejected, as is an unchanged item with no row (both ask for `--reprocess`);
2. `INSERT ... ON CONFLICT (id) DO UPDATE ... WHERE t.sha256 IS DISTINCT FROM excluded.sha256
   AND t.dump_version <= excluded.dump_version` writes new and changed rows and ignores a message
   from an older dump than the row's (so a late redelivery never rolls a row back); written rows
   are marked seen too.
Typed columns (name/title, year, country, master_id) come from the record; `data` is the whole
normalised record as JSONB. So a new typed column is filled by its migration, from `data`: unlike
the graph (graphinator's GRAPH_MODEL), skipping an unchanged sha256 never leaves a row behind.
Rows are merged and marked in id order so concurrent replicas lock in one order (the entity rows
first, then their marks).

`remove_stale(conn, type, version)` deletes the records last seen in a dump older than `version`,
walking `<type>_seen` by id in chunks (each its own transaction), so a sweep of millions never
holds one giant transaction and reads the narrow table once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, LiteralString

import msgspec
import orjson
from psycopg import AsyncConnection
from psycopg.errors import UniqueViolation
from psycopg.rows import tuple_row
from psycopg.types.json import set_json_dumps
from psycopg_pool import AsyncConnectionPool

from common.logging import get_logger
from common.messages import RecordMessage
from common.raw_messages import RawRecord
from common.writes import WriteResult, latest_per_id, unchanged_item_refusal

log = get_logger(__name__)

PoolOrConn = AsyncConnectionPool[AsyncConnection[Any]] | AsyncConnection[Any]


@dataclass(frozen=True)
class _Table:
    name: str
    # typed column -> (record key, expected python type)
    columns: tuple[tuple[str, str, type], ...]


TABLES: Final = {
    "artists": _Table("artists", (("name", "name", str),)),
    "labels": _Table("labels", (("name", "name", str),)),
    "masters": _Table("masters", (("title", "title", str), ("year", "year", int))),
    "releases": _Table(
        "releases",
        (
            ("title", "title", str),
            ("year", "year", int),
            ("country", "country", str),
            ("master_id", "master_id", int),
        ),
    ),
}
_SQL_TYPES: Final = {str: "text", int: "bigint"}
_COPY_TYPES: Final = {str: "text", int: "int8"}
SWEEP_CHUNK: Final = 20_000


def _q(text: str) -> LiteralString:
    """Statements are built only from the constant table definitions above."""
    return text  # mypy treats LiteralString as str


def _table(data_type: str) -> _Table:
    try:
        return TABLES[data_type]
    except KeyError:
        raise ValueError(f"unknown data type {data_type!r}") from None


def seen_table(data_type: str) -> str:
    """The narrow table holding the dump each `data_type` record was last seen in."""
    return f"{_table(data_type).name}_seen"


def _typed_decoder(table: _Table) -> msgspec.json.Decoder[Any]:
    fields = [(key, kind | None, None) for _, key, kind in table.columns]
    return msgspec.json.Decoder(msgspec.defstruct(f"_{table.name}_typed", fields))


_TYPED: Final = {name: _typed_decoder(table) for name, table in TABLES.items()}


def _check(table: _Table, record: dict[str, Any]) -> list[Any]:
    values: list[Any] = []
    for _, key, kind in table.columns:
        value = record.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise ValueError(f"{key} must be {kind.__name__} or null, got {type(value).__name__}")
        values.append(value)
    return values


def _row(table: _Table, msg: RecordMessage | RawRecord) -> tuple[Any, ...]:
    if isinstance(msg, RawRecord):
        data = bytes(msg.record)
        try:
            typed = _TYPED[table.name].decode(data)
        except msgspec.ValidationError as exc:
            _check(table, orjson.loads(data))  # raises with the same reason as a decoded record
            raise ValueError(str(exc)) from None
        values = [getattr(typed, key) for _, key, _ in table.columns]
        return (msg.id, msg.sha256, msg.version, *values, data)
    if msg.record is None:  # an unchanged item: _upsert never builds a row for one
        raise ValueError("an unchanged item has no record to store")
    # binary COPY: jsonb through the cursor's dumper (raw bytes as they are, a dict via orjson)
    return (msg.id, msg.sha256, msg.version, *_check(table, msg.record), msg.record)


def _jsonb_dumps(obj: Any) -> bytes:
    return obj if type(obj) is bytes else orjson.dumps(obj)


@asynccontextmanager
async def _connection(pool_or_conn: PoolOrConn) -> AsyncIterator[AsyncConnection[Any]]:
    if isinstance(pool_or_conn, AsyncConnectionPool):
        async with pool_or_conn.connection() as conn:
            yield conn
    else:
        yield pool_or_conn


async def write_batch(
    pool_or_conn: PoolOrConn,
    data_type: str,
    messages: Sequence[RecordMessage | RawRecord],
    *,
    lock_timeout_ms: int = 0,
) -> WriteResult:
    """Upsert one batch of `data_type` records in one transaction; idempotent.

    Records whose typed fields have the wrong type are returned in `rejected` (the rest is
    written); store errors propagate for the caller to retry (transient) or bisect (permanent).
    `lock_timeout_ms` > 0 turns a long wait on a row lock into a (transient) LockNotAvailable.

    The stored hashes of the batch's ids are read first: an unchanged record is only marked seen
    in its dump (its body is never sent), an older one is skipped, and only new or changed
    records are COPYed and merged. The merge keeps its own guard (`sha256 IS DISTINCT FROM`,
    `dump_version <=`), so a competing replica between the read and the merge is harmless.
    """
    table = _table(data_type)
    result = WriteResult()
    candidates: list[RecordMessage | RawRecord] = []
    for msg in latest_per_id(list(messages)):
        if msg.type != data_type:
            result.rejected.append((msg, f"message type {msg.type!r} on the {data_type} queue"))
        else:
            candidates.append(msg)
    if not candidates:
        return result

    try:
        return await _upsert(pool_or_conn, table, candidates, result, lock_timeout_ms, direct=True)
    except UniqueViolation:
        # A competing replica inserted one of these ids after our read: merge instead.
        return await _upsert(pool_or_conn, table, candidates, result, lock_timeout_ms, direct=False)


async def _upsert(
    pool_or_conn: PoolOrConn,
    table: _Table,
    candidates: list[RecordMessage | RawRecord],
    rejected: WriteResult,
    lock_timeout_ms: int,
    *,
    direct: bool,
) -> WriteResult:
    """One transaction: read the stored hashes, write the new and changed, mark them and the
    unchanged seen.

    When none of the records to write exists yet (a first load), they are COPYed straight into the
    table (`direct`); otherwise through the staging table and the guarded merge."""
    result = WriteResult(rejected=list(rejected.rejected))
    sql = _statements(table)
    store = f"table {table.name}"
    async with _connection(pool_or_conn) as conn, conn.transaction():
        await conn.execute(
            _q(sql.setup % {"lock": int(lock_timeout_ms)}) if lock_timeout_ms > 0 else sql.setup_nolock
        )
        async with conn.cursor(binary=True, row_factory=tuple_row) as cur:
            set_json_dumps(_jsonb_dumps, context=cur)
            await cur.execute(sql.existing, ([m.id for m in candidates],))
            # id -> (sha256, the dump it was last seen in)
            stored: dict[int, tuple[str, str]] = {row[0]: (row[1], row[2]) for row in await cur.fetchall()}
            seen: list[tuple[int, str]] = []  # (id, dump version) to mark seen
            rows: list[tuple[Any, ...]] = []
            all_new = True
            for msg in candidates:
                known = stored.get(msg.id)
                if known is not None:
                    sha, version = known
                    if sha != msg.sha256 and version > msg.version:
                        result.stale += 1
                        continue
                    if sha == msg.sha256 or msg.unchanged:
                        # In this dump, so kept from the sweep; an unchanged item has no record to
                        # replace a row of another sha256 with.
                        if version < msg.version:
                            seen.append((msg.id, msg.version))
                        if sha == msg.sha256:
                            result.unchanged += 1
                        else:
                            result.rejected.append((msg, unchanged_item_refusal(store, msg.sha256, sha)))
                        continue
                    all_new = False
                elif msg.unchanged:
                    result.rejected.append((msg, unchanged_item_refusal(store, msg.sha256, None)))
                    continue
                try:
                    rows.append(_row(table, msg))
                except (ValueError, TypeError) as exc:
                    result.rejected.append((msg, f"bad record shape: {exc}"))
            if rows and direct and all_new:
                async with cur.copy(sql.copy_direct) as copy:
                    copy.set_types(sql.direct_types)
                    for row in rows:
                        await copy.write_row(row)
                result.written = len(rows)
            elif rows:
                await cur.execute(sql.stage_ddl)
                async with cur.copy(sql.copy) as copy:
                    copy.set_types(sql.copy_types)
                    for row in rows:
                        await copy.write_row(row)
                await cur.execute(sql.merge)
                result.written = max(cur.rowcount, 0)
                # Rows a competing replica merged first (same content, or a newer version).
                result.unchanged += len(rows) - result.written
            seen.extend((row[0], row[2]) for row in rows)
            if seen:
                seen.sort()
                await cur.execute(sql.mark_seen, ([i for i, _ in seen], [v for _, v in seen]))
    return result


@dataclass(frozen=True)
class _Statements:
    setup: str
    setup_nolock: LiteralString
    existing: LiteralString
    mark_seen: LiteralString
    stage_ddl: LiteralString
    copy: LiteralString
    copy_direct: LiteralString
    direct_types: tuple[str, ...]
    copy_types: tuple[str, ...]
    merge: LiteralString


_STATEMENTS: dict[str, _Statements] = {}


def _statements(table: _Table) -> _Statements:
    cached = _STATEMENTS.get(table.name)
    if cached is not None:
        return cached
    t = table.name
    stage = f"_stage_{t}"
    seen = seen_table(t)
    typed = [c for c, _, _ in table.columns]
    cols = ["id", "sha256", "dump_version", *typed, "data"]
    col_list = ", ".join(cols)
    stage_ddl = ", ".join(
        ["id bigint", "sha256 text", "dump_version text"]
        + [f"{c} {_SQL_TYPES[k]}" for c, _, k in table.columns]
        + ["data jsonb"]
    )
    updates = ", ".join(
        [f"{c} = excluded.{c}" for c in ["sha256", "dump_version", *typed, "data"]] + ["updated_at = now()"]
    )
    # lz4 TOAST compression: several times cheaper than the default pglz for ~1-100 KB JSONB.
    setup = "SET LOCAL default_toast_compression = 'lz4'"
    statements = _Statements(
        setup=setup + "; SET LOCAL lock_timeout = %(lock)d",
        setup_nolock=_q(setup),
        # A row without its mark (never expected) counts as seen in its content's dump, and
        # mark_seen below recreates the mark.
        existing=_q(
            f"""SELECT t.id, t.sha256, coalesce(s.dump_version, t.dump_version)
            FROM {t} t LEFT JOIN {seen} s ON s.id = t.id WHERE t.id = ANY(%s)"""
        ),
        # Only ever forward: a late message from an older dump leaves the mark as it is.
        mark_seen=_q(
            f"""INSERT INTO {seen} AS s (id, dump_version)
            SELECT * FROM unnest(%s::bigint[], %s::text[])
            ON CONFLICT (id) DO UPDATE SET dump_version = excluded.dump_version
            WHERE s.dump_version < excluded.dump_version"""
        ),
        stage_ddl=_q(f"CREATE TEMP TABLE IF NOT EXISTS {stage} ({stage_ddl}) ON COMMIT DELETE ROWS"),
        copy=_q(f"COPY {stage} ({col_list}) FROM STDIN (FORMAT BINARY)"),
        copy_direct=_q(f"COPY {t} ({col_list}) FROM STDIN (FORMAT BINARY)"),
        # binary COPY needs the table's exact column types (`year` is an integer column)
        direct_types=(
            "int8",
            "text",
            "text",
            *("int4" if c == "year" else _COPY_TYPES[k] for c, _, k in table.columns),
            "jsonb",
        ),
        copy_types=("int8", "text", "text", *(_COPY_TYPES[k] for _, _, k in table.columns), "jsonb"),
        merge=_q(
            f"""INSERT INTO {t} AS t ({col_list})
            SELECT {col_list} FROM {stage} ORDER BY id
            ON CONFLICT (id) DO UPDATE SET {updates}
            WHERE t.sha256 IS DISTINCT FROM excluded.sha256
              AND t.dump_version <= excluded.dump_version"""
        ),
    )
    _STATEMENTS[table.name] = statements
    return statements


async def remove_stale(pool_or_conn: PoolOrConn, data_type: str, version: str) -> int:
    """Delete `data_type` records last seen in a dump older than `version`; return how many."""
    t = _table(data_type).name
    # One chunk: the next SWEEP_CHUNK stale marks after `after` in id order (a walk along the
    # primary key, so the whole sweep reads the narrow table once), their rows, and the marks.
    # The outer `dump_version <` is re-checked on a mark a concurrent writer just moved forward.
    sweep = _q(
        f"""WITH gone AS (
            DELETE FROM {seen_table(t)} WHERE dump_version < %(version)s AND id IN (
                SELECT id FROM {seen_table(t)} WHERE id > %(after)s AND dump_version < %(version)s
                ORDER BY id LIMIT {SWEEP_CHUNK})
            RETURNING id),
        rows AS (DELETE FROM {t} WHERE id IN (SELECT id FROM gone) RETURNING 1)
        SELECT (SELECT count(*) FROM gone), (SELECT max(id) FROM gone), (SELECT count(*) FROM rows)"""
    )
    removed = 0
    after = -(2**63)
    async with _connection(pool_or_conn) as conn:
        while True:
            async with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
                await cur.execute(sweep, {"version": version, "after": after})
                marks, last, rows = await cur.fetchone() or (0, None, 0)
            removed += int(rows)
            if marks < SWEEP_CHUNK:
                break
            after = last
    log.info("stale_rows_removed", data_type=data_type, version=version, removed=removed)
    return removed
