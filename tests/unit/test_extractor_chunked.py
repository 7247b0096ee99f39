"""The parallel parser (extractor.chunked) yields exactly what the serial parser yields: same
ordinals, ids, hashes, canonical JSON and errors, across many chunks and tricky content."""

from __future__ import annotations

import functools
import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest

import extractor.chunked as chunked
from common.messages import parse_pipeline_message, records_count_hint
from extractor.baseline import IndexWriter
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


@pytest.mark.parametrize("mark", ["?", "!"])
@pytest.mark.parametrize("data_type", ["releases", "labels"])
def test_cdata_after_many_question_and_exclamation_marks_still_hides_an_end_tag(
    tmp_path: Path, data_type: str, mark: str
) -> None:
    """Whether a chunk may hide tags is looked up through its `!` and `?` (a two-byte search is
    slow); past a thousand of them in one chunk (video URLs are full of `?`) the two-byte search
    must still find the CDATA, or the chunk is cut inside it."""
    tag = data_type[:-1]
    text = "notes" if data_type == "releases" else "profile"
    noisy = f"<{text}>{('watch' + mark + 'v=x ') * 3000}</{text}>"
    hiding = f"<{text}><![CDATA[ </{tag}> <{tag} id='99'><id>99</id> ]]></{text}>"

    def record(i: int) -> str:
        start = f'<release id="{i}">' if data_type == "releases" else f"<label><id>{i}</id>"
        extra = noisy if i == 1 else hiding if i == 2 else ""
        return f"{start}<title>T{i}</title><name>N{i}</name>{extra}</{tag}>\n"

    body = "".join(record(i) for i in range(1, 6))
    assert chunked.split_records(data_type, body.encode()) is None  # not split at the CDATA's end tag
    # Read up to inside record 2's CDATA: the cut is after record 1, not at the CDATA's end tag.
    read_so_far = record(1) + record(2)[: record(2).index("]]>")]
    assert chunked._record_cut(data_type, read_so_far.encode()) == len(record(1).rstrip().encode())
    path = tmp_path / f"discogs_20261101_{data_type}.xml.gz"
    path.write_bytes(gzip.compress(f"<{data_type}>\n{body}</{data_type}>\n".encode()))
    records = _same(path, data_type)
    assert [r.id for r in records] == [1, 2, 3, 4, 5]
    assert all(r.error is None for r in records)


@pytest.mark.parametrize(
    "buf",
    [
        b"",
        b"<",
        b"!",
        b"<!",
        b"<?",
        b"a<?",
        b"?<",
        b"!?<",
        b"x" * 10 + b"<!",
        b"a?" * 2000 + b"<?",
        b"a!" * 2000 + b"<!",
        b"a?" * 2000 + b"<!",
        b"a?" * 2000,
        b"<a?" * 5000,
    ],
)
def test_may_hide_tags_answers_as_the_two_byte_search(buf: bytes) -> None:
    expected = b"<!" in buf or b"<?" in buf
    assert chunked._may_hide_tags(buf) is expected
    assert chunked._may_hide_tags(bytearray(buf)) is expected


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


def _label(i: int, extra: str = "") -> str:
    """A current-layout label; some with sublabels (nested `<label>` elements) and a parent."""
    subs = "".join(f'<label id="{i * 10 + k}">Sub {i}.{k} &amp; co</label>' for k in range(i % 3))
    return (
        f"<label><id>{i}</id><name>Label {i} &amp; co &#233;</name>{extra}"
        + (f"<sublabels>{subs}</sublabels>" if subs else "")
        + (f'<parentLabel id="{i - 1}">Label {i - 1}</parentLabel>' if i > 1 else "")
        + "</label>\n"
    )


RECORD = {"releases": _release, "labels": _label}


def _gz_dump(path: Path, data_type: str, records: list[str]) -> Path:
    path.write_bytes(gzip.compress((f"<{data_type}>\n" + "".join(records) + f"</{data_type}>\n").encode()))
    return path


@pytest.mark.usefixtures("small_chunks")
def test_labels_are_cut_at_record_ends_never_inside_sublabels(tmp_path: Path) -> None:
    records = []
    for i in range(1, 401):
        extra = ""
        if i % 50 == 7:
            extra = "<profile><![CDATA[ </label></sublabels><label> ]]></profile>"
        elif i % 50 == 19:
            extra = "<!-- </label><label> -->"
        elif i % 50 == 24:  # an empty sublabel, and a `>` and `/` inside an attribute value
            extra = '<sublabels><label id="9"/><label id="8" note="a>b/">X</label></sublabels>'
        elif i % 50 == 31:
            extra = "<profile>" + "long text " * 600 + "</profile>"  # bigger than a chunk
        records.append(_label(i, extra))
        if i % 97 == 0:
            records.append("<label/>\n" if i % 2 else "<label><name>no id</name></label>\n")  # malformed
    path = _gz_dump(tmp_path / "discogs_20261101_labels.xml.gz", "labels", records)
    parsed = _same(path, "labels")
    assert [r.id for r in parsed if r.error is None] == list(range(1, 401))
    assert sum(r.error is not None for r in parsed) == 4
    assert [s["id"] for s in orjson.loads(parsed[23].json or b"{}")["sublabels"]] == [9, 8]
    _same(path, "labels", skip=123)


BROKEN_XML = {  # each damages the record's own name or title only
    "mis-nested tag": lambda r: r.replace(" &amp; co", " <b>co</i>", 1),
    "undefined entity": lambda r: r.replace("&amp; co", "&nosuch; co", 1),
    "control character": lambda r: r.replace(" co ", " co \x07 ", 1),
}


# Tag-like text that only a scan stepping over CDATA and comments tells from a record's end.
HIDDEN_ENDS = {
    "releases": ("<notes><![CDATA[ </release><release id='7'> ]]></notes>", "<!-- </release> --><notes/>"),
    "labels": ("<profile><![CDATA[ </label></sublabels><label> ]]></profile>", "<!-- </label><label> -->"),
}


def _records(data_type: str, hidden: bool) -> list[str]:
    """2,999 records; with `hidden`, every tenth (the first at index 0) holds CDATA and every
    tenth (the fifth) a comment, each with tag-like text."""
    cdata, comment = HIDDEN_ENDS[data_type]
    extra = {1: cdata, 5: comment} if hidden else {}
    return [RECORD[data_type](i, extra.get(i % 10, "")) for i in range(1, 3000)]


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("damage", BROKEN_XML.values(), ids=BROKEN_XML.keys())
@pytest.mark.parametrize("with_baseline", [False, True], ids=["full", "against-baseline"])
@pytest.mark.parametrize("hidden", [False, True], ids=["plain", "cdata-and-comments"])
@pytest.mark.parametrize("data_type", ["releases", "labels"])
def test_a_record_whose_xml_is_broken_is_dead_lettered_and_the_rest_lands(
    tmp_path: Path, damage: Any, with_baseline: bool, hidden: bool, data_type: str
) -> None:
    """Also where CDATA and comments hide tag-like text in the broken record and its neighbours."""
    records = _records(data_type, hidden)
    clean = _gz_dump(tmp_path / "clean.xml.gz", data_type, records[:1500] + records[1501:])
    expected = [(r.id, r.sha256) for r in iter_records(clean, data_type)]
    baseline = None
    if with_baseline:  # the broken record changed since the last version; its chunk neighbours did not
        baseline = tmp_path / "index"
        writer = IndexWriter(baseline, data_type)
        for rec in iter_records_parallel(_gz_dump(tmp_path / "v1.xml.gz", data_type, records), data_type):
            assert rec.id is not None and rec.sha256 is not None
            writer.add(rec.id, rec.raw_hash, rec.sha256)
        assert writer.finish()
    records[1500] = damage(records[1500])
    path = _gz_dump(tmp_path / "r.xml.gz", data_type, records)

    out = list(iter_records_parallel(path, data_type, workers=2, baseline=baseline))

    assert [r.ordinal for r in out] == list(range(1, 3000))  # nothing lost, nothing twice
    bad = out[1500]
    assert bad.id is None and bad.error is not None and bad.raw is not None
    assert bad.error.startswith("XML is not well formed") and "(record #1501, raw id '1501')" in bad.error
    assert bad.raw == records[1500].strip().encode()
    good = [r for r in out if r.error is None]
    assert [(r.id, r.sha256) for r in good] == expected
    unchanged = sum(r.unchanged for r in good)
    if not with_baseline:
        assert unchanged == 0
    elif not hidden:
        assert unchanged == 2998
    else:  # a chunk holding CDATA or comments is not split for the baseline: all parsed again
        assert 0 < unchanged < 2998


def test_the_serial_parser_still_fails_a_file_with_a_broken_record(tmp_path: Path) -> None:
    """Only a dump whose prolog the chunks do not handle (a DOCTYPE, an encoding that does not
    spell ASCII as ASCII) is read by the serial parser, which cannot step over broken XML."""
    records = [_release(i) for i in range(1, 10)]
    records[4] = BROKEN_XML["undefined entity"](records[4])
    path = _gz_dump(tmp_path / "r.xml.gz", "releases", records)
    with pytest.raises(DumpCorruptError, match="not well formed"):
        list(iter_records(path, "releases"))
    assert sum(r.error is not None for r in iter_records_parallel(path, "releases", workers=2)) == 1


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("data_type", ["releases", "labels"])
def test_a_processing_instruction_never_closed_fails_the_file_after_the_records_before_it(
    tmp_path: Path, data_type: str
) -> None:
    """A `<?` never closed hides everything after it (a `?>` could come in any later record): no
    record is cut from what follows, and the file fails after every record before it, saying why."""
    records = _records(data_type, hidden=True)
    records[1500] = records[1500].replace(" co ", " co <? oops ", 1)
    path = _gz_dump(tmp_path / "r.xml.gz", data_type, records)
    seen: list[int] = []
    with pytest.raises(DumpCorruptError) as info:
        seen.extend(r.ordinal for r in iter_records_parallel(path, data_type, workers=2))
    assert "not well formed" in str(info.value) and "'<?' opened and never closed" in str(info.value)
    assert seen == list(range(1, 1501))


def test_a_dump_of_another_type_is_refused_before_its_records(tmp_path: Path) -> None:
    """An artists dump named as releases is not read to its end for no record (nor buffered whole
    in memory looking for a `</release>`): both parsers refuse it at its root element."""
    path = tmp_path / "discogs_20261101_releases.xml.gz"
    path.write_bytes((SAMPLES / "discogs_20200806_artists.xml.gz").read_bytes())
    for parse in (iter_records, functools.partial(iter_records_parallel, workers=2)):
        with pytest.raises(DumpCorruptError, match=r"the root element is <artists>, not <releases>"):
            list(parse(path, "releases"))


@pytest.mark.usefixtures("small_chunks")
def test_a_record_that_never_ends_fails_the_file_with_bounded_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chunked, "MAX_RECORD_BYTES", 50_000)
    unterminated = '<release id="2"><notes>' + "no end " * 20_000
    path = tmp_path / "r.xml"
    path.write_text("<releases>\n" + _release(1) + unterminated + "</notes></releases>\n")
    seen: list[int | None] = []
    with pytest.raises(DumpCorruptError, match=r"no record end \(</release>\) in 0\.\d MB"):
        seen.extend(r.id for r in iter_records_parallel(path, "releases", workers=2))
    assert seen == [1]


def _latin1_dump(path: Path, records: list[str], encoding: str = "ISO-8859-1") -> Path:
    xml = f'<?xml version="1.0" encoding="{encoding}"?>\n<releases>\n' + "".join(records) + "</releases>\n"
    path.write_bytes(gzip.compress(xml.encode("latin-1")))
    return path


def _accented(i: int) -> str:
    return _release(i, f"<notes>Caf\u00e9 M\u00fcller \u00bd {i}</notes>")


@pytest.mark.usefixtures("small_chunks")
def test_a_dump_in_another_encoding_is_read_in_parallel_as_utf8(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ISO-8859-1 dump gives the serial parser's records (accents decoded), through the chunks."""
    path = _latin1_dump(tmp_path / "r.xml.gz", [_accented(i) for i in range(1, 400)])
    serial = list(iter_records(path, "releases"))
    monkeypatch.setattr(chunked, "iter_records", None)  # the serial fallback is not taken
    parallel = list(iter_records_parallel(path, "releases", workers=2))
    assert [_key(r) for r in parallel] == [_key(r) for r in serial]
    assert orjson.loads(parallel[6].json or b"{}")["notes"] == "Caf\u00e9 M\u00fcller \u00bd 7"


@pytest.mark.usefixtures("small_chunks")
def test_a_broken_record_in_another_encoding_is_dead_lettered_and_the_rest_lands(tmp_path: Path) -> None:
    records = [_accented(i) for i in range(1, 400)]
    records[200] = BROKEN_XML["undefined entity"](records[200])
    path = _latin1_dump(tmp_path / "r.xml.gz", records, encoding="windows-1252")
    out = list(iter_records_parallel(path, "releases", workers=2))
    assert [r.ordinal for r in out] == list(range(1, 400))
    assert [r.id for r in out if r.error is not None] == [None]
    assert out[200].error is not None and "nosuch" in out[200].error
    assert out[200].raw == records[200].strip().encode()  # the raw XML travels as UTF-8


@pytest.mark.usefixtures("small_chunks")
def test_bytes_not_in_the_declared_encoding_fail_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r.xml.gz"
    records = [_accented(i) for i in range(1, 400)]  # é as latin-1 bytes: not US-ASCII
    path = _latin1_dump(path, [_release(i) for i in range(1, 100)] + records, encoding="US-ASCII")
    seen: list[int] = []
    with pytest.raises(DumpCorruptError, match=r"is not ascii as its declaration says") as info:
        seen.extend(r.ordinal for r in iter_records_parallel(path, "releases", workers=2))
    assert seen == list(range(1, len(seen) + 1)) and 0 < len(seen) < 100  # those before the damage
    assert f"after record {len(seen)}" in str(info.value)


@pytest.mark.parametrize(
    "doctype", ['<!DOCTYPE releases [<!ENTITY x "ex">]>', '<!DOCTYPE releases SYSTEM "releases.dtd">']
)
def test_a_doctype_that_could_declare_entities_falls_back_to_the_serial_parser(
    tmp_path: Path, doctype: str
) -> None:
    path = tmp_path / "r.xml"
    path.write_text(doctype + "\n<releases>" + _release(1) + "</releases>")
    assert chunked._prolog(path.read_bytes()) is None
    _same(path, "releases")


def test_a_bare_doctype_is_read_in_parallel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`<!DOCTYPE releases>` changes nothing: the chunks read the file, and a DOCTYPE spelled in a
    record's text is no prolog."""
    records = [
        _release(i, "<notes>&lt;!DOCTYPE x&gt; <![CDATA[<!DOCTYPE y>]]></notes>") for i in range(1, 50)
    ]
    records[20] = BROKEN_XML["undefined entity"](records[20])
    path = tmp_path / "r.xml"
    path.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE releases >\n<releases>' + "".join(records) + "</releases>"
    )
    monkeypatch.setattr(chunked, "iter_records", None)  # the serial fallback is not taken
    out = list(iter_records_parallel(path, "releases", workers=2))
    assert [r.ordinal for r in out] == list(range(1, 50))
    assert [r.id for r in out if r.error is None] == [i for i in range(1, 50) if i != 21]


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
