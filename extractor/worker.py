"""The parse side of the pipeline, run in its own process so parsing and publishing use both cores.

The worker parses one dump file and sends batches of ready-to-publish message bodies to the
parent through a bounded multiprocessing queue (constant memory, back-pressure). The record JSON
is serialised once: the canonical sorted bytes the hash covers are embedded as-is in the body.

Queue items:
  ("batch", [(ordinal, offset, id | None, body, error | None), ...])
  ("done", last_ordinal, offset)
  ("corrupt", message, last_ordinal)     the dump is truncated / corrupt: fail the file
  ("error", message)                     anything else went wrong
"""

from __future__ import annotations

import ctypes
import os
import queue as queue_mod
import signal
from pathlib import Path
from typing import Any

import orjson

from common.messages import SCHEMA_VERSION
from extractor.parser import DumpCorruptError, iter_records

Item = tuple[int, int, int | None, bytes, str | None]


def record_body_prefix(data_type: str, version: str) -> bytes:
    head = orjson.dumps(
        {"schema_version": SCHEMA_VERSION, "kind": "record", "type": data_type, "version": version}
    )
    return head[:-1] + b',"id":'


def record_body(prefix: bytes, record_id: int, sha256: str, record_json: bytes) -> bytes:
    """A RecordMessage body (common.messages) built around the already-serialised record."""
    return b"".join(
        (prefix, str(record_id).encode(), b',"sha256":"', sha256.encode(), b'","record":', record_json, b"}")
    )


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


def produce(path: Path, data_type: str, version: str, skip: int, batch_size: int, put: Any) -> None:
    """Parse `path` after `skip` records and hand batches to `put` (queue.put in the worker)."""
    prefix = record_body_prefix(data_type, version)
    batch: list[Item] = []
    ordinal = skip
    offset = 0
    try:
        for rec in iter_records(path, data_type, skip=skip):
            ordinal = rec.ordinal
            offset = rec.offset
            if rec.error is None:
                assert rec.id is not None and rec.sha256 is not None and rec.json is not None
                batch.append(
                    (ordinal, offset, rec.id, record_body(prefix, rec.id, rec.sha256, rec.json), None)
                )
            else:
                body = dead_letter_body(data_type, version, ordinal, rec.error, rec.raw)
                batch.append((ordinal, offset, None, body, rec.error))
            if len(batch) >= batch_size:
                put(("batch", batch))
                batch = []
    except DumpCorruptError as exc:
        if batch:
            put(("batch", batch))
        put(("corrupt", str(exc), ordinal))
        return
    if batch:
        put(("batch", batch))
    put(("done", ordinal, path.stat().st_size))


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (PR_SET_PDEATHSIG), so a killed
    extractor never leaves a worker blocked on a queue nobody reads."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)


def parse_worker(
    path: str, data_type: str, version: str, skip: int, queue: Any, batch_size: int, parent: int = 0
) -> None:
    """multiprocessing target. Dies with its parent (e.g. SIGKILL of the extractor)."""
    parent = parent or os.getppid()
    _die_with_parent(parent)

    def put(item: Any) -> None:
        while True:
            try:
                queue.put(item, timeout=1.0)
                return
            except queue_mod.Full:
                if os.getppid() != parent:
                    os._exit(0)

    try:
        produce(Path(path), data_type, version, skip, batch_size, put)
    except BaseException as exc:  # report everything to the parent, which fails the file
        queue.put(("error", f"{type(exc).__name__}: {exc}"))
