"""How the curator maps Discogs items to graph and table rows, and its settings' rate guard."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from curator.settings import CuratorSettings
from curator.syncer import _collection_row, _graph_item, _release_id, _want_row
from tests.fakes.discogs_api import release_info


def test_collection_item_maps_every_column() -> None:
    item = {
        "id": 42,
        "instance_id": 7,
        "folder_id": 3,
        "rating": 4,
        "date_added": "2015-04-14T03:23:29-07:00",
        "basic_information": release_info(42, "Title", year=1999, artist="A", label="L", fmt="CD"),
    }
    row = _collection_row(item)
    assert (row.release_id, row.instance_id, row.folder_id, row.rating) == (42, 7, 3, 4)
    assert (row.title, row.artist, row.label, row.format, row.year) == ("Title", "A", "L", "CD", 1999)
    assert row.date_added is not None and row.date_added.utcoffset() == timedelta(hours=-7)
    graph = _graph_item(item, collection=True)
    assert graph["instance_id"] == 7 and graph["folder_id"] == 3
    assert graph["artists"] == [{"id": 1, "name": "A"}]
    assert graph["labels"] == [{"id": 1, "name": "L", "catno": "CAT-1"}]
    assert graph["date_added"] == "2015-04-14T03:23:29-07:00"


def test_odd_values_are_normalised() -> None:
    info = release_info(5, "  T  ", year=0)
    info["artists"] = [{"id": None, "name": "Unlinked"}, {"id": 9, "name": "Linked"}]
    item = {"id": "5", "rating": 17, "date_added": "not a date", "notes": "n", "basic_information": info}
    want = _want_row(item)
    assert want.release_id == 5 and want.year is None and want.rating == 0 and want.date_added is None
    assert want.title == "T" and want.artist == "Unlinked" and want.notes == "n"
    assert _graph_item(item, collection=False)["artists"] == [{"id": 9, "name": "Linked"}]
    assert _release_id({"basic_information": {"id": 8}}) == 8
    assert _release_id({"id": True}) is None


def test_titles_are_cut_to_the_column_size() -> None:
    item = {"id": 1, "instance_id": 1, "basic_information": release_info(1, "x" * 900)}
    assert len(_collection_row(item).title or "") == 500


def test_rate_above_sixty_per_minute_is_refused() -> None:
    assert CuratorSettings(DISCOGS_RATE_LIMIT=60).discogs_rate_limit == 60
    assert CuratorSettings(DISCOGS_RATE_LIMIT=3, DISCOGS_RATE_WINDOW_S=3).discogs_rate_limit == 3
    with pytest.raises(ValidationError, match="requests/minute"):
        CuratorSettings(DISCOGS_RATE_LIMIT=5, DISCOGS_RATE_WINDOW_S=3)
    with pytest.raises(ValidationError):
        CuratorSettings(DISCOGS_RATE_LIMIT=61)
