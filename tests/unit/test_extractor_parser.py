"""The streaming parser and normaliser (extractor.parser / extractor.normalize) against the real
samples of both layouts and hand-written tricky files."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import orjson
import pytest

from extractor.chunked import iter_records_parallel
from extractor.normalize import released_year
from extractor.parser import DumpCorruptError, ParsedRecord, iter_records, record_sha256

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
TYPES = ("artists", "labels", "masters", "releases")


def _records(path: Path, data_type: str) -> list[ParsedRecord]:
    return list(iter_records(path, data_type))


def _by_id(path: Path, data_type: str) -> dict[int, dict]:  # type: ignore[type-arg]
    out = {}
    for r in iter_records(path, data_type):
        assert r.error is None, r.error
        assert r.id is not None and r.record is not None
        out[r.id] = r.record
    return out


def _write(tmp_path: Path, name: str, xml: str, gz: bool = False) -> Path:
    data = xml.encode()
    path = tmp_path / (name + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


# --- real samples -----------------------------------------------------------------------------


@pytest.mark.parametrize("data_type", TYPES)
def test_2020_samples_have_1000_records_each(data_type: str) -> None:
    recs = _records(SAMPLES / f"discogs_20200806_{data_type}.xml.gz", data_type)
    assert len(recs) == 1000
    assert all(r.error is None for r in recs)
    assert len({r.id for r in recs}) == 1000
    assert [r.ordinal for r in recs] == list(range(1, 1001))
    for r in recs:
        assert r.sha256 == record_sha256(r.record)  # type: ignore[arg-type]
        assert r.json == orjson.dumps(r.record, option=orjson.OPT_SORT_KEYS)
        assert r.sha256 == hashlib.sha256(r.json).hexdigest()


def test_2026_samples_counts() -> None:
    assert len(_records(SAMPLES / "discogs_20260201_labels_first15.xml", "labels")) == 15
    assert len(_records(SAMPLES / "discogs_20260201_masters.xml", "masters")) == 4


def test_first25_prefix_equals_gz_start() -> None:
    for t in TYPES:
        small = _records(SAMPLES / f"discogs_20200806_{t}_first25.xml", t)
        big = _records(SAMPLES / f"discogs_20200806_{t}.xml.gz", t)[:25]
        assert [r.record for r in small] == [r.record for r in big]


def test_release_1_2020_field_by_field() -> None:
    rel = _by_id(SAMPLES / "discogs_20200806_releases.xml.gz", "releases")[1]
    assert rel["status"] == "Accepted"
    assert rel["title"] == "Stockholm"
    assert rel["artists"] == [
        {"id": 1, "name": "The Persuader", "anv": None, "join": None, "role": None, "tracks": None}
    ]
    assert rel["extraartists"] == [
        {
            "id": 239,
            "name": "Jesper Dahlbäck",
            "anv": None,
            "join": None,
            "role": "Music By [All Tracks By]",
            "tracks": None,
        }
    ]
    assert rel["labels"] == [{"id": 5, "name": "Svek", "catno": "SK032"}]
    assert rel["series"] == []
    assert rel["formats"] == [{"name": "Vinyl", "qty": 2, "text": None, "descriptions": ['12"', "33 ⅓ RPM"]}]
    assert rel["genres"] == ["Electronic"]
    assert rel["styles"] == ["Deep House"]
    assert rel["country"] == "Sweden"
    assert rel["released"] == "1999-03-00"
    assert rel["year"] == 1999
    assert rel["notes"].startswith("The song titles are the names of six of Stockholm's 82 districts.\n\n")
    assert rel["notes"].endswith("FAX: +46 8 679 64 53")
    assert rel["data_quality"] == "Needs Vote"
    assert rel["master_id"] == 1660109
    assert rel["is_main_release"] is True
    assert [t["position"] for t in rel["tracklist"]] == ["A", "B1", "B2", "C1", "C2", "D"]
    assert rel["tracklist"][0] == {
        "position": "A",
        "title": "Östermalm",
        "duration": "4:45",
        "artists": [],
        "extraartists": [],
        "sub_tracks": [],
    }
    assert len(rel["identifiers"]) == 5
    assert rel["identifiers"][0] == {
        "type": "Matrix / Runout",
        "value": "MPO SK 032 A1",
        "description": "A-Side Runout",
    }
    assert len(rel["videos"]) == 6
    video = rel["videos"][0]
    assert video["src"] == "https://www.youtube.com/watch?v=MpmbntGDyNE"
    assert video["duration"] == 296
    assert video["embed"] is True
    assert video["title"] == "The Persuader - Östermalm"
    assert video["description"].startswith(
        "https://www.discogs.com/The-Persuader-Stockholm/release/1\r\n\r\n"
    )
    assert rel["companies"] == [
        {
            "id": 271046,
            "name": "The Globe Studios",
            "catno": None,
            "entity_type": 23,
            "entity_type_name": "Recorded At",
            "resource_url": "https://api.discogs.com/labels/271046",
        },
        {
            "id": 56025,
            "name": "MPO",
            "catno": None,
            "entity_type": 17,
            "entity_type_name": "Pressed By",
            "resource_url": "https://api.discogs.com/labels/56025",
        },
    ]
    assert len(rel["images"]) == 4
    assert rel["images"][0] == {"type": "primary", "uri": "", "uri150": "", "width": 600, "height": 600}


def test_release_sub_tracks_2020() -> None:
    rels = _by_id(SAMPLES / "discogs_20200806_releases.xml.gz", "releases")
    with_sub = [r for r in rels.values() if any(t["sub_tracks"] for t in r["tracklist"])]
    assert with_sub, "the sample has releases with sub_tracks"
    sub = next(t for t in with_sub[0]["tracklist"] if t["sub_tracks"])["sub_tracks"][0]
    assert set(sub) == {"position", "title", "duration", "artists", "extraartists", "sub_tracks"}


def test_artist_2_members_pairs_2020() -> None:
    artist = _by_id(SAMPLES / "discogs_20200806_artists.xml.gz", "artists")[2]
    assert artist == {
        "id": 2,
        "name": "Mr. James Barth & A.D.",
        "realname": "Cari Lekebusch & Alexi Delano",
        "profile": None,
        "data_quality": "Correct",
        "urls": [],
        "namevariations": [
            "Mr Barth & A.D.",
            "MR JAMES BARTH & A. D.",
            "Mr. Barth & A.D.",
            "Mr. James Barth & A. D.",
        ],
        "aliases": [
            {"id": 2470, "name": "Puente Latino"},
            {"id": 19536, "name": "Yakari & Delano"},
            {"id": 103709, "name": "Crushed Insect & The Sick Puppy"},
            {"id": 384581, "name": "ADCL"},
            {"id": 1779857, "name": "Alexi Delano & Cari Lekebusch"},
        ],
        "members": [{"id": 26, "name": "Alexi Delano"}, {"id": 27, "name": "Cari Lekebusch"}],
        "groups": [],
        "images": [],
    }


def test_artist_1_entities_and_images() -> None:
    artist = _by_id(SAMPLES / "discogs_20200806_artists.xml.gz", "artists")[1]
    assert artist["realname"] == "Jesper Dahlbäck"
    assert artist["urls"] == ["https://en.wikipedia.org/wiki/Jesper_Dahlbäck"]
    assert artist["namevariations"] == ["Persuader", "The Presuader"]
    assert {"id": 196957, "name": "Janne Me' Amazonen"} in artist["aliases"]
    assert len(artist["images"]) == 2


def test_label_1_2020() -> None:
    label = _by_id(SAMPLES / "discogs_20200806_labels.xml.gz", "labels")[1]
    assert label["name"] == "Planet E"
    assert label["contactinfo"].startswith("Planet E Communications\r\nP.O. Box 27218\r\n")
    assert label["contactinfo"].endswith("Email: info@Planet-e.net")
    assert label["profile"].startswith("[a=Carl Craig]'s classic techno label founded in 1991.")
    assert label["data_quality"] == "Correct"
    assert len(label["urls"]) == 13 and label["urls"][0] == "http://planet-e.net"
    assert label["parent_label"] is None
    # The 2020 sample's sublabels were emptied by the tool that cut it (samples/README.md).
    assert label["sublabels"] == []
    assert len(label["images"]) == 7


def test_label_current_layout_parent() -> None:
    labels = _by_id(SAMPLES / "discogs_20260201_labels_first15.xml", "labels")
    novalis = labels[107799]
    assert novalis == {
        "id": 107799,
        "name": "Novalis",
        "contactinfo": None,
        "profile": "Swiss label\r\nLabel Code: LC 1122 / LC 01122",
        "data_quality": "Needs Vote",
        "urls": [],
        "parent_label": {"id": 278277, "name": "AVC Audio Video Communications AG"},
        "sublabels": [],
        "images": [],
    }
    assert labels[48207]["urls"] == [
        "https://www.quora.com/What-does-music-publishing-by-Copyright-Control-mean"
    ]


def test_master_current_layout() -> None:
    masters = _by_id(SAMPLES / "discogs_20260201_masters.xml", "masters")
    assert list(masters) == [392818, 1168624, 2280259, 3319987]
    assert masters[2280259] == {
        "id": 2280259,
        "main_release": 5355366,
        "title": "The Complete Bach Edition",
        "year": 2012,
        "notes": None,
        "data_quality": "Correct",
        "artists": [
            {
                "id": 95537,
                "name": "Johann Sebastian Bach",
                "anv": "Bach",
                "join": ",",
                "role": None,
                "tracks": None,
            }
        ],
        "genres": ["Classical"],
        "styles": ["Baroque", "Cantata", "Mass"],
        "videos": [],
        "images": [],
    }
    assert masters[392818]["genres"] == ["Rock", "Pop", "Children's", "Folk, World, & Country"]
    assert masters[1168624]["title"] == "Complete Works = L'Oeuvre Intégrale = Gesamtwerk"


def test_master_113_2020_videos() -> None:
    master = _by_id(SAMPLES / "discogs_20200806_masters.xml.gz", "masters")[113]
    assert master["main_release"] == 116925
    assert master["year"] == 2002
    assert master["title"] == "Moments In Time"
    assert master["artists"][0]["id"] == 3225
    assert master["styles"] == ["Techno", "Tech House"]
    first = master["videos"][0]
    assert first["title"] == "Out of the Deep"
    assert first["duration"] == 321 and first["embed"] is True
    assert "Out of the Deep · Vince Watson" in first["description"]
    assert "\u200e" in master["videos"][5]["title"]  # &#8206; decoded


# --- tricky hand-written files -----------------------------------------------------------------

CURRENT_RELEASE = (
    '<releases>\n<release id="1"><artists><artist><id>1</id><name>The Persuader</name></artist>'
    "</artists><title>Stockholm</title><labels>"
    '<label name="Svek &amp; Co" catno="SK032" id="5"/><label name="Unlinked" catno=""/>'
    "</labels><extraartists><artist><id>507025</id><name>George Cutmaster General</name>"
    "<anv>G Phrupmastergeneral</anv><role>Lacquer Cut By</role></artist><artist>"
    "<name>No Id Person</name><role>Photography By</role></artist></extraartists><formats>"
    '<format name="Vinyl" qty="2" text=""><descriptions><description>12"</description>'
    "<description>33 &#8531; RPM</description></descriptions></format>"
    '<format name="Box Set" qty="1234567890123456789012345678901234567890123456789012345678901234"/>'
    "</formats><genres><genre>Electronic</genre></genres><styles><style>Deep House</style>"
    "</styles><country>Sweden</country><released>1999-03-00</released><notes>"
    "<![CDATA[Line <one> & two]]></notes><data_quality>Correct</data_quality>"
    '<master_id is_main_release="false">0</master_id><tracklist><track><position>A</position>'
    "<title>&#214;stermalm</title><duration>4:45</duration><extraartists><artist><id>0</id>"
    "<name>Zero</name><role>Mixed By</role></artist></extraartists></track><track>"
    "<title>Heading</title></track><track><position>B</position><title>Medley</title>"
    "<sub_tracks><track><position>B.a</position><title>Part 1</title></track></sub_tracks>"
    "</track></tracklist><identifiers>"
    '<identifier type="Barcode" value="7 &lt;31&gt; &quot;x&quot;"/></identifiers><videos>'
    '<video src="https://y.example/watch?v=1&amp;t=2" duration="296" embed="false">'
    "<title>T</title></video></videos><companies><company><id>271046</id>"
    "<name>The Globe Studios</name><entity_type>23</entity_type>"
    "<entity_type_name>Recorded At</entity_type_name></company></companies><series>"
    '<series name="Series A" catno="3" id="77"/></series><future_field>hello</future_field>'
    '<future_block><item a="1">x</item><item>y</item></future_block></release>\n</releases>\n'
)


def test_current_layout_release_tricky(tmp_path: Path) -> None:
    [rec] = _records(_write(tmp_path, "rel.xml", CURRENT_RELEASE), "releases")
    r = rec.record
    assert r is not None
    assert r["status"] is None
    assert r["labels"] == [
        {"id": 5, "name": "Svek & Co", "catno": "SK032"},
        {"id": None, "name": "Unlinked", "catno": None},
    ]
    assert r["extraartists"][1] == {
        "id": None,
        "name": "No Id Person",
        "anv": None,
        "join": None,
        "role": "Photography By",
        "tracks": None,
    }
    assert r["formats"][0] == {"name": "Vinyl", "qty": 2, "text": None, "descriptions": ['12"', "33 ⅓ RPM"]}
    assert r["formats"][1]["qty"] == "1234567890123456789012345678901234567890123456789012345678901234"
    assert r["formats"][1]["descriptions"] == []
    assert r["notes"] == "Line <one> & two"  # CDATA kept verbatim
    assert r["master_id"] is None and r["is_main_release"] is False
    assert r["tracklist"][0]["title"] == "Östermalm"
    assert r["tracklist"][0]["extraartists"][0]["id"] is None  # id 0 -> null
    assert r["tracklist"][1] == {
        "position": None,
        "title": "Heading",
        "duration": None,
        "artists": [],
        "extraartists": [],
        "sub_tracks": [],
    }
    assert r["tracklist"][2]["sub_tracks"][0]["title"] == "Part 1"
    assert r["identifiers"] == [{"type": "Barcode", "value": '7 <31> "x"', "description": None}]
    assert r["videos"] == [
        {
            "src": "https://y.example/watch?v=1&t=2",
            "duration": 296,
            "embed": False,
            "title": "T",
            "description": None,
        }
    ]
    assert r["companies"][0]["resource_url"] is None and r["companies"][0]["catno"] is None
    assert r["series"] == [{"id": 77, "name": "Series A", "catno": "3"}]
    assert r["images"] == []
    assert r["future_field"] == "hello"
    assert r["future_block"] == {"item": [{"a": "1", "text": "x"}, "y"]}


def test_empty_and_whitespace_elements_are_null(tmp_path: Path) -> None:
    xml = (
        "<artists>\n<artist><id>7</id><name>\u00a0</name><realname>   </realname><profile></profile>"
        "<data_quality/><urls/><namevariations><name/></namevariations></artist>\n</artists>"
    )
    [rec] = _records(_write(tmp_path, "a.xml", xml), "artists")
    assert rec.record == {
        "id": 7,
        "name": "\u00a0",  # an artist really named NBSP keeps its name
        "realname": None,
        "profile": None,
        "data_quality": None,
        "urls": [],
        "namevariations": [],
        "aliases": [],
        "members": [],
        "groups": [],
        "images": [],
    }


def test_text_keeps_inner_whitespace_and_decodes_cr(tmp_path: Path) -> None:
    xml = "<labels><label><id>3</id><profile>  a&#13;\n  b\tc  \n</profile></label></labels>"
    [rec] = _records(_write(tmp_path, "l.xml", xml), "labels")
    assert rec.record is not None
    assert rec.record["profile"] == "a\r\n  b\tc"


def test_current_members_form(tmp_path: Path) -> None:
    xml = (
        '<artists><artist><id>9</id><members><name id="26">A</name>'
        '<name id="27">B</name></members></artist></artists>'
    )
    [rec] = _records(_write(tmp_path, "m.xml", xml), "artists")
    assert rec.record is not None
    assert rec.record["members"] == [{"id": 26, "name": "A"}, {"id": 27, "name": "B"}]


def test_nested_sublabels_are_not_records_and_survive(tmp_path: Path) -> None:
    xml = (
        "<labels>\n"
        '<label><id>1</id><name>Planet E</name><sublabels><label id="86537">Antidote (4)</label>'
        '<label id="31405">I Ner Zon Sounds</label></sublabels></label>\n'
        '<label><id>2</id><name>Child</name><parentLabel id="1">Planet E</parentLabel></label>\n'
        '<label><id>3</id><name>Pretty</name><sublabels>\n    <label id="4">Four</label>\n'
        "  </sublabels></label>\n"
        "</labels>"
    )
    recs = _records(_write(tmp_path, "l.xml", xml, gz=True), "labels")
    assert [r.id for r in recs] == [1, 2, 3]
    assert recs[0].record is not None and recs[1].record is not None and recs[2].record is not None
    assert recs[0].record["sublabels"] == [
        {"id": 86537, "name": "Antidote (4)"},
        {"id": 31405, "name": "I Ner Zon Sounds"},
    ]
    assert recs[1].record["parent_label"] == {"id": 1, "name": "Planet E"}
    assert recs[2].record["sublabels"] == [{"id": 4, "name": "Four"}]


def test_missing_and_bad_ids_are_malformed_and_the_file_continues(tmp_path: Path) -> None:
    xml = (
        "<masters>\n"
        '<master id="1"><title>ok</title></master>\n'
        "<master><title>no id</title></master>\n"
        '<master id="abc"><title>bad id</title></master>\n'
        '<master id="4"><title>ok too</title><year>0</year></master>\n'
        "</masters>"
    )
    recs = _records(_write(tmp_path, "m.xml", xml), "masters")
    assert [r.ordinal for r in recs] == [1, 2, 3, 4]
    assert [r.error is None for r in recs] == [True, False, False, True]
    assert recs[1].error is not None and "missing id" in recs[1].error
    assert recs[2].error is not None and "invalid id 'abc'" in recs[2].error
    assert recs[1].record is None and recs[1].sha256 is None
    assert recs[3].record is not None and recs[3].record["year"] is None


def test_numbers_beyond_64_bits_are_null_and_the_file_continues(tmp_path: Path) -> None:
    # orjson and both stores stop at 64 bits: such a number once raised out of the normaliser and
    # failed the whole file (on every retry). Now it is no number: a reference is None, the
    # record's own id makes it malformed, a quantity stays text.
    huge = "99999999999999999999"
    xml = (
        "<releases>\n"
        f'<release id="1"><master_id>{huge}</master_id><labels><label id="{huge}" name="L"/></labels>'
        f'<formats><format name="CD" qty="{huge}"/></formats><images><image width="{huge}"/></images>'
        "</release>\n"
        f'<release id="{huge}"><title>too big</title></release>\n'
        '<release id="3"><master_id>-9223372036854775808</master_id></release>\n'
        "</releases>"
    )
    path = _write(tmp_path, "r.xml", xml)
    for recs in (_records(path, "releases"), list(iter_records_parallel(path, "releases", workers=1))):
        assert [r.error is None for r in recs] == [True, False, True]
        assert recs[0].json is not None and recs[2].json is not None
        first, third = orjson.loads(recs[0].json), orjson.loads(recs[2].json)
        assert first["master_id"] is None and first["labels"][0]["id"] is None
        assert first["formats"][0]["qty"] == huge and first["images"][0]["width"] is None
        assert recs[1].error is not None and f"invalid id '{huge}'" in recs[1].error
        assert third["master_id"] == -(2**63)


def test_a_record_nested_too_deeply_is_malformed_and_the_file_continues(tmp_path: Path) -> None:
    # lxml (huge_tree) reads 2,048 levels; the normaliser recurses into unknown elements, so 1,500
    # once raised RecursionError out of the parse and failed the whole file.
    deep = "<x>" * 1500 + "</x>" * 1500
    xml = (
        f'<releases><release id="1"><extra>{deep}</extra></release>'
        '<release id="2"><title>ok</title></release></releases>'
    )
    path = _write(tmp_path, "r.xml", xml)
    for recs in (_records(path, "releases"), list(iter_records_parallel(path, "releases", workers=1))):
        assert [r.error is None for r in recs] == [False, True]
        assert recs[0].error is not None and "nested too deeply" in recs[0].error
        assert recs[1].id == 2


def test_artist_without_id_is_malformed(tmp_path: Path) -> None:
    xml = "<artists><artist><name>Nobody</name></artist><artist><id>5</id><name>X</name></artist></artists>"
    recs = _records(_write(tmp_path, "a.xml", xml), "artists")
    assert recs[0].error is not None and "missing id" in recs[0].error
    assert recs[1].id == 5


def test_huge_box_set_with_thousands_of_tracks(tmp_path: Path) -> None:
    tracks = "".join(
        f"<track><position>{i}</position><title>Track {i} &amp; more</title><duration>3:00</duration>"
        f"<artists><artist><id>{i}</id><name>A{i}</name></artist></artists></track>"
        for i in range(1, 7001)
    )
    big_notes = "x" * 12_000_000  # a text node over libxml2's default 10 MB limit (huge_tree)
    xml = (
        f'<releases>\n<release id="29948101"><title>Box</title><notes>{big_notes}</notes>'
        f'<tracklist>{tracks}</tracklist></release>\n<release id="2"><title>after</title></release>\n'
        "</releases>"
    )
    recs = _records(_write(tmp_path, "big.xml", xml, gz=True), "releases")
    assert [r.id for r in recs] == [29948101, 2]
    assert recs[0].record is not None
    assert len(recs[0].record["tracklist"]) == 7000
    assert recs[0].record["tracklist"][6999]["title"] == "Track 7000 & more"
    assert recs[0].record["tracklist"][6999]["artists"][0]["id"] == 7000
    assert len(recs[0].record["notes"]) == 12_000_000


def test_truncated_gzip_raises_dump_corrupt(tmp_path: Path) -> None:
    data = (SAMPLES / "discogs_20200806_releases.xml.gz").read_bytes()
    path = tmp_path / "discogs_20200806_releases.xml.gz"
    path.write_bytes(data[: len(data) // 2])
    seen = []
    with pytest.raises(DumpCorruptError) as info:
        for r in iter_records(path, "releases"):
            seen.append(r.id)
    assert "truncated" in str(info.value)
    assert 0 < len(seen) < 1000


def test_corrupt_gzip_raises_dump_corrupt(tmp_path: Path) -> None:
    data = bytearray((SAMPLES / "discogs_20200806_labels.xml.gz").read_bytes())
    for i in range(20_000, 20_200):
        data[i] ^= 0xFF
    path = tmp_path / "discogs_20200806_labels.xml.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DumpCorruptError):
        list(iter_records(path, "labels"))


def test_truncated_plain_xml_raises_dump_corrupt(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.xml", "<labels><label><id>1</id><name>x</name></label><label><id>2</id><na")
    with pytest.raises(DumpCorruptError):
        list(iter_records(path, "labels"))


def test_skip_resumes_after_ordinal() -> None:
    path = SAMPLES / "discogs_20200806_artists.xml.gz"
    all_recs = _records(path, "artists")
    rest = list(iter_records(path, "artists", skip=990))
    assert [r.ordinal for r in rest] == list(range(991, 1001))
    assert [r.id for r in rest] == [r.id for r in all_recs[990:]]


def test_offsets_grow_to_file_size() -> None:
    path = SAMPLES / "discogs_20200806_masters.xml.gz"
    recs = _records(path, "masters")
    offsets = [r.offset for r in recs]
    assert offsets == sorted(offsets)
    assert 0 < offsets[-1] <= path.stat().st_size


def test_released_year() -> None:
    assert released_year("1999-03-00") == 1999
    assert released_year("1999") == 1999
    assert released_year("20061014") is None
    assert released_year("200?") is None
    assert released_year("0000") is None
    assert released_year("1980s") == 1980
    assert released_year(None) is None


def test_unknown_type_rejected() -> None:
    with pytest.raises(ValueError):
        list(iter_records(SAMPLES / "discogs_20260201_masters.xml", "tracks"))


def test_record_sha256_is_sorted_orjson() -> None:
    rec = {"b": 1, "a": [1, {"d": None, "c": "é"}]}
    expected = hashlib.sha256(b'{"a":[1,{"c":"\xc3\xa9","d":null}],"b":1}').hexdigest()
    assert record_sha256(rec) == expected
