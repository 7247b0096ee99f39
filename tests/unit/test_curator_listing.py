"""The curator reads whole lists consistently from the fake Discogs server: an edit during the
read (which shifts items between pages) is detected and the list read again; a list that keeps
changing fails the sync instead of being half-applied."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from common.crypto import SecretBox
from common.discogs_client import DiscogsClient
from curator import store
from curator.settings import CuratorSettings
from curator.syncer import Syncer, SyncFailedError, SyncProgress
from tests.conftest import free_port
from tests.fakes.discogs_api import FakeDiscogs, FakeUser


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscogs]:
    server = FakeDiscogs()
    await server.start(free_port())
    yield server
    await server.stop()


async def _read(fake: FakeDiscogs, user: FakeUser) -> tuple[list[dict[str, Any]], SyncProgress]:
    token, secret = "tok", "sec"
    fake.access_tokens[token] = (secret, user.username)
    syncer = Syncer(CuratorSettings(), cast(Any, None), cast(Any, None), SecretBox(["k"]))
    progress = SyncProgress()
    async with DiscogsClient(
        consumer_key=fake.consumer_key, consumer_secret=fake.consumer_secret, api_url=fake.base_url
    ) as client:
        items = await syncer._read(
            client, store.DiscogsLink(user.username, token, secret), "collection", progress
        )
    return items, progress


async def test_a_removal_during_the_read_is_detected_and_read_again(fake: FakeDiscogs) -> None:
    user = fake.add_user("editor")
    for n in range(1, 151):
        user.add_collected(n, f"R{n}")
    calls: list[str] = []

    def remove_after_first_page(path: str) -> None:
        calls.append(path)
        if len(calls) == 1:
            del user.collection[4]  # release 5 goes; release 101 moves onto page 1

    fake.after_data_request = remove_after_first_page
    items, progress = await _read(fake, user)
    assert sorted(i["id"] for i in items) == [n for n in range(1, 151) if n != 5]
    assert progress.pages_fetched == 4  # 2 pages, then the whole list again


async def test_a_list_that_keeps_changing_fails_the_sync(fake: FakeDiscogs) -> None:
    user = fake.add_user("busy")
    for n in range(1, 151):
        user.add_collected(n, f"R{n}")

    def add_one(_: str) -> None:
        user.add_collected(1000 + len(user.collection), "new")

    fake.after_data_request = add_one
    with pytest.raises(SyncFailedError, match="changed while it was being read"):
        await _read(fake, user)
