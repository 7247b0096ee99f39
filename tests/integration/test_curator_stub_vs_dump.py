"""The curator's stub releases and the graphinator's dump records share `Release` nodes: a
release the dump has loaded must never be replaced or deleted as a sync stub."""

from __future__ import annotations

from typing import Any

import pytest
from neo4j import AsyncDriver

from curator.graph import write_list
from graphinator.writer import write_batch
from tests.integration.consumer_support import RELEASE_1, message

pytestmark = pytest.mark.integration

USER = "00000000-0000-0000-0000-00000000abcd"


def item(release_id: int, title: str) -> dict[str, Any]:
    return {
        "release_id": release_id,
        "title": title,
        "year": 2001,
        "artists": [],
        "labels": [],
        "genres": [],
        "styles": [],
        "rating": 0,
        "date_added": "2026-01-01T00:00:00Z",
        "instance_id": release_id * 10,
        "folder_id": 1,
    }


async def release(driver: AsyncDriver, release_id: int) -> dict[str, Any] | None:
    records, _, _ = await driver.execute_query(
        "MATCH (r:Release {id: $id}) RETURN properties(r) AS p", {"id": release_id}
    )
    return dict(records[0]["p"]) if records else None


async def test_stub_later_loaded_from_the_dump_survives_when_the_user_drops_it(
    clean_neo4j: AsyncDriver,
) -> None:
    dump = message("releases", RELEASE_1)
    common: dict[str, Any] = {"user_id": USER, "username": "demo", "synced_at": "2026-01-01T00:00:00Z"}
    # The sync sees the release before the dump does: a stub is created...
    await write_list(clean_neo4j, "COLLECTED", sync_id="s1", items=[item(dump.id, "API title")], **common)
    stub = await release(clean_neo4j, dump.id)
    assert stub is not None
    assert stub["stub"] is True
    # ...then the dump loads the real record into the same node.
    await write_batch(clean_neo4j, "releases", [dump])
    loaded = await release(clean_neo4j, dump.id)
    assert loaded is not None
    assert loaded["sha256"] == dump.sha256

    # A later sync must not overwrite it with the API's basic information.
    await write_list(clean_neo4j, "COLLECTED", sync_id="s2", items=[item(dump.id, "API title 2")], **common)
    assert await release(clean_neo4j, dump.id) == loaded

    # The user no longer owns it: the relationship goes, the dump's release stays.
    removed = await write_list(clean_neo4j, "COLLECTED", sync_id="s3", items=[], **common)
    assert removed == 1
    assert await release(clean_neo4j, dump.id) == loaded


async def test_unreferenced_stub_release_is_removed(clean_neo4j: AsyncDriver) -> None:
    common: dict[str, Any] = {"user_id": USER, "username": "demo", "synced_at": "2026-01-01T00:00:00Z"}
    await write_list(clean_neo4j, "COLLECTED", sync_id="s1", items=[item(987654321, "Only in API")], **common)
    stub = await release(clean_neo4j, 987654321)
    assert stub is not None
    assert stub["stub"] is True
    await write_list(clean_neo4j, "COLLECTED", sync_id="s2", items=[], **common)
    assert await release(clean_neo4j, 987654321) is None
