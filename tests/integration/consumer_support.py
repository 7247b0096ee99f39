"""Records transcribed by hand from samples/*.xml (normalised per docs/records.md) and helpers to
turn them into broker messages. Used by the graphinator, tableinator and consumer tests."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import orjson

from common.messages import RecordMessage

V1 = "20200806"
V2 = "20200901"


def credit(aid: int | None, name: str, anv: str | None = None, role: str | None = None) -> dict[str, Any]:
    return {"id": aid, "name": name, "anv": anv, "join": None, "role": role, "tracks": None}


# samples/discogs_20200806_releases_first25.xml, <release id="1">
RELEASE_1: dict[str, Any] = {
    "id": 1,
    "status": "Accepted",
    "title": "Stockholm",
    "artists": [credit(1, "The Persuader")],
    "extraartists": [credit(239, "Jesper Dahlbäck", role="Music By [All Tracks By]")],
    "labels": [{"id": 5, "name": "Svek", "catno": "SK032"}],
    "series": [],
    "formats": [{"name": "Vinyl", "qty": 2, "text": None, "descriptions": ['12"', "33 ⅓ RPM"]}],
    "genres": ["Electronic"],
    "styles": ["Deep House"],
    "country": "Sweden",
    "released": "1999-03-00",
    "year": 1999,
    "notes": "The song titles are the names of six of Stockholm's 82 districts.",
    "data_quality": "Needs Vote",
    "master_id": 1660109,
    "is_main_release": True,
    "tracklist": [
        {
            "position": "A",
            "title": "Östermalm",
            "duration": "4:45",
            "artists": [],
            "extraartists": [],
            "sub_tracks": [],
        },
        {
            "position": "B1",
            "title": "Vasastaden",
            "duration": "6:11",
            "artists": [],
            "extraartists": [],
            "sub_tracks": [],
        },
    ],
    "identifiers": [{"type": "Matrix / Runout", "value": "MPO SK 032 A1", "description": "A-Side Runout"}],
    "videos": [],
    "companies": [],
    "images": [],
}

# <release id="2">: two catalogue numbers on one label, four credits with roles, three styles.
RELEASE_2: dict[str, Any] = {
    "id": 2,
    "status": "Accepted",
    "title": "Knockin' Boots (Vol 2 Of 2)",
    "artists": [credit(2, "Mr. James Barth & A.D.")],
    "extraartists": [
        credit(26, "Alexi Delano", role="Producer, Recorded By"),
        credit(27, "Cari Lekebusch", role="Producer, Recorded By"),
        credit(26, "Alexi Delano", anv="A. Delano", role="Written-By"),
        credit(27, "Cari Lekebusch", anv="C. Lekebusch", role="Written-By"),
    ],
    "labels": [{"id": 5, "name": "Svek", "catno": "SK 026"}, {"id": 5, "name": "Svek", "catno": "SK026"}],
    "series": [],
    "formats": [{"name": "Vinyl", "qty": 1, "text": None, "descriptions": ['12"', "33 ⅓ RPM"]}],
    "genres": ["Electronic"],
    "styles": ["Broken Beat", "Techno", "Tech House"],
    "country": "Sweden",
    "released": "1998-06-00",
    "year": 1998,
    "notes": "All joints recorded in NYC (Dec.97).",
    "data_quality": "Needs Vote",
    "master_id": 713738,
    "is_main_release": True,
    "tracklist": [
        {
            "position": "A1",
            "title": "A Sea Apart",
            "duration": "5:08",
            "artists": [],
            "extraartists": [],
            "sub_tracks": [],
        },
    ],
    "identifiers": [],
    "videos": [],
    "companies": [],
    "images": [],
}

# samples/discogs_20200806_artists_first25.xml, <artist><id>2</id> (a group) and <id>26</id> (a member).
ARTIST_2: dict[str, Any] = {
    "id": 2,
    "name": "Mr. James Barth & A.D.",
    "realname": "Cari Lekebusch & Alexi Delano",
    "profile": None,
    "data_quality": "Correct",
    "urls": [],
    "namevariations": ["MJB & AD", "Mr James Barth & A.D."],
    "aliases": [{"id": 2470, "name": "Puente Latino"}, {"id": 19536, "name": "Yakari & Delano"}],
    "members": [{"id": 26, "name": "Alexi Delano"}, {"id": 27, "name": "Cari Lekebusch"}],
    "groups": [],
    "images": [],
}

ARTIST_26: dict[str, Any] = {
    "id": 26,
    "name": "Alexi Delano",
    "realname": None,
    "profile": "Swedish DJ and producer.",
    "data_quality": "Needs Vote",
    "urls": [],
    "namevariations": ["A. Delano"],
    "aliases": [{"id": 50, "name": "ADNY"}],
    "members": [],
    "groups": [{"id": 2, "name": "Mr. James Barth & A.D."}, {"id": 254, "name": "ADNY & The Persuader"}],
    "images": [],
}

# samples/discogs_20260201_labels_first15.xml, <label><id>107799</id> (current layout).
LABEL_107799: dict[str, Any] = {
    "id": 107799,
    "name": "Novalis",
    "contactinfo": None,
    "profile": None,
    "data_quality": "Needs Vote",
    "urls": [],
    "parent_label": {"id": 278277, "name": "AVC Audio Video Communications AG"},
    "sublabels": [],
    "images": [],
}

# samples/discogs_20260201_masters.xml, <master id="2280259">.
MASTER_2280259: dict[str, Any] = {
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


def sha256_of(record: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).hexdigest()


def message(data_type: str, record: dict[str, Any], version: str = V1) -> RecordMessage:
    return RecordMessage(
        type=data_type, id=record["id"], sha256=sha256_of(record), version=version, record=record
    )


def unchanged(msg: RecordMessage) -> RecordMessage:
    """The unchanged item the extractor sends for `msg`'s record (`"record": null`)."""
    return msg.model_copy(update={"record": None})


def changed(record: dict[str, Any], **fields: Any) -> dict[str, Any]:
    out = copy.deepcopy(record)
    out.update(fields)
    return out


def synthetic_release(rid: int, *, artists: int = 2, credits: int = 4, tracks: int = 10) -> dict[str, Any]:
    """A release of realistic shape whose references point into small id ranges (shared stubs)."""
    return {
        "id": rid,
        "status": "Accepted",
        "title": f"Synthetic release {rid}",
        "artists": [
            credit(1 + (rid * 7 + i) % 5000, f"Artist {(rid * 7 + i) % 5000}") for i in range(artists)
        ],
        "extraartists": [
            credit(
                1 + (rid * 13 + i) % 20000,
                f"Artist {(rid * 13 + i) % 20000}",
                role=["Producer", "Mixed By", "Written-By", "Engineer"][i % 4],
            )
            for i in range(credits)
        ],
        "labels": [{"id": 1 + rid % 3000, "name": f"Label {rid % 3000}", "catno": f"CAT {rid}"}],
        "series": [],
        "formats": [{"name": "Vinyl", "qty": 1, "text": None, "descriptions": ['12"', "33 ⅓ RPM"]}],
        "genres": [["Electronic", "Rock", "Jazz", "Hip Hop"][rid % 4]],
        "styles": [["House", "Techno", "Punk", "Bop", "Trap", "Ambient"][rid % 6]],
        "country": ["UK", "US", "Germany", "Sweden"][rid % 4],
        "released": f"{1970 + rid % 50}-01-01",
        "year": 1970 + rid % 50,
        "notes": "Some notes " * 5,
        "data_quality": "Correct",
        "master_id": 1 + rid // 3,
        "is_main_release": rid % 3 == 0,
        "tracklist": [
            {
                "position": f"A{t}",
                "title": f"Track {t}",
                "duration": "4:00",
                "artists": [],
                "extraartists": [],
                "sub_tracks": [],
            }
            for t in range(tracks)
        ],
        "identifiers": [{"type": "Barcode", "value": f"{rid:013d}", "description": None}],
        "videos": [],
        "companies": [],
        "images": [],
    }
