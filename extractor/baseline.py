"""The record index of a dump version, and its use as the baseline of the next version (pipeline
weakness 23: publish only what changed).

While a file is parsed, the extractor writes, for every valid record, its id, a hash of its raw XML
and the sha256 of its normalised record, to `<DATA_DIR>/index/<version>/<type>.*`:

  <type>.ids   int64 ids in native byte order, strictly ascending (the dumps are sorted by id)
  <type>.vals  per id: the 8-byte raw hash (all zero when unknown), then the 32-byte sha256
  <type>.json  {"format", "normalizer", "count"}: written last, so an index without it is partial

The next version's parse looks each record up in the index of the newest *completed* earlier
version (its records are in the stores). A record whose raw XML hashes the same is not parsed or
normalised again: it is published as an unchanged item (`"record": null` with the old sha256),
which the consumers only mark as seen in this version. So a monthly update costs the extractor
little more than reading the file, and the consumers little more than a bump per record.

An index is not written when a file is resumed mid-way (the records before the checkpoint are
not parsed again) or when its ids are not ascending; the next version then publishes that type in
full, which is always correct, only slower. A change of the normalised form bumps
`NORMALIZER_VERSION`, and a change of what graphinator makes of a record bumps `GRAPH_MODEL`
(common.writes): either makes older indexes unusable, so the next version arrives in full and
every stored record is rewritten in the new form.
"""

from __future__ import annotations

import bisect
import hashlib
import mmap
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Final

import orjson

from common.logging import get_logger
from common.writes import GRAPH_MODEL
from extractor.normalize import NORMALIZER_VERSION
from extractor.state import StateStore, marked_versions

log = get_logger(__name__)

INDEX_FORMAT: Final = 1
RAW_HASH_BYTES: Final = 8
_SHA_BYTES: Final = 32
_VAL_BYTES: Final = RAW_HASH_BYTES + _SHA_BYTES
_NO_RAW_HASH: Final = bytes(RAW_HASH_BYTES)
_BUFFER: Final = 1 << 20


def raw_hash(data: bytes) -> bytes:
    """The hash of a record's raw XML: SHA-256 (hardware-accelerated here, faster than BLAKE2)
    cut to 8 bytes, plenty to tell whether one record's bytes changed."""
    return hashlib.sha256(data).digest()[:RAW_HASH_BYTES]


def index_dir(data_dir: Path, version: str) -> Path:
    return data_dir / "index" / version


def _paths(directory: Path, data_type: str) -> tuple[Path, Path, Path]:
    return directory / f"{data_type}.ids", directory / f"{data_type}.vals", directory / f"{data_type}.json"


class IndexWriter:
    """Collects one file's index in `.part` files; `finish()` puts it in place."""

    def __init__(self, directory: Path, data_type: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.data_type = data_type
        self._final = _paths(directory, data_type)
        self._part = tuple(p.with_name(p.name + ".part") for p in self._final[:2])
        for path in self._final:  # an older index of this version is replaced, never mixed in
            path.unlink(missing_ok=True)
        self._ids = self._part[0].open("wb", buffering=_BUFFER)
        self._vals = self._part[1].open("wb", buffering=_BUFFER)
        self._last = -(1 << 63)
        self.count = 0
        self.problem: str | None = None

    def add(self, record_id: int, raw: bytes | None, sha256: str) -> None:
        if self.problem is not None:
            return
        if record_id <= self._last:
            self.problem = f"ids not ascending (id {record_id} after {self._last})"
            return
        self._last = record_id
        self._ids.write(record_id.to_bytes(8, sys.byteorder, signed=True))
        self._vals.write(raw or _NO_RAW_HASH)
        self._vals.write(bytes.fromhex(sha256))
        self.count += 1

    def finish(self) -> bool:
        """Put the index in place; False (and nothing in place) when it is not usable."""
        self._ids.close()
        self._vals.close()
        if self.problem is not None:
            log.warning("record_index_not_written", type=self.data_type, reason=self.problem)
            self.abort()
            return False
        for part, final in zip(self._part, self._final, strict=False):
            os.replace(part, final)
        meta = {
            "format": INDEX_FORMAT,
            "normalizer": NORMALIZER_VERSION,
            "graph_model": GRAPH_MODEL,
            "count": self.count,
        }
        tmp = self._final[2].with_name(self._final[2].name + ".part")
        tmp.write_bytes(orjson.dumps(meta))
        os.replace(tmp, self._final[2])
        return True

    def abort(self) -> None:
        self._ids.close()
        self._vals.close()
        for path in self._part:
            path.unlink(missing_ok=True)


class Baseline:
    """A usable index, memory-mapped read-only: lookups by id (a binary search in the ids)."""

    def __init__(self, directory: Path, data_type: str) -> None:
        ids_path, vals_path, meta_path = _paths(directory, data_type)
        self.count = int(orjson.loads(meta_path.read_bytes())["count"])
        self._maps: list[mmap.mmap] = []
        self._ids: Any = []
        self._vals: Any = b""
        if self.count:
            for path in (ids_path, vals_path):
                with path.open("rb") as fh:
                    self._maps.append(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))
            self._ids = memoryview(self._maps[0]).cast("q")
            self._vals = memoryview(self._maps[1])
            if len(self._ids) != self.count or len(self._vals) != self.count * _VAL_BYTES:
                raise ValueError(f"index {ids_path} does not match its meta data")

    def lookup(self, record_id: int) -> tuple[bytes, str] | None:
        """(raw hash, sha256) of `record_id` in that version, or None."""
        at = bisect.bisect_left(self._ids, record_id)
        if at == self.count or self._ids[at] != record_id:
            return None
        start = at * _VAL_BYTES
        raw = bytes(self._vals[start : start + RAW_HASH_BYTES])
        return raw, self._vals[start + RAW_HASH_BYTES : start + _VAL_BYTES].hex()


def _usable(directory: Path, data_type: str) -> bool:
    try:
        meta = orjson.loads(_paths(directory, data_type)[2].read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return False
    return bool(
        meta.get("format") == INDEX_FORMAT
        and meta.get("normalizer") == NORMALIZER_VERSION
        # indexes written before the field existed were all made under model 1
        and meta.get("graph_model", 1) == GRAPH_MODEL
    )


def find_baseline(data_dir: Path, version: str, data_type: str) -> Path | None:
    """The index directory of `data_type` of the newest completed version before `version` (what
    the stores hold), when it has a usable one; None means: publish the file in full. An older
    version's index is never used: the stores may hold newer content than it describes."""
    for older in (v for v in marked_versions(data_dir) if v < version):
        if StateStore(data_dir, older).load().completed:
            directory = index_dir(data_dir, older)
            return directory if _usable(directory, data_type) else None
    return None


def prune_indexes(data_dir: Path, version: str) -> None:
    """Delete the indexes of versions older than `version` (which just completed)."""
    root = data_dir / "index"
    if not root.is_dir():
        return
    for directory in root.iterdir():
        if directory.is_dir() and directory.name < version:
            shutil.rmtree(directory, ignore_errors=True)
            log.info("old_record_index_pruned", version=directory.name)
