"""The record index (extractor.baseline) and what the parse does with it: a record whose raw XML is
unchanged since the previous completed version is not normalised again and comes back with the
sha256 of that version; anything else is parsed in full, in both the parallel and serial paths."""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import extractor.baseline as baseline_mod
import extractor.chunked as chunked
from common.messages import parse_pipeline_message
from common.writes import GRAPH_MODEL
from extractor.baseline import Baseline, IndexWriter, find_baseline, index_dir, prune_indexes, raw_hash
from extractor.chunked import _raw_ids, iter_records_parallel, split_records
from extractor.normalize import RECORD_TAGS
from extractor.parser import ParsedRecord, iter_records
from extractor.state import StateStore
from extractor.worker import produce

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SHA = "ab" * 32


def _parse(path: Path, data_type: str, workers: int, **options: Any) -> Iterator[ParsedRecord]:
    """The chunked parser on `workers` processes; 0: the serial one (a prolog chunks do not handle)."""
    if workers == 0:
        return iter_records(path, data_type, **options)
    return iter_records_parallel(path, data_type, workers=workers, **options)


def _index(directory: Path, data_type: str, path: Path, workers: int = 2) -> int:
    writer = IndexWriter(directory, data_type)
    for rec in _parse(path, data_type, workers):
        if rec.error is None:
            assert rec.id is not None and rec.sha256 is not None
            writer.add(rec.id, rec.raw_hash, rec.sha256)
    assert writer.finish()
    return writer.count


def _complete(data_dir: Path, version: str) -> None:
    store = StateStore(data_dir, version)
    state = store.load()
    state.extraction_complete_sent = True
    store.save(state)


def _key(r: ParsedRecord) -> tuple[Any, ...]:
    return (r.ordinal, r.id, r.sha256, r.error)


def test_index_round_trip_and_lookups(tmp_path: Path) -> None:
    writer = IndexWriter(tmp_path, "releases")
    for rid in (3, 7):
        writer.add(rid, raw_hash(b"<release id='%d'/>" % rid), f"{rid:064x}")
    writer.add(9, None, SHA)  # a record parsed without a raw hash: never matches
    writer.add(1 << 40, raw_hash(b"<release id='%d'/>" % (1 << 40)), f"{1 << 40:064x}")
    assert writer.finish()
    index = Baseline(tmp_path, "releases")
    assert index.count == 4
    assert index.lookup(7) == (raw_hash(b"<release id='7'/>"), f"{7:064x}")
    assert index.lookup(1 << 40) == (raw_hash(b"<release id='%d'/>" % (1 << 40)), f"{1 << 40:064x}")
    assert index.lookup(9) == (bytes(8), SHA)
    assert [index.lookup(x) for x in (0, 4, 8, 10, 2**62)] == [None] * 5
    assert not list(tmp_path.glob("*.part"))


def test_ids_not_ascending_leave_no_index(tmp_path: Path) -> None:
    writer = IndexWriter(tmp_path, "artists")
    writer.add(5, None, SHA)
    writer.add(5, None, SHA)  # a duplicate id: which copy the stores hold is not known
    assert not writer.finish()
    assert list(tmp_path.iterdir()) == []
    empty = IndexWriter(tmp_path, "labels")
    assert empty.finish() and Baseline(tmp_path, "labels").lookup(1) is None


def test_the_baseline_is_the_newest_completed_version_only(tmp_path: Path) -> None:
    for version in ("20260101", "20260201", "20260301"):
        directory = index_dir(tmp_path, version)
        for data_type in ("artists", "releases"):
            writer = IndexWriter(directory, data_type)
            writer.add(1, None, SHA)
            assert writer.finish()
    # Only completed versions count: the stores may lack part of an unfinished one.
    assert find_baseline(tmp_path, "20260401", "releases") is None
    _complete(tmp_path, "20260101")
    _complete(tmp_path, "20260201")
    assert find_baseline(tmp_path, "20260401", "releases") == index_dir(tmp_path, "20260201")
    assert find_baseline(tmp_path, "20260201", "releases") == index_dir(tmp_path, "20260101")
    assert find_baseline(tmp_path, "20260101", "releases") is None  # nothing older
    # The newest completed version has no usable index of a type: publish it in full, never
    # compare with an older index (the stores hold newer content than it describes).
    (index_dir(tmp_path, "20260201") / "releases.json").unlink()
    assert find_baseline(tmp_path, "20260401", "releases") is None
    assert find_baseline(tmp_path, "20260401", "artists") == index_dir(tmp_path, "20260201")
    prune_indexes(tmp_path, "20260201")
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == ["20260201", "20260301"]


@pytest.mark.parametrize("version", ["NORMALIZER_VERSION", "GRAPH_MODEL"])
def test_an_index_of_another_normaliser_or_graph_model_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    """After an upgrade that changes either, the next dump version is published in full, so every
    stored record is written again in the new form (unchanged items could not rewrite it)."""
    _index(index_dir(tmp_path, "20260101"), "masters", SAMPLES / "discogs_20200806_masters.xml.gz")
    _complete(tmp_path, "20260101")
    assert find_baseline(tmp_path, "20260201", "masters") is not None
    monkeypatch.setattr(baseline_mod, version, getattr(baseline_mod, version) + 1)
    assert find_baseline(tmp_path, "20260201", "masters") is None


def test_an_index_from_before_the_graph_model_was_recorded_counts_as_model_1(tmp_path: Path) -> None:
    _index(index_dir(tmp_path, "20260101"), "masters", SAMPLES / "discogs_20200806_masters.xml.gz")
    _complete(tmp_path, "20260101")
    meta_path = index_dir(tmp_path, "20260101") / "masters.json"
    meta = orjson.loads(meta_path.read_bytes())
    assert meta.pop("graph_model") == GRAPH_MODEL == 1
    meta_path.write_bytes(orjson.dumps(meta))
    assert find_baseline(tmp_path, "20260201", "masters") == index_dir(tmp_path, "20260101")


def test_split_records_cuts_at_end_tags_and_refuses_unsafe_chunks() -> None:
    chunk = b'\n<release id="12" status="Accepted"><title>a</title></release>\n<release id="13"></release>\n'
    pieces = split_records("releases", chunk)
    assert pieces is not None
    assert [bytes(p) for p in pieces] == [
        b'\n<release id="12" status="Accepted"><title>a</title>',
        b'\n<release id="13">',
    ]
    assert _raw_ids("releases", pieces) == [12, 13]
    artists = b"<artist><images><image/></images><id>7</id><members><id>9</id></members></artist>"
    nameless = b"<artist><name>x</name></artist>"
    pieces = split_records("artists", artists + nameless)
    assert pieces is not None and _raw_ids("artists", pieces) == [7, None]
    for unsafe in (
        b"<release id='1'><notes><![CDATA[ </release> ]]></notes></release>",
        b"<release id='1'><!-- </release> --></release>",
        b"<release id='1'></release>junk",
    ):
        assert split_records("releases", unsafe) is None


@pytest.mark.parametrize("workers", [2, 1, 0])
@pytest.mark.parametrize("data_type", ["artists", "labels", "masters", "releases"])
def test_unchanged_records_come_back_with_the_old_hash_and_changed_ones_in_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_type: str, workers: int
) -> None:
    monkeypatch.setattr(chunked, "CHUNK_BYTES", 4096)  # many chunks
    monkeypatch.setattr(chunked, "_READ_BYTES", 1500)
    old = SAMPLES / f"discogs_20200806_{data_type}.xml.gz"
    directory = tmp_path / "index"
    assert _index(directory, data_type, old, workers) == 1000
    new = tmp_path / f"new_{data_type}.xml.gz"
    # The first record's text changes; the 500th gains a comment; the rest is byte-identical.
    records = [r for r in iter_records(old, data_type) if r.error is None]
    first, other = records[0], records[499]
    assert first.record is not None
    name = "title" if data_type in ("masters", "releases") else "name"
    tag = name.encode()
    text = b"<%s>%s</%s>" % (tag, str(first.record[name]).replace("&", "&amp;").encode(), tag)
    data = gzip.decompress(old.read_bytes())
    assert data.count(text) == 1
    data = data.replace(text, text.replace(b"</", b" (remastered)</"))
    if data_type != "labels":  # a label's end tag also closes its sublabels
        end_tag = b"</%s>" % RECORD_TAGS[data_type].encode()
        at = -1
        for _ in range(500):
            at = data.index(end_tag, at + 1)
        data = data[:at] + b"<!-- x -->" + data[at:]
    new.write_bytes(gzip.compress(data))
    full = list(_parse(new, data_type, workers))
    compared = list(_parse(new, data_type, workers, baseline=directory))
    assert [_key(r) for r in compared] == [_key(r) for r in full]
    changed = [r.id for r in compared if not r.unchanged]
    assert first.id in changed
    assert first.sha256 != next(r.sha256 for r in compared if r.id == first.id)
    for r in compared:
        if r.unchanged:
            assert r.json is None and r.record is None
        else:
            assert r.json is not None and orjson.loads(r.json)["id"] == r.id
    if workers and data_type != "labels":
        assert other.id in changed  # the split refuses a comment: its chunk is parsed in full
        assert len(changed) < 100  # the rest of the file was not normalised again
    else:  # the serial parse hashes the element without its comments
        assert changed == [first.id]
    # A resumed parse compares the same way.
    resumed = list(_parse(new, data_type, workers, skip=700, baseline=directory))
    assert [_key(r) for r in resumed] == [_key(r) for r in full[700:]]


def test_produce_publishes_unchanged_items_and_writes_the_next_index(tmp_path: Path) -> None:
    source = SAMPLES / "discogs_20200806_releases.xml.gz"
    first = tmp_path / "index-1"
    items: list[Any] = []
    produce(source, "releases", "20200806", 0, 100, items.append, parse_workers=2, index_dir=str(first))
    assert Baseline(first, "releases").count == 1000
    items.clear()
    second = tmp_path / "index-2"
    produce(
        source, "releases", "20200807", 0, 100, items.append,
        parse_workers=2, baseline=str(first), index_dir=str(second),
    )  # fmt: skip
    messages = [m for kind, *rest in items if kind == "batch" for m in rest[0]]
    assert sum(m[2] for m in messages) == 1000 and sum(m[5] for m in messages) == 1000
    decoded = [r for m in messages for r in parse_pipeline_message(m[3]).messages()]  # type: ignore[union-attr]
    assert all(r.record is None for r in decoded)
    assert {r.id: r.sha256 for r in decoded} == {
        r.id: r.sha256 for r in iter_records(source, "releases") if r.error is None
    }
    # The new index equals the old one: same ids, raw hashes and hashes.
    for suffix in ("ids", "vals"):
        assert (second / f"releases.{suffix}").read_bytes() == (first / f"releases.{suffix}").read_bytes()
    # Resuming mid-file writes no index (the records before the checkpoint are not read again).
    third = tmp_path / "index-3"
    produce(source, "releases", "20200807", 400, 100, items.append, parse_workers=2, index_dir=str(third))
    assert not (third / "releases.json").exists()


def test_an_unreadable_index_fails_loudly(tmp_path: Path) -> None:
    _index(tmp_path, "masters", SAMPLES / "discogs_20200806_masters.xml.gz")
    with (tmp_path / "masters.ids").open("r+b") as fh:
        fh.truncate(80)
    with pytest.raises(ValueError, match="does not match"):
        Baseline(tmp_path, "masters")
    shutil.rmtree(tmp_path)
