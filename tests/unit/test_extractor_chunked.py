"""The parallel parser (extractor.chunked) yields exactly what the serial parser yields: same
ordinals, ids, hashes, canonical JSON and errors, across many chunks and tricky content."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

import extractor.chunked as chunked
from common.messages import parse_pipeline_message, records_count_hint
from extractor.chunked import iter_records_parallel
from extractor.parser import DumpCorruptError, ParsedRecord, iter_records
from extractor.worker import MessageBuilder, produce

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def _key(r: ParsedRecord) -> tuple[Any, ...]:
    return (r.ordinal, r.id, r.sha256, r.json, r.error)


def _same(path: Path, data_type: str, skip: int = 0) -> list[ParsedRecord]:
    serial = list(iter_records(path, data_type, skip=skip))
    parallel = list(iter_records_parallel(path, data_type, skip=skip, workers=2))
    assert [_key(r) for r in parallel] == [_key(r) for r in serial]
    return parallel


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut every few records so a small file spans many chunks (and reads)."""
    monkeypatch.setattr(chunked, "CHUNK_BYTES", 2048)
    monkeypatch.setattr(chunked, "_READ_BYTES", 1500)


def _release(i: int, extra: str = "") -> str:
    return (
        f'<release id="{i}" status="Accepted"><title>R {i} &amp; co &#233;</title>'
        f"<artists><artist><id>{i % 7 + 1}</id><name>A{i}</name></artist></artists>"
        f"<genres><genre>Rock</genre></genres>{extra}"
        f'<master_id is_main_release="true">{i}</master_id></release>\n'
    )


def _tricky_releases(n: int) -> str:
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<!-- a comment </release> before the root -->\n<releases>\n'
    ]
    for i in range(1, n + 1):
        extra = ""
        if i % 50 == 7:  # a closing tag inside CDATA must not be taken for a record boundary
            extra = "<notes><![CDATA[odd </release> text <release id='99'> ]]></notes>"
        elif i % 50 == 19:  # nor inside a comment
            extra = "<!-- </release><release id='98'> --><notes/>"
        elif i % 50 == 31:
            extra = "<notes>" + "long text " * 600 + "</notes>"  # bigger than a chunk
        parts.append(_release(i, extra))
        if i % 97 == 0:
            parts.append("<release><title>no id</title></release>\n")  # malformed, dead-lettered
    parts.append("</releases>\n")
    return "".join(parts)


@pytest.mark.usefixtures("small_chunks")
def test_many_chunks_with_cdata_comments_entities_and_malformed(tmp_path: Path) -> None:
    path = tmp_path / "discogs_20261101_releases.xml.gz"
    path.write_bytes(gzip.compress(_tricky_releases(400).encode()))
    records = _same(path, "releases")
    assert len(records) == 400 + 4
    assert sum(r.error is not None for r in records) == 4
    assert [r.id for r in records if r.error is None] == list(range(1, 401))
    _same(path, "releases", skip=123)  # resume mid-chunk


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("data_type", ["artists", "labels", "masters", "releases"])
def test_real_samples_both_layouts(data_type: str) -> None:
    _same(SAMPLES / f"discogs_20200806_{data_type}.xml.gz", data_type)
    _same(SAMPLES / f"discogs_20200806_{data_type}.xml.gz", data_type, skip=555)


def test_current_layout_samples() -> None:
    for path in sorted(SAMPLES.glob("discogs_2026*_*.xml")):
        data_type = path.name.split("_")[2].split(".")[0]
        assert _same(path, data_type)


@pytest.mark.usefixtures("small_chunks")
def test_truncated_gzip_yields_whole_chunks_then_fails(tmp_path: Path) -> None:
    data = gzip.compress(_tricky_releases(400).encode())
    path = tmp_path / "discogs_20261101_releases.xml.gz"
    path.write_bytes(data[: len(data) * 2 // 3])
    serial: list[int] = []
    with pytest.raises(DumpCorruptError):
        serial.extend(r.ordinal for r in iter_records(path, "releases"))
    parallel: list[int] = []
    with pytest.raises(DumpCorruptError) as info:
        parallel.extend(r.ordinal for r in iter_records_parallel(path, "releases", workers=2))
    assert "truncated" in str(info.value)
    # Both hand out every whole record they could read (how far that is depends on read sizes).
    shorter, longer = (parallel, serial) if len(parallel) <= len(serial) else (serial, parallel)
    assert len(shorter) > 0 and longer[: len(shorter)] == shorter
    assert parallel == list(range(1, len(parallel) + 1))
    assert f"after record {len(parallel)}" in str(info.value)


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize(
    ("tail", "why"),
    [
        ('<release id="9"><title>cut', "truncated record"),
        ("<release id='9'><title>x</title></release>", "unexpected content"),  # no root close
        ("<release id='9'><title>x</titel></release></releases>", "not well formed"),
    ],
)
def test_broken_end_fails_the_file(tmp_path: Path, tail: str, why: str) -> None:
    path = tmp_path / "r.xml"
    path.write_text("<releases>\n" + "".join(_release(i) for i in range(1, 60)) + tail)
    with pytest.raises(DumpCorruptError) as info:
        list(iter_records_parallel(path, "releases", workers=2))
    assert why in str(info.value) or "not well formed" in str(info.value)
    with pytest.raises(DumpCorruptError):
        list(iter_records(path, "releases"))


@pytest.mark.usefixtures("small_chunks")
def test_broken_xml_mid_file_stops_at_the_broken_chunk(tmp_path: Path) -> None:
    records = [_release(i) for i in range(1, 3000)]
    records[1500] = records[1500].replace("</title>", "</titel>")  # not well formed
    path = tmp_path / "r.xml.gz"
    path.write_bytes(gzip.compress(("<releases>\n" + "".join(records) + "</releases>\n").encode()))
    seen: list[int] = []
    with pytest.raises(DumpCorruptError) as info:
        seen.extend(r.ordinal for r in iter_records_parallel(path, "releases", workers=2))
    assert "not well formed" in str(info.value)
    assert seen == list(range(1, len(seen) + 1)) and 0 < len(seen) <= 1500  # nothing after the damage


def test_doctype_falls_back_to_the_serial_parser(tmp_path: Path) -> None:
    path = tmp_path / "r.xml"
    path.write_text('<!DOCTYPE releases [<!ENTITY x "ex">]>\n<releases>' + _release(1) + "</releases>")
    assert chunked._prolog(path.read_bytes()) is None
    _same(path, "releases")


def test_message_builder_limits() -> None:
    builder = MessageBuilder("releases", "20261101", max_records=3, max_bytes=1000)
    out = []
    for i in range(1, 8):
        out += builder.add(i, i * 10, b'{"id":%d}' % i)
    out += builder.flush()
    assert [(last, count) for last, _, count, _, _, _ in out] == [(3, 3), (6, 3), (7, 1)]
    big = MessageBuilder("releases", "20261101", max_records=100, max_bytes=1000)
    done = big.add(1, 0, b"x" * 10) + big.add(2, 0, b"y" * 5000) + big.add(3, 0, b"z" * 10)
    assert [(last, count) for last, _, count, _, _, _ in done] == [(1, 1), (2, 1)]  # the big one alone


def test_produce_groups_records_and_dead_letters_in_order(tmp_path: Path) -> None:
    path = tmp_path / "discogs_20261101_releases.xml"
    path.write_text("<releases>" + _release(1) + _release(2) + "<release/>" + _release(4) + "</releases>")
    items: list[Any] = []
    produce(path, "releases", "20261101", 0, 100, items.append, message_records=10, parse_workers=2)
    batches = [i for i in items if i[0] == "batch"]
    messages = [m for _, batch in batches for m in batch]
    assert [(last, count, error is None) for last, _, count, _, error, _ in messages] == [
        (2, 2, True),
        (3, 1, False),
        (4, 1, True),
    ]
    first = parse_pipeline_message(messages[0][3])
    assert records_count_hint(messages[0][3]) == 2
    assert [r.id for r in first.messages()] == [1, 2]  # type: ignore[union-attr]
    assert items[-1][0] == "done" and items[-1][1] == 4
