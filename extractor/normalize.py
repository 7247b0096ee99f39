"""Turn one dump element (lxml) into the normalised record of docs/records.md.

One pass over each element's children, no XPath and no `findtext` (those cost several times the
parse itself). Rules shared by every type:

- scalars are always present: missing, empty or whitespace-only -> None; otherwise the text with
  only leading/trailing XML whitespace (space, tab, CR, LF) removed, so an NBSP name survives;
- lists are always lists; ids, years and counts are ints; `0` ids and years mean "none" -> None;
- children this module does not know are kept generically under their tag name.

A record whose own id is missing or unusable raises `MalformedRecordError` with a readable reason.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any, Final

import orjson
from lxml import etree

_WS: Final = " \t\r\n"
_INT64_MAX: Final = 2**63 - 1
_INT64_MIN: Final = -(2**63)

Record = dict[str, Any]
Element = etree._Element

# Raise on any change of what a given element normalises to: the record index of earlier versions
# (extractor.baseline) is then not used, as its sha256s describe the older form.
NORMALIZER_VERSION: Final = 1


class MalformedRecordError(ValueError):
    """The element cannot become a record (no usable id); dead-letter it with this reason."""


def record_json(record: Record) -> bytes:
    """The canonical bytes of a record: orjson with sorted keys (what the hash covers)."""
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def record_sha256(record: Record) -> str:
    """Hex SHA-256 of `orjson.dumps(record, option=OPT_SORT_KEYS)` (docs/records.md)."""
    return hashlib.sha256(record_json(record)).hexdigest()


# --- scalar helpers -------------------------------------------------------------------------


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip(_WS)
    return value or None


def _text(el: Element) -> str | None:
    text = el.text
    if text is None:
        return None
    text = text.strip(_WS)
    return text or None


def _int(value: str | None) -> int | None:
    """An ASCII integer (optionally signed) within 64 bits, else None (JSON consumers, orjson and
    both stores stop at 64 bits; no Discogs number comes near)."""
    if value is None:
        return None
    value = value.strip(_WS)
    if not value:
        return None
    digits = value[1:] if value[0] in "+-" else value
    if not (digits.isascii() and digits.isdigit()):
        return None
    number = int(value)
    return number if _INT64_MIN <= number <= _INT64_MAX else None


def _ref_id(value: str | None) -> int | None:
    """A referenced id: an integer, or None when missing, unparsable, 0 or beyond 64 bits."""
    if value is None:
        return None
    if value.isascii() and value.isdigit() and len(value) < 19:  # the common case: no sign, space
        return int(value) or None
    number = _int(value)
    return number if number else None


def _year(value: str | None) -> int | None:
    number = _int(value)
    return number if number else None


def _bool(value: str | None) -> bool | None:
    if value is None:
        return None
    lowered = value.strip(_WS).lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    return None


def _qty(value: str | None) -> int | str | None:
    value = _clean(value)
    if value is None:
        return None
    if value.isascii() and value.isdigit():
        number = int(value)
        if number <= _INT64_MAX:
            return number
    return value


def released_year(released: str | None) -> int | None:
    """The leading four digits of `released` when they form a plausible year (1000-2999)."""
    if released is None or len(released) < 4:
        return None
    head = released[:4]
    if not (head.isascii() and head.isdigit()):
        return None
    if len(released) > 4 and released[4].isdigit():
        return None  # "20061014": not a leading year followed by a separator
    year = int(head)
    return year if 1000 <= year <= 2999 else None


def record_id(value: str | None) -> int:
    """The record's own id: a positive integer, else MalformedRecordError."""
    if value is None or not value.strip(_WS):
        raise MalformedRecordError("missing id")
    number = _int(value)
    if number is None or number <= 0:
        raise MalformedRecordError(f"invalid id {value.strip(_WS)[:80]!r}")
    return number


# --- generic fallback -----------------------------------------------------------------------


def generic(el: Element) -> Any:
    """An element this module does not know: text-only -> str|None, else an object.

    The object holds the attributes and the children by tag (a repeated tag -> list); text next
    to attributes or children is kept under "text".
    """
    attrib = el.attrib
    if len(el) == 0 and not attrib:
        return _text(el)
    obj: dict[str, Any] = {str(k): _clean(v) for k, v in attrib.items()}
    grouped: dict[str, list[Any]] = {}
    for child in el:
        tag = child.tag
        if isinstance(tag, str):  # skip comments and processing instructions
            grouped.setdefault(tag, []).append(generic(child))
    for tag, values in grouped.items():
        obj[tag] = values[0] if len(values) == 1 else values
    text = _text(el)
    if text is not None:
        obj["text"] = text
    return obj


def _keep_unknown(rec: Record, child: Element) -> None:
    tag = child.tag
    if not isinstance(tag, str) or tag in rec:
        return
    rec[tag] = generic(child)


# --- shared sub-structures ------------------------------------------------------------------


def _strings(el: Element) -> list[str]:
    out: list[str] = []
    for child in el:
        text = child.text
        if text is not None:
            text = text.strip(_WS)
            if text:
                out.append(text)
    return out


def _named_refs(el: Element) -> list[dict[str, Any]]:
    """`<x><name id="N">Text</name>...</x>` -> [{"id", "name"}] (also `<label id>` in sublabels)."""
    out: list[dict[str, Any]] = []
    for child in el:
        if not isinstance(child.tag, str):
            continue
        ref = {"id": _ref_id(child.get("id")), "name": _text(child)}
        if ref["id"] is not None or ref["name"] is not None:  # an empty <label/> carries nothing
            out.append(ref)
    return out


def _members(el: Element) -> list[dict[str, Any]]:
    """Both forms: 2020 `<id>N</id><name id="N">` pairs and current `<name id="N">` only."""
    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    bare_ids: list[int] = []
    for child in el:
        tag = child.tag
        if tag == "name":
            member_id = _ref_id(child.get("id"))
            if member_id is not None:
                seen.add(member_id)
            out.append({"id": member_id, "name": _text(child)})
        elif tag == "id":
            member_id = _ref_id(child.text)
            if member_id is not None:
                bare_ids.append(member_id)
    for member_id in bare_ids:
        if member_id not in seen:
            seen.add(member_id)
            out.append({"id": member_id, "name": None})
    return out


def _images(el: Element) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for child in el:
        if not isinstance(child.tag, str):
            continue
        get = child.get
        out.append(
            {
                "type": get("type"),
                "uri": get("uri"),
                "uri150": get("uri150"),
                "width": _int(get("width")),
                "height": _int(get("height")),
            }
        )
    return out


_CREDIT_TEXT: Final = frozenset(("name", "anv", "join", "role", "tracks"))


def _credits(el: Element) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for artist in el:
        if not isinstance(artist.tag, str):
            continue
        credit: dict[str, Any] = {
            "id": None,
            "name": None,
            "anv": None,
            "join": None,
            "role": None,
            "tracks": None,
        }
        for child in artist:
            tag = child.tag
            if tag == "id":
                credit["id"] = _ref_id(child.text)
            elif tag in _CREDIT_TEXT:
                text = child.text
                if text is not None:
                    credit[tag] = text.strip(_WS) or None
            else:
                _keep_unknown(credit, child)
        out.append(credit)
    return out


def _videos(el: Element) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for video in el:
        if not isinstance(video.tag, str):
            continue
        get = video.get
        item: dict[str, Any] = {
            "src": _clean(get("src")),
            "duration": _int(get("duration")),
            "embed": _bool(get("embed")),
            "title": None,
            "description": None,
        }
        for child in video:
            tag = child.tag
            if tag in {"title", "description"}:
                item[tag] = _text(child)
            else:
                _keep_unknown(item, child)
        out.append(item)
    return out


def _attr_refs(el: Element) -> list[dict[str, Any]]:
    """`<labels><label name catno id/>` and `<series><series .../>` -> [{"id", "name", "catno"}]."""
    out: list[dict[str, Any]] = []
    for child in el:
        if not isinstance(child.tag, str):
            continue
        get = child.get
        out.append({"id": _ref_id(get("id")), "name": _clean(get("name")), "catno": _clean(get("catno"))})
    return out


def _formats(el: Element) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for fmt in el:
        if not isinstance(fmt.tag, str):
            continue
        get = fmt.get
        item: dict[str, Any] = {
            "name": _clean(get("name")),
            "qty": _qty(get("qty")),
            "text": _clean(get("text")),
            "descriptions": [],
        }
        for child in fmt:
            if child.tag == "descriptions":
                item["descriptions"] = _strings(child)
            else:
                _keep_unknown(item, child)
        out.append(item)
    return out


def _identifiers(el: Element) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for child in el:
        if not isinstance(child.tag, str):
            continue
        get = child.get
        out.append(
            {
                "type": _clean(get("type")),
                "value": _clean(get("value")),
                "description": _clean(get("description")),
            }
        )
    return out


_COMPANY_TEXT: Final = ("name", "catno", "entity_type_name", "resource_url")


def _companies(el: Element) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for company in el:
        if not isinstance(company.tag, str):
            continue
        item: dict[str, Any] = {
            "id": None,
            "name": None,
            "catno": None,
            "entity_type": None,
            "entity_type_name": None,
            "resource_url": None,
        }
        for child in company:
            tag = child.tag
            if tag == "id":
                item["id"] = _ref_id(child.text)
            elif tag == "entity_type":
                item["entity_type"] = _int(child.text)
            elif tag in _COMPANY_TEXT:
                item[tag] = _text(child)
            else:
                _keep_unknown(item, child)
        out.append(item)
    return out


_TRACK_TEXT: Final = frozenset(("position", "title", "duration"))


def _tracks(el: Element) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for track in el:
        if not isinstance(track.tag, str):
            continue
        item: dict[str, Any] = {
            "position": None,
            "title": None,
            "duration": None,
            "artists": [],
            "extraartists": [],
            "sub_tracks": [],
        }
        for child in track:
            tag = child.tag
            if tag in _TRACK_TEXT:
                text = child.text
                if text is not None:
                    item[tag] = text.strip(_WS) or None
            elif tag in {"artists", "extraartists"}:
                item[tag] = _credits(child)
            elif tag == "sub_tracks":
                item["sub_tracks"] = _tracks(child)
            else:
                _keep_unknown(item, child)
        out.append(item)
    return out


# --- per type -------------------------------------------------------------------------------


def _keep_unknown_attrs(rec: Record, el: Element, known: tuple[str, ...]) -> None:
    for key, value in el.attrib.items():
        name = str(key)
        if name not in known and name not in rec:
            rec[name] = _clean(value)


_ARTIST_TEXT: Final = ("name", "realname", "profile", "data_quality")


def normalize_artist(el: Element) -> Record:
    rec: Record = {
        "id": None,
        "name": None,
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
    raw_id: str | None = el.get("id")
    for child in el:
        tag = child.tag
        if tag == "id":
            raw_id = child.text
        elif tag in _ARTIST_TEXT:
            rec[tag] = _text(child)
        elif tag in {"urls", "namevariations"}:
            rec[tag] = _strings(child)
        elif tag in {"aliases", "groups"}:
            rec[tag] = _named_refs(child)
        elif tag == "members":
            rec["members"] = _members(child)
        elif tag == "images":
            rec["images"] = _images(child)
        else:
            _keep_unknown(rec, child)
    rec["id"] = record_id(raw_id)
    _keep_unknown_attrs(rec, el, ("id",))
    return rec


_LABEL_TEXT: Final = ("name", "contactinfo", "profile", "data_quality")


def normalize_label(el: Element) -> Record:
    rec: Record = {
        "id": None,
        "name": None,
        "contactinfo": None,
        "profile": None,
        "data_quality": None,
        "urls": [],
        "parent_label": None,
        "sublabels": [],
        "images": [],
    }
    raw_id: str | None = el.get("id")
    for child in el:
        tag = child.tag
        if tag == "id":
            raw_id = child.text
        elif tag in _LABEL_TEXT:
            rec[tag] = _text(child)
        elif tag == "urls":
            rec["urls"] = _strings(child)
        elif tag == "parentLabel":
            parent = {"id": _ref_id(child.get("id")), "name": _text(child)}
            rec["parent_label"] = parent if parent["id"] is not None or parent["name"] is not None else None
        elif tag == "sublabels":
            rec["sublabels"] = _named_refs(child)
        elif tag == "images":
            rec["images"] = _images(child)
        else:
            _keep_unknown(rec, child)
    rec["id"] = record_id(raw_id)
    _keep_unknown_attrs(rec, el, ("id",))
    return rec


_MASTER_TEXT: Final = ("title", "notes", "data_quality")


def normalize_master(el: Element) -> Record:
    rec: Record = {
        "id": record_id(el.get("id")),
        "main_release": None,
        "title": None,
        "year": None,
        "notes": None,
        "data_quality": None,
        "artists": [],
        "genres": [],
        "styles": [],
        "videos": [],
        "images": [],
    }
    for child in el:
        tag = child.tag
        if tag in _MASTER_TEXT:
            rec[tag] = _text(child)
        elif tag == "main_release":
            rec["main_release"] = _ref_id(child.text)
        elif tag == "year":
            rec["year"] = _year(child.text)
        elif tag == "artists":
            rec["artists"] = _credits(child)
        elif tag in {"genres", "styles"}:
            rec[tag] = _strings(child)
        elif tag == "videos":
            rec["videos"] = _videos(child)
        elif tag == "images":
            rec["images"] = _images(child)
        else:
            _keep_unknown(rec, child)
    _keep_unknown_attrs(rec, el, ("id",))
    return rec


_RELEASE_TEXT: Final = ("title", "country", "released", "notes", "data_quality")


def normalize_release(el: Element) -> Record:
    rec: Record = {
        "id": record_id(el.get("id")),
        "status": _clean(el.get("status")),
        "title": None,
        "artists": [],
        "extraartists": [],
        "labels": [],
        "series": [],
        "formats": [],
        "genres": [],
        "styles": [],
        "country": None,
        "released": None,
        "year": None,
        "notes": None,
        "data_quality": None,
        "master_id": None,
        "is_main_release": None,
        "tracklist": [],
        "identifiers": [],
        "videos": [],
        "companies": [],
        "images": [],
    }
    for child in el:
        tag = child.tag
        if tag in _RELEASE_TEXT:
            rec[tag] = _text(child)
        elif tag in {"artists", "extraartists"}:
            rec[tag] = _credits(child)
        elif tag in {"labels", "series"}:
            rec[tag] = _attr_refs(child)
        elif tag == "formats":
            rec["formats"] = _formats(child)
        elif tag in {"genres", "styles"}:
            rec[tag] = _strings(child)
        elif tag == "master_id":
            rec["master_id"] = _ref_id(child.text)
            rec["is_main_release"] = _bool(child.get("is_main_release"))
        elif tag == "tracklist":
            rec["tracklist"] = _tracks(child)
        elif tag == "identifiers":
            rec["identifiers"] = _identifiers(child)
        elif tag == "videos":
            rec["videos"] = _videos(child)
        elif tag == "companies":
            rec["companies"] = _companies(child)
        elif tag == "images":
            rec["images"] = _images(child)
        else:
            _keep_unknown(rec, child)
    rec["year"] = released_year(rec["released"])
    _keep_unknown_attrs(rec, el, ("id", "status"))
    return rec


def _depth_guarded(normalize: Callable[[Element], Record]) -> Callable[[Element], Record]:
    """Unknown elements and sub-tracks are normalised recursively, and lxml accepts 2,048 levels
    of nesting (huge_tree): a record nested beyond Python's recursion limit is malformed (dead-
    lettered with this reason) instead of an error that fails its whole file."""

    @functools.wraps(normalize)
    def guarded(el: Element) -> Record:
        try:
            return normalize(el)
        except RecursionError:
            raise MalformedRecordError("elements nested too deeply to normalise") from None

    return guarded


NORMALIZERS: Final[dict[str, Callable[[Element], Record]]] = {
    "artists": _depth_guarded(normalize_artist),
    "labels": _depth_guarded(normalize_label),
    "masters": _depth_guarded(normalize_master),
    "releases": _depth_guarded(normalize_release),
}

RECORD_TAGS: Final = {"artists": "artist", "labels": "label", "masters": "master", "releases": "release"}


def raw_record_id(el: Element) -> str | None:
    """The id text of an element without normalising it (for error reports and skipping)."""
    value = el.get("id")
    if value is not None:
        return value
    for child in el:
        if child.tag == "id":
            return child.text
    return None
