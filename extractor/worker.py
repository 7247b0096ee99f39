"""The parse side of the pipeline, run in its own process so parsing and publishing never share a
core; the parse itself runs on a pool of processes (`extractor.chunked`) where the file allows.

The worker groups records into `records` messages (common.messages: up to `message_records`
records or `message_bytes` bytes each; one broker message per record would cost the broker more
CPU than parsing the record) and sends batches of ready-to-publish bodies to the parent through a
bounded multiprocessing queue (constant memory, back-pressure). Each record's JSON is serialised
once: the canonical sorted bytes the hash covers are embedded as they are.

With a baseline (the previous completed version's record index, extractor.baseline) a record
whose raw XML did not change travels as an unchanged item (`"record": null`, the old sha256). The
worker also writes this version's index for the next one (not when resuming mid-file).

Queue items:
  ("batch", [(last ordinal, offset, records, body, error | None, unchanged), ...])
      a `records` message (error None; `unchanged` of its records are unchanged items) or a
      malformed record's dead letter (records 1)
  ("done", last_ordinal, offset)
  ("corrupt", message, last_ordinal)     the dump is truncated / corrupt: fail the file
  ("error", message)                     anything else went wrong
"""

from __future__ import annotations

import os
import queue as queue_mod
from pathlib import Path
from typing import Any, Final

import orjson

from common.messages import SCHEMA_VERSION, record_item_bytes, records_body
from extractor.baseline import IndexWriter
from extractor.chunked import iter_records_parallel
from extractor.lifetime import die_with_parent, owner_gone
from extractor.parser import DumpCorruptError

Item = tuple[int, int, int, bytes, str | None, int]
_UNCHANGED_RECORD: Final = b"null"


def dead_letter_body(data_type: str, version: str, ordinal: int, error: str, raw: bytes | None) -> bytes:
    return orjson.dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "kind": "malformed_record",
            "type": data_type,
            "version": version,
            "ordinal": ordinal,
            "error": error,
            "xml": raw.decode("utf-8", "replace") if raw is not None else None,
        }
    )


class MessageBuilder:
    """Collects record items into `records` bodies of at most `max_records` records / about
    `max_bytes` bytes (a single bigger record, e.g. a box set, travels alone)."""

    def __init__(self, data_type: str, version: str, max_records: int, max_bytes: int) -> None:
        self.data_type = data_type
        self.version = version
        self.max_records = max(1, max_records)
        self.max_bytes = max_bytes
        self._items: list[bytes] = []
        self._size = 0
        self._unchanged = 0
        self._last = (0, 0)  # (ordinal, offset) of the newest record

    def add(self, ordinal: int, offset: int, item: bytes, *, unchanged: bool = False) -> list[Item]:
        """Add one record item; returns the messages this finished (none, one, or two when a big
        record did not fit and then filled a message on its own)."""
        done: list[Item] = []
        if self._items and self._size + len(item) > self.max_bytes:
            done.extend(self.flush())
        self._items.append(item)
        self._size += len(item)
        self._unchanged += unchanged
        self._last = (ordinal, offset)
        if len(self._items) >= self.max_records or self._size >= self.max_bytes:
            done.extend(self.flush())
        return done

    def flush(self) -> list[Item]:
        """The message holding the records collected so far (none when there are none)."""
        if not self._items:
            return []
        body = records_body(self.data_type, self.version, self._items)
        item: Item = (self._last[0], self._last[1], len(self._items), body, None, self._unchanged)
        self._items = []
        self._size = 0
        self._unchanged = 0
        return [item]


def produce(
    path: Path,
    data_type: str,
    version: str,
    skip: int,
    batch_size: int,
    put: Any,
    *,
    message_records: int = 100,
    message_bytes: int = 1 << 20,
    parse_workers: int = 0,
    baseline: str | None = None,
    index_dir: str | None = None,
) -> None:
    """Parse `path` after `skip` records and hand batches of messages to `put` (queue.put in the
    worker); `batch_size` is in messages. `baseline`: the index directory to compare with;
    `index_dir`: where to write this version's index (only when the whole file is read)."""
    builder = MessageBuilder(data_type, version, message_records, message_bytes)
    index = IndexWriter(Path(index_dir), data_type) if index_dir is not None and skip == 0 else None
    batch: list[Item] = []
    ordinal = skip
    offset = 0

    def emit(items: list[Item]) -> None:
        nonlocal batch
        batch.extend(items)
        if len(batch) >= batch_size:
            put(("batch", batch))
            batch = []

    known = Path(baseline) if baseline is not None else None
    try:
        for rec in iter_records_parallel(path, data_type, skip=skip, workers=parse_workers, baseline=known):
            ordinal = rec.ordinal
            offset = rec.offset
            if rec.error is None:
                assert rec.id is not None and rec.sha256 is not None
                data = _UNCHANGED_RECORD if rec.unchanged else rec.json
                assert data is not None
                item = record_item_bytes(rec.id, rec.sha256, data)
                emit(builder.add(ordinal, offset, item, unchanged=rec.unchanged))
                if index is not None:
                    index.add(rec.id, rec.raw_hash, rec.sha256)
            else:
                emit(builder.flush())  # ordinals are published in order
                body = dead_letter_body(data_type, version, ordinal, rec.error, rec.raw)
                emit([(ordinal, offset, 1, body, rec.error, 0)])
    except DumpCorruptError as exc:
        if index is not None:
            index.abort()
        batch.extend(builder.flush())
        if batch:
            put(("batch", batch))
        put(("corrupt", str(exc), ordinal))
        return
    except BaseException:
        if index is not None:
            index.abort()
        raise
    batch.extend(builder.flush())
    if batch:
        put(("batch", batch))
    if index is not None:
        index.finish()
    put(("done", ordinal, path.stat().st_size))


def parse_worker(
    path: str,
    data_type: str,
    version: str,
    skip: int,
    queue: Any,
    batch_size: int,
    owner: int = 0,
    options: dict[str, Any] | None = None,
) -> None:
    """multiprocessing target. Dies with `owner`, the extractor process (e.g. its SIGKILL)."""
    owner = owner or os.getppid()
    die_with_parent(owner)

    def put(item: Any) -> None:
        while True:
            try:
                queue.put(item, timeout=1.0)
                return
            except queue_mod.Full:
                if owner_gone(owner):
                    os._exit(0)

    try:
        produce(Path(path), data_type, version, skip, batch_size, put, **(options or {}))
    except BaseException as exc:  # report everything to the parent, which fails the file
        queue.put(("error", f"{type(exc).__name__}: {exc}"))
