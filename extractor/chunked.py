"""Parallel parse of one dump file: `iter_records_parallel` yields what `parser.iter_records` yields,
in the same order, using several processes.

One thread reads the (decompressed) XML and cuts it into chunks of whole records right after a
record's closing tag; a pool of processes parses and normalises the chunks; results come back in
file order, with a bounded number of chunks in flight (constant memory). lxml alone reads about
16,000 releases/s on one core, so one process cannot feed a 15,000/s pipeline once normalising and
hashing are added.

Artists, masters and releases are cut at their record's closing tag, which never nests. A label's
does (a `<label>` inside `<sublabels>`), so labels are cut where the depth of `<label>` tags
returns to zero. A cut is never made inside a comment, CDATA or a processing instruction. A file
in another encoding than UTF-8 is read as UTF-8 (extractor.transcode). Only a file with an unusual
prolog (a DOCTYPE that could declare entities, an encoding that does not spell ASCII as ASCII) is
read by the serial parser; one worker still takes the chunks, so every dump's records are cut and hashed
the same way (the raw hashes of extractor.baseline depend on it).

In a chunk that is not well formed each record is parsed alone: one whose XML is broken comes back
malformed (dead-lettered with the parser's message and its raw XML) and the rest of the file
continues, also where CDATA, comments or processing instructions hide tag-like text (the records
are then told apart by a scan that steps over them). Only where records cannot be told apart (one
of those left unterminated) does a broken chunk fail the file, as do a truncated gzip stream and
content after the last record other than the root's closing tag: `DumpCorruptError`, after every
record of the chunks before it was yielded.

Records come back without the `record` dict (the canonical JSON bytes and the hash are there):
the publisher needs only those, and unpickling every record's dict would cost the parent process
what the workers saved.
"""

from __future__ import annotations

import functools
import hashlib
import multiprocessing
import os
import re
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from lxml import etree

from extractor import native
from extractor.baseline import Baseline, raw_hash
from extractor.lifetime import die_with_parent
from extractor.normalize import NORMALIZERS, RECORD_TAGS, MalformedRecordError, raw_record_id, record_json
from extractor.parser import (
    READ_ERRORS,
    DumpCorruptError,
    ParsedRecord,
    check_root,
    describe_error,
    iter_records,
    open_dump,
)
from extractor.transcode import Utf8Reader, foreign_encoding

CHUNK_BYTES: Final = 1 << 20
# No record end in this much XML: a record that big is no Discogs record (a box set of thousands of
# tracks is a few MB), so the file is broken; failing keeps the memory bounded.
MAX_RECORD_BYTES: Final = 256 << 20
_READ_BYTES: Final = 1 << 20
_RAW_CAP: Final = 64 * 1024
_PROLOG_SCAN: Final = 64 * 1024
_ROOT_OPEN: Final = re.compile(rb"<([A-Za-z_][\w.-]*)(\s[^>]*)?>")
# A DOCTYPE without an external DTD or an internal subset (which could declare entities).
_BARE_DOCTYPE: Final = re.compile(rb"<!DOCTYPE\s+[A-Za-z_][\w.:-]*\s*>")

# (id, sha256, json, error, raw XML, raw id, raw hash) per record element of a chunk, in order.
# An unchanged record (see parse_chunk) has no json and no error.
ChunkRecord = tuple[int | None, str | None, bytes | None, str | None, bytes | None, str | None, bytes | None]
_ID_IN_START_TAG: Final = re.compile(rb'\sid="(\d{1,18})"')  # <release id="1" ...>, <master id="1">
_ID_CHILD: Final = re.compile(rb"<id>(\d{1,18})</id>")  # <artist><id>1</id>: its first id element
# What tag-like text can hide in: comments, CDATA and processing instructions.
_HIDING: Final = rb"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>"
# What a label record's boundaries depend on: its own tags (a `<label>` also stands for a sublabel
# inside a record, so only depth tells a record's end) and what hides them. A bare `<!` or `<?` is
# one not terminated yet.
_LABEL_TOKEN: Final = re.compile(
    _HIDING + rb"|<[!?]|<(/?)label(?:\s+[^\s=/>]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*\s*(/?)>",
    re.DOTALL,
)
# `open`: an opener left unterminated (a bare `<!` that opens neither a comment nor CDATA hides
# nothing).
_UNCLOSED: Final = re.compile(_HIDING + rb"|(?P<open><!--|<!\[CDATA\[|<\?)", re.DOTALL)
# `!` / `?` found after something other than `<` this often (a real dump has ~600 `?` per MB, mostly
# in video URLs): the two-byte search decides.
_MARKUP_CHECKS: Final = 1024
# The same for records whose closing tag never nests; `end` is one's end tag.
_RECORD_END_TOKEN: Final = {
    data_type: re.compile(_UNCLOSED.pattern + rb"|(?P<end></" + tag.encode() + rb">)", re.DOTALL)
    for data_type, tag in RECORD_TAGS.items()
    if data_type != "labels"
}


@functools.cache
def _xml_parser() -> Any:
    """One parser per worker process (same options as the serial iterparse)."""
    return etree.XMLParser(
        huge_tree=True, resolve_entities=False, no_network=True, remove_comments=True, remove_pis=True
    )


def parse_chunk(
    data_type: str, root_open: bytes, root_close: bytes, chunk: bytes, baseline: str | None = None
) -> tuple[list[ChunkRecord], str | None]:
    """Parse one chunk of whole records (pool worker). Returns the records and, when the chunk is
    not well formed and its records cannot be told apart, the parser's message (the records list
    is then empty).

    With a `baseline` (the previous version's index, extractor.baseline) a record whose raw XML
    is unchanged is neither parsed nor normalised: it comes back with the old sha256 and no JSON.
    """
    pieces = split_records(data_type, chunk)
    if pieces is None:
        records, error = _parse(data_type, root_open, root_close, chunk, None)
        whole = None if error is None else _scanned_records(data_type, chunk)
        if whole is None:
            return records, error
        return _parse_each(data_type, root_open, root_close, whole), None
    hashes = [raw_hash(piece) for piece in pieces]
    if baseline is None:
        return _parse_isolating(data_type, root_open, root_close, chunk, pieces, hashes), None
    known = _open_baseline(baseline, data_type)
    out: list[ChunkRecord | None] = []
    changed: list[bytes] = []
    changed_hashes: list[bytes] = []
    for rid, piece, digest in zip(_raw_ids(data_type, pieces), pieces, hashes, strict=True):
        entry = known.lookup(rid) if rid is not None else None
        if entry is not None and entry[0] == digest:
            out.append((rid, entry[1], None, None, None, None, digest))
        else:
            out.append(None)
            changed.append(piece)
            changed_hashes.append(digest)
    if changed:
        end_tag = _end_tag(data_type)
        subset = end_tag.join(changed) + end_tag
        parsed = _parse_isolating(data_type, root_open, root_close, subset, changed, changed_hashes)
        if len(parsed) != len(changed):  # not one record per piece: the whole chunk decides
            return _parse_isolating(data_type, root_open, root_close, chunk, pieces, hashes), None
        rest = iter(parsed)
        return [rec if rec is not None else next(rest) for rec in out], None
    return [rec for rec in out if rec is not None], None


def _parse_isolating(
    data_type: str,
    root_open: bytes,
    root_close: bytes,
    chunk: bytes,
    pieces: list[bytes],
    hashes: list[bytes],
) -> list[ChunkRecord]:
    """`_parse` of the whole chunk (releases: `_parse_native` first); when it is not well formed,
    of each record alone, so a record whose XML is broken (an undefined entity, a control
    character, a mis-nested tag) becomes a malformed record with the parser's message and its raw
    XML, and the others land."""
    native_records = _parse_native(data_type, root_open, root_close, chunk, pieces, hashes)
    if native_records is not None:
        return native_records
    records, error = _parse(data_type, root_open, root_close, chunk, hashes)
    if error is None:
        return records
    end_tag = _end_tag(data_type)
    return _parse_each(data_type, root_open, root_close, [piece + end_tag for piece in pieces], hashes)


def _parse_each(
    data_type: str,
    root_open: bytes,
    root_close: bytes,
    records: list[bytes],
    hashes: list[bytes] | None = None,
) -> list[ChunkRecord]:
    """Parse each record's XML (up to and including its end) alone: a broken one becomes a
    malformed record with the parser's message and its raw XML. `hashes`: their raw hashes, when
    the records are the pieces the raw hash covers."""
    digests = hashes if hashes is not None else [b""] * len(records)
    out: list[ChunkRecord] = []
    for xml, digest, rid in zip(records, digests, _raw_ids(data_type, records), strict=True):
        parsed, problem = _parse(data_type, root_open, root_close, xml, [digest] if digest else None)
        if problem is None:
            out.extend(parsed)
        else:
            raw = xml.lstrip()[:_RAW_CAP]
            out.append((None, None, None, problem, raw, repr(None if rid is None else str(rid)), None))
    return out


def _parse_native(
    data_type: str,
    root_open: bytes,
    root_close: bytes,
    chunk: bytes,
    pieces: list[bytes],
    hashes: list[bytes],
) -> list[ChunkRecord] | None:
    """The chunk's records through the native normaliser (releases, extractor.native), the same
    as `_parse` makes them. A record it leaves to Python is parsed alone by lxml; None (use
    `_parse`) where the native library is missing, or such a record is not one well-formed
    element on its own (only the whole chunk then tells what it is)."""
    if data_type != "releases" or root_open != b"<releases>":
        return None
    results = native.normalize_releases(chunk)
    if results is None or len(results) != len(pieces):
        return None
    end_tag = _end_tag(data_type)
    out: list[ChunkRecord] = []
    for result, piece, digest in zip(results, pieces, hashes, strict=True):
        if result is not None:
            rec_id, data = result
            out.append((rec_id, hashlib.sha256(data).hexdigest(), data, None, None, None, digest))
            continue
        alone, problem = _parse(data_type, root_open, root_close, piece + end_tag, [digest])
        if problem is not None or len(alone) != 1:
            return None
        out.extend(alone)
    return out


def _parse(
    data_type: str, root_open: bytes, root_close: bytes, chunk: bytes, hashes: list[bytes] | None
) -> tuple[list[ChunkRecord], str | None]:
    """Parse and normalise every record of a chunk; `hashes` are their raw hashes, in order (not
    used when the XML holds a different number of records than the textual split found)."""
    try:
        root = etree.fromstring(root_open + chunk + root_close, _xml_parser())
    except etree.XMLSyntaxError as exc:
        return [], describe_error(exc)
    normalize = NORMALIZERS[data_type]
    tag = RECORD_TAGS[data_type]
    elements = [elem for elem in root if elem.tag == tag]
    if hashes is None or len(hashes) != len(elements):
        hashes = [b""] * len(elements)
    out: list[ChunkRecord] = []
    for elem, digest in zip(elements, hashes, strict=True):
        try:
            record = normalize(elem)
        except MalformedRecordError as exc:
            raw = etree.tostring(elem, encoding="utf-8", with_tail=False)[:_RAW_CAP]
            out.append((None, None, None, str(exc), raw, repr(raw_record_id(elem)), None))
            continue
        data = record_json(record)
        out.append((record["id"], hashlib.sha256(data).hexdigest(), data, None, None, None, digest or None))
    return out, None


def split_records(data_type: str, chunk: bytes) -> list[bytes] | None:
    """The raw XML of each record of a chunk, for the raw hash: the bytes up to its end tag (from
    the previous end tag on: the whitespace between records counts too). The n-th piece holds the
    n-th record because an end tag can only close a record; the places it could stand for
    something else are CDATA, comments and processing instructions, so a chunk with `<!` or `<?`
    is not split (None). `bytes.split` copies the chunk once, in C; slicing memoryviews in a Python
    loop cost more (`parse_chunk` 91.9 against 86.5 µs per release, 12.8 against 12.1 per artist)."""
    if _may_hide_tags(chunk):
        return None
    if data_type == "labels":
        ends, plain = _label_ends(chunk)
        if not plain:
            return None
        starts = [0, *(end for _, end in ends)]
        pieces = [chunk[start:close] for start, (close, _) in zip(starts, ends, strict=False)]
        return pieces if not chunk[starts[-1] :].strip() else None
    pieces = chunk.split(_end_tag(data_type))
    return pieces if not pieces.pop().strip() else None


def _scanned_records(data_type: str, chunk: bytes) -> list[bytes] | None:
    """Each record's XML (up to and including its end) in a chunk that `split_records` would not
    split, for parsing a broken chunk record by record. None when something other than white
    space follows the last end (a comment, CDATA or processing instruction left unterminated:
    what follows cannot be told apart)."""
    ends = _record_ends(data_type, chunk)
    if not ends or chunk[ends[-1] :].strip():
        return None
    return [chunk[start:end] for start, end in zip([0, *ends], ends, strict=False)]


def _record_ends(data_type: str, buf: bytes | bytearray) -> list[int]:
    """Where each whole record in `buf` (which starts between two records) ends, by a scan that
    steps over comments, CDATA and processing instructions; it stops at one not terminated in
    `buf`."""
    if data_type == "labels":
        return [end for _, end in _label_ends(buf)[0]]
    ends = []
    for token in _RECORD_END_TOKEN[data_type].finditer(buf):
        if token["open"]:
            break
        if token["end"]:
            ends.append(token.end())
    return ends


def _label_ends(buf: bytes | bytearray) -> tuple[list[tuple[int, int]], bool]:
    """Where each label record in `buf` ends (`buf` starts between two records): the span of its
    closing tag, or of a self-closing `<label/>` record. Nested labels open and close inside their
    record, so depth counting tells the ends apart. The flag is False when a comment, CDATA, a
    processing instruction or a self-closing record was met: the text between two ends is then
    not one record's raw XML. The scan stops at a comment or CDATA not terminated in `buf`."""
    ends: list[tuple[int, int]] = []
    plain = True
    depth = 0
    for token in _LABEL_TOKEN.finditer(buf):
        close, empty = token.group(1), token.group(2)
        if close is None:  # a comment, CDATA or processing instruction
            plain = False
            if token.end() - token.start() == 2:
                break
        elif close:
            depth -= 1
            if depth == 0:
                ends.append(token.span())
        elif empty:
            if depth == 0:
                ends.append(token.span())
                plain = False
        else:
            depth += 1
    return ends, plain


def _raw_ids(data_type: str, pieces: list[bytes]) -> list[int | None]:
    """Each piece's record id as its raw XML spells it (the start tag's `id` attribute, or the
    first `<id>` element); None when not found. A wrong id only makes the lookup miss."""
    if data_type in ("masters", "releases"):
        found = [_ID_IN_START_TAG.search(piece[:200]) for piece in pieces]
    else:
        found = [_ID_CHILD.search(piece) for piece in pieces]
    return [int(m.group(1)) if m else None for m in found]


@functools.cache
def _open_baseline(directory: str, data_type: str) -> Baseline:
    """One mapping of the baseline index per pool process."""
    return Baseline(Path(directory), data_type)


def _prolog(head: bytes) -> tuple[int, bytes, bytes] | None:
    """Where the records start, and the root's open/close tags; None when the serial parser must
    handle the file (no root found early, a DOCTYPE that names a DTD or declares entities, a
    non-UTF-8 encoding). A bare `<!DOCTYPE releases>` changes nothing a parser does: skipped."""
    scan = head[:_PROLOG_SCAN]
    pos = 0
    if scan.startswith(b"\xef\xbb\xbf"):
        pos = 3
    if scan.startswith(b"<?xml", pos):
        end = scan.find(b"?>", pos)
        if end < 0:
            return None
        decl = scan[pos:end].lower()
        match = re.search(rb"encoding\s*=\s*[\"']([^\"']+)", decl)
        if match and match.group(1) not in (b"utf-8", b"utf8"):
            return None
        pos = end + 2
    while True:
        stripped = len(scan) - len(scan[pos:].lstrip())
        pos = stripped
        if scan.startswith(b"<!--", pos):
            end = scan.find(b"-->", pos)
            if end < 0:
                return None
            pos = end + 3
            continue
        if scan.startswith(b"<?", pos):
            end = scan.find(b"?>", pos)
            if end < 0:
                return None
            pos = end + 2
            continue
        if doctype := _BARE_DOCTYPE.match(scan, pos):
            pos = doctype.end()
            continue
        break
    match = _ROOT_OPEN.match(scan, pos)
    if match is None or scan[match.end() - 2 : match.end()] == b"/>":
        return None
    return match.end(), match.group(0), b"</" + match.group(1) + b">"


def _unclosed(buf: bytes | bytearray) -> str:
    """Why no record end was found after it, when that is a comment, CDATA section or processing
    instruction that is never closed (it hides the rest of the file); "" otherwise."""
    for token in _UNCLOSED.finditer(buf):
        if token["open"]:
            return f"; {bytes(token['open']).decode()!r} opened and never closed"
    return ""


def _may_hide_tags(buf: bytes | bytearray) -> bool:
    """Whether `buf` holds `<!` or `<?`: a comment, CDATA section, DOCTYPE or processing
    instruction, which could hide tags. A `find` of a two-byte needle costs about 1 ms per MB of
    XML here (CPython stops at every `<`, one byte in 15), twice per chunk cut and again per chunk
    in a worker; `!` and `?` are much rarer and a one-byte `find` is a `memchr`, so look for those
    and check the byte before (the two-byte `find` decides where they are not rare)."""
    for second, pair in ((0x21, b"<!"), (0x3F, b"<?")):
        at = buf.find(second)
        for _ in range(_MARKUP_CHECKS):
            if at < 0:
                break
            if at and buf[at - 1] == 0x3C:  # "<"
                return True
            at = buf.find(second, at + 1)
        else:  # too many to check one by one: search on from the last one checked
            if at > 0 and buf.find(pair, at - 1) >= 0:
                return True
    return False


def _end_tag(data_type: str) -> bytes:
    return b"</" + RECORD_TAGS[data_type].encode() + b">"


def _record_cut(data_type: str, buf: bytes | bytearray) -> int:
    """The end of the last whole record in `buf` (which starts between two records); 0 when there
    is none."""
    if data_type != "labels":
        end_tag = _end_tag(data_type)
        at = buf.rfind(end_tag)
        if at < 0:  # also spares a scan of a growing buffer while a huge record is read
            return 0
        if not _may_hide_tags(buf):  # the common case: nothing hides an end tag
            return at + len(end_tag)
    ends = _record_ends(data_type, buf)
    return ends[-1] if ends else 0


def iter_records_parallel(
    path: Path, data_type: str, *, skip: int = 0, workers: int = 0, baseline: Path | None = None
) -> Iterator[ParsedRecord]:
    """`iter_records` on `workers` processes (0 = one per core); falls back to the serial parser
    for a prolog it does not handle. A file in another encoding than UTF-8 is read as UTF-8
    (extractor.transcode). `baseline`: as for iter_records."""
    path = Path(path)
    if data_type not in RECORD_TAGS:
        raise ValueError(f"unknown data type {data_type!r}")
    workers = workers or os.cpu_count() or 1
    stream, counter = open_dump(path)
    try:
        try:
            head = stream.read(_PROLOG_SCAN)
        except READ_ERRORS as exc:
            raise DumpCorruptError(path, describe_error(exc), 0) from exc
        if (encoding := foreign_encoding(head)) is not None:
            stream = Utf8Reader(stream, encoding, head)
            head = stream.head
        prolog = _prolog(head)
        if prolog is None:
            stream.close()
            yield from iter_records(path, data_type, skip=skip, baseline=baseline)
            return
        start, root_open, root_close = prolog
        check_root(path, data_type, root_close[2:-1].decode("utf-8", "replace"))
        known = str(baseline) if baseline is not None else None
        yield from _run(
            path, data_type, skip, workers, stream, counter, head[start:], root_open, root_close, known
        )
    finally:
        stream.close()
        counter.close()


def _chunks(
    path: Path, stream: Any, counter: Any, buf: bytearray, data_type: str, ordinal: list[int]
) -> Iterator[tuple[bytes, int]]:
    """(chunk of whole records, compressed bytes read so far); the rest after the last record is
    left in `buf`. Raises DumpCorruptError for a stream that cannot be read to its end."""
    eof = False
    while not eof:
        try:
            data = stream.read(_READ_BYTES)
        except READ_ERRORS as exc:
            cut = _record_cut(data_type, buf)
            if cut:  # the whole records read before the damage still count
                yield bytes(buf[:cut]), counter.count
                del buf[:cut]
            raise DumpCorruptError(path, describe_error(exc), ordinal[0]) from exc
        if data:
            buf += data
        else:
            eof = True
        if len(buf) < CHUNK_BYTES and not eof:
            continue
        cut = _record_cut(data_type, buf)
        if cut:
            yield bytes(buf[:cut]), counter.count
            del buf[:cut]
        elif len(buf) > MAX_RECORD_BYTES:
            mb = len(buf) / 2**20
            reason = f"no record end ({_end_tag(data_type).decode()}) in {mb:.1f} MB: a broken record"
            raise DumpCorruptError(path, reason + _unclosed(buf), ordinal[0])


def _run(
    path: Path,
    data_type: str,
    skip: int,
    workers: int,
    stream: Any,
    counter: Any,
    rest: bytes,
    root_open: bytes,
    root_close: bytes,
    known: str | None,
) -> Iterator[ParsedRecord]:
    tag = RECORD_TAGS[data_type].encode()
    buf = bytearray(rest)
    ordinal = [0]  # records yielded or skipped so far (shared with _chunks for error messages)
    # fork is fast (the parse worker process that runs this is single-threaded until it first
    # hands a batch over); spawn when other threads exist, as fork could copy a held lock.
    single = threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if single else "spawn")
    with ctx.Pool(workers, initializer=die_with_parent) as pool:
        pending: deque[tuple[Any, int]] = deque()

        def results(limit: int) -> Iterator[ParsedRecord]:
            while len(pending) > limit:
                job, offset = pending.popleft()
                records, error = job.get()
                if error is not None:
                    raise DumpCorruptError(path, error, ordinal[0])
                for rec_id, sha, data, problem, raw, raw_id, digest in records:
                    ordinal[0] += 1
                    n = ordinal[0]
                    if n <= skip:
                        continue
                    if problem is None:
                        yield ParsedRecord(
                            n, offset, rec_id, None, sha, json=data, raw_hash=digest, unchanged=data is None
                        )
                    else:
                        error = f"{problem} (record #{n}, raw id {raw_id})"
                        yield ParsedRecord(n, offset, None, None, None, error=error, raw=raw)

        chunks = _chunks(path, stream, counter, buf, data_type, ordinal)
        while True:
            try:
                chunk, offset = next(chunks)
            except StopIteration:
                break
            except DumpCorruptError as exc:  # the stream broke: the whole chunks before it count
                yield from results(0)
                raise DumpCorruptError(path, exc.reason, ordinal[0]) from exc.__cause__
            job = pool.apply_async(parse_chunk, (data_type, root_open, root_close, chunk, known))
            pending.append((job, offset))
            # A chunk that is not well formed raises here: nothing after it is yielded.
            yield from results(2 * workers)
        yield from results(0)
    tail = bytes(buf).strip()
    if tail != root_close:
        what = "a truncated record" if b"<" + tag in tail else "unexpected content"
        reason = f"XML is not well formed ({what} after the last whole record: {tail[:80]!r})"
        raise DumpCorruptError(path, reason + _unclosed(tail), ordinal[0])
    if ordinal[0] == 0 and counter.count == 0:
        raise DumpCorruptError(path, "empty file", 0)
