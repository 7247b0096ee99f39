"""The native normaliser of releases (extractor.native, extractor/rust_normalizer) answers, for each
record, exactly what the Python normaliser makes, or leaves the record to it; a chunk parses to the
same records, hashes and errors either way."""

from __future__ import annotations

import gzip
import os
import random
from pathlib import Path

import pytest

import extractor.chunked as chunked
from benchmarks.generate_dump import Gen
from extractor import native

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
OPEN, CLOSE = b"<releases>", b"</releases>"

pytestmark = pytest.mark.skipif(
    not native.available() and os.environ.get("CI") != "true",
    reason="the native library is not built (make install builds it where cargo exists)",
)


def test_the_library_is_built_where_ci_runs() -> None:
    # CI builds it (make install); without it this module would compare Python with itself.
    assert native.available()


def python_only(chunk: bytes, monkeypatch: pytest.MonkeyPatch) -> object:
    with monkeypatch.context() as patch:
        patch.setattr(native, "normalize_releases", lambda _chunk: None)
        return chunked.parse_chunk("releases", OPEN, CLOSE, chunk)


def assert_same(chunk: bytes, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bytes] | None]:
    """The chunk parses the same with and without the native path; returns the native answers."""
    assert chunked.parse_chunk("releases", OPEN, CLOSE, chunk) == python_only(chunk, monkeypatch)
    answers = native.normalize_releases(chunk)
    assert answers is not None
    return answers


def sample_records() -> list[bytes]:
    data = gzip.decompress((SAMPLES / "discogs_20200806_releases.xml.gz").read_bytes())
    body = data[data.index(b"<release ") : data.rindex(b"</release>")]
    return [piece.strip() + b"</release>" for piece in body.split(b"</release>")]


def generated_records(count: int) -> list[bytes]:
    gen = Gen(2000, seed=7)
    return [gen.release(i).encode() for i in range(1, count + 1)]


@pytest.mark.parametrize("source", ["samples_2020", "generated_current"])
def test_real_records_take_the_native_path_and_match(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    records = sample_records() if source == "samples_2020" else generated_records(600)
    assert len(records) >= 600
    for start in range(0, len(records), 50):
        chunk = b"\n".join(records[start : start + 50]) + b"\n"
        answers = assert_same(chunk, monkeypatch)
        assert all(answer is not None for answer in answers), "a plain dump record left to Python"


def release(body: str, attrs: str = 'id="42" status="Accepted"') -> bytes:
    return f"<release {attrs}>{body}</release>".encode()


Case = str | tuple[str, str]  # the release's content, or its content and start-tag attributes


def between_normal_records(spec: Case) -> bytes:
    record = release(*spec) if isinstance(spec, tuple) else release(spec)
    normal = generated_records(2)
    return normal[0] + b"\n" + record + b"\n" + normal[1]


# Records the native path must read itself, each as lxml and the Python normaliser read them.
HANDLED: dict[str, Case] = {
    "entities in text": "<title>Rock &amp; Roll &lt;3 &gt; &quot;x&quot; &apos;y&apos;</title>",
    "character references": "<title>&#13;caf&#233; &#x1F600; &#x41;&#65;</title><notes>a&#10;b&#9;c</notes>",
    "entities in attributes": '<labels><label name="A &amp; B &#x26; C" catno="&lt;1&gt;" id="7"/></labels>',
    "tab, newline and CR LF in attributes": '<labels><label name="a\tb\nc\r\nd" catno=" x " id=" 8 "/>'
    "</labels>",
    "CR LF and lone CR in text": "<notes>one\r\ntwo\rthree</notes><title> \r\n </title>",
    "white space and NBSP": "<title>\u00a0 name \u00a0</title><country>   </country><notes>\t\n</notes>",
    "empty elements": "<title/><genres/><styles></styles><tracklist/><images/><released/>",
    "last duplicate wins": "<title>first</title><title>second</title><genres><genre>A</genre></genres>"
    "<genres><genre>B</genre><genre> </genre><genre/></genres>",
    "credit keeps a name an empty one follows": "<artists><artist><id>1</id><name>Kept</name><name/>"
    "<anv> </anv><join>,</join><role>Mix</role><tracks>1-2</tracks></artist><artist/></artists>",
    "numbers in every form": '<formats><format name="CD" qty="007" text=" t "><descriptions>'
    '<description>Album</description></descriptions></format><format qty="+2"/><format qty=""/>'
    '<format qty="99999999999999999999"/><format qty="x"/></formats>'
    '<labels><label id="0"/><label id="-5"/><label id="+6"/><label id="99999999999999999999"/>'
    '<label id="1_000"/></labels><master_id is_main_release="TRUE"> 0012 </master_id>',
    "years": "<released>1999-05-01</released>",
    "a date without separator": "<released>19990501</released>",
    "an implausible year": "<released>0999</released>",
    "a short date": "<released>199</released>",
    "a year with a letter": "<released>199x</released>",
    "main release flag": '<master_id is_main_release=" no ">5</master_id>',
    "images kept as written": '<images><image type=" primary " uri="" uri150="u" width=" 600 " height="x"/>'
    "<image/></images>",
    "videos": '<videos><video src=" s " duration="abc" embed="False"><title> T </title><description/>'
    '</video><video duration="-3" embed="yes"/></videos>',
    "companies": "<companies><company><id> 9 </id><name>N</name><catno/><entity_type>x</entity_type>"
    "<entity_type_name>Pressed By</entity_type_name><resource_url>u</resource_url></company></companies>",
    "identifiers and series": '<identifiers><identifier type="Barcode" value=" 1 " description=""/>'
    '</identifiers><series><series name="S" catno="1" id="3"/></series>',
    "nested sub-tracks": "<tracklist><track><position>1</position><title>T</title><duration/>"
    "<sub_tracks><track><position>1a</position><title>Sub</title><extraartists><artist><id>4</id>"
    "<name>X</name><role>Vocals</role></artist></extraartists><sub_tracks/></track></sub_tracks>"
    "</track></tracklist>",
    "text around child elements": "<title>lead<b>child</b>tail</title><genres>text<genre>Rock</genre>"
    "tail</genres>",
    "single quotes and spaced attributes": "<labels><label name = 'Q \"x\"' id='3'  /></labels>",
    "spaced end tag": "<title>t</title >",
    "no status": ("<title>t</title>", 'id="42"'),
    "an id with spaces and a sign": ("<title>t</title>", 'id=" +42 "'),
}


@pytest.mark.parametrize("case", list(HANDLED))
def test_tricky_records_read_natively_match_python(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = assert_same(between_normal_records(HANDLED[case]), monkeypatch)
    assert all(answer is not None for answer in answers), f"{case}: left to Python"


# Records the native path leaves to Python (unknown to it, or broken: lxml says how).
LEFT: dict[str, Case] = {
    "unknown child": "<title>t</title><newfield>x</newfield>",
    "unknown attribute": ("<title>t</title>", 'id="42" lang="en"'),
    "known key as a child": "<year>1999</year>",
    "CDATA": "<notes><![CDATA[a <b> c]]></notes>",
    "comment": "<notes>a<!-- c -->b</notes>",
    "processing instruction": "<notes>a<?pi x?>b</notes>",
    "undefined entity": "<title>&nbsp;</title>",
    "upper-case hex reference": "<title>&#X41;</title>",
    "reference to a forbidden character": "<title>&#1;</title>",
    "control character": "<title>a\x01b</title>",
    "U+FFFE": "<title>a\ufffeb</title>",
    "mismatched tags": "<title>t</titel>",
    "duplicate attribute": '<labels><label id="1" id="2"/></labels>',
    "< in an attribute": '<labels><label name="a<b"/></labels>',
    "unquoted attribute": "<labels><label name=a/></labels>",
    "]]> in text": "<title>a]]>b</title>",
    "namespace prefix": "<x:title>t</x:title>",
    "missing id": ("<title>t</title>", 'status="Accepted"'),
    "zero id": ("<title>t</title>", 'id="0"'),
    "id beyond 64 bits": ("<title>t</title>", 'id="99999999999999999999"'),
    "a year followed by a non-ASCII digit": "<released>1999\u0663</released>",
    "unclosed child": "<title>t",
    "nested deeper than the reader goes": "<title>t</title><tracklist>"
    + "<track><sub_tracks>" * 40
    + "</sub_tracks></track>" * 40
    + "</tracklist>",
    "nested deeper than Python recurses": "<extra>" + "<x>" * 1500 + "</x>" * 1500 + "</extra>",
}


@pytest.mark.parametrize("case", list(LEFT))
def test_records_left_to_python_parse_as_python_parses_them(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = assert_same(between_normal_records(LEFT[case]), monkeypatch)
    assert answers[0] is not None and answers[2] is not None
    assert answers[1] is None, f"{case}: read natively"


def test_a_nested_release_element_falls_back_to_the_whole_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    # lxml reads one record holding a <release> child; cut at every </release> the pieces are not
    # records, so only the whole chunk's parse can tell, and it must be the one used.
    normal = generated_records(2)
    chunk = normal[0] + release("<release>inner</release><title>outer</title>") + normal[1]
    records, error = chunked.parse_chunk("releases", OPEN, CLOSE, chunk)
    assert error is None
    assert (records, error) == python_only(chunk, monkeypatch)
    assert [record[0] for record in records] == [1, 42, 2]


def test_invalid_utf8_is_left_to_python(monkeypatch: pytest.MonkeyPatch) -> None:
    normal = generated_records(2)
    chunk = normal[0] + b'<release id="42"><title>\xff</title></release>' + normal[1]
    answers = assert_same(chunk, monkeypatch)
    assert answers[1] is None


MUTATIONS = [
    *(b"<", b"&", b">", b'"', b"'", b"]]>", b"/", b"=", b" ", b"\n", b"\r", b"\r\n", b"\t", b"\x01"),
    *(b"&#0;", b"&#x41;", b"&#X41;", b"&#13;", b"&#xD800;", b"&#65", b"&amp;", b"&lt;", b"&foo;"),
    *("é".encode(), "\u00a0".encode(), b"\xff", b"\xef\xbf\xbe", b"x:y", b"-", b"+", b"0", b"9" * 20),
    *(b"<x>", b"</x>", b"<x/>", b" a='1'", b' a="1"', b"<!-- c -->", b"<![CDATA[x]]>", b"<?pi x?>"),
    *(b"<title>t</title>", b"<id>5</id>", b"<release>", b"</release>"),
]


def test_mutated_records_parse_the_same_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """Random damage to real records (seeded): wherever the native path reads a record, it reads
    it as Python does; where Python refuses one, so does it."""
    rng = random.Random(20261202)
    records = sample_records()
    read_natively = 0
    for _ in range(1500):
        mutant = rng.choice(records)
        for _ in range(rng.randint(1, 2)):
            if rng.random() < 0.6:  # just after a tag or inside an attribute value: text
                at = rng.choice([i + 1 for i, byte in enumerate(mutant) if byte in b'>"'])
            else:
                at = rng.randrange(len(mutant) + 1)
            roll = rng.random()
            if roll < 0.3:
                mutant = mutant[:at] + mutant[at + 1 :]
            elif roll < 0.4:
                mutant = mutant[:at] + mutant[at : at + 1] + mutant[at:]
            else:
                mutant = mutant[:at] + rng.choice(MUTATIONS) + mutant[at:]
        chunk = rng.choice(records) + b"\n" + mutant + b"\n" + rng.choice(records)
        if chunked.split_records("releases", chunk) is None:
            continue  # `<!` or `<?`: the chunk is not split, so no native path either
        assert chunked.parse_chunk("releases", OPEN, CLOSE, chunk) == python_only(chunk, monkeypatch)
        answers = native.normalize_releases(chunk)
        read_natively += answers is not None and len(answers) == 3 and answers[1] is not None
    assert read_natively > 300  # the comparison covered the native reader, not only its refusals
