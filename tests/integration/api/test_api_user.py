"""User routes read what the curator's sync writes: COLLECTED (per instance) and WANTS."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from neo4j import AsyncDriver

from tests.integration.api.conftest import UserMaker, assert_envelope, bearer
from tests.integration.api.graph_fixture import add_user_items

pytestmark = pytest.mark.integration

ROUTES = [
    "/api/user/collection",
    "/api/user/wantlist",
    "/api/user/recommendations",
    "/api/user/collection/stats",
]


def _c(release_id: int, instance: int, date: str, rating: int = 0, folder: int = 1) -> dict[str, Any]:
    return {
        "release_id": release_id,
        "instance_id": instance,
        "rating": rating,
        "folder_id": folder,
        "date_added": date,
    }


@pytest.fixture(scope="module")
async def synced_user(graph: AsyncDriver, make_user: UserMaker) -> tuple[str, str]:
    user_id, token = await make_user()
    collected = [
        _c(1001, 1, "2024-01-01T10:00:00-08:00", rating=5),
        _c(1002, 2, "2024-03-01T10:00:00-08:00", rating=4, folder=7),
        _c(1002, 3, "2024-02-01T10:00:00-08:00"),  # a second copy of the same release
        _c(1101, 4, "2023-06-01T10:00:00-08:00"),
        _c(1301, 5, "2022-01-01T10:00:00-08:00"),
    ]
    wanted = [
        {"release_id": 1003, "rating": 0, "date_added": "2024-05-01T00:00:00-08:00"},
        {"release_id": 1302, "rating": 3, "date_added": "2024-04-01T00:00:00-08:00"},
    ]
    await add_user_items(graph, user_id, collected, wanted)
    return user_id, token


async def test_user_routes_require_auth(client: httpx.AsyncClient) -> None:
    for route in ROUTES:
        resp = await client.get(route)
        assert_envelope(resp, 401, "not_authenticated")
        assert resp.headers["www-authenticate"] == "Bearer"
        assert_envelope(await client.get(route, headers=bearer("bad.token.here")), 401, "invalid_token")


async def test_collection_pages_by_date_added(
    client: httpx.AsyncClient, synced_user: tuple[str, str]
) -> None:
    _, token = synced_user
    resp = await client.get("/api/user/collection", params={"limit": 2}, headers=bearer(token))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["total"] == 5 and body["limit"] == 2 and body["offset"] == 0 and body["has_more"] is True
    first = body["releases"][0]
    assert first == {
        "id": "1002",
        "title": "Selected Ambient Works 85-92",
        "year": 1992,
        "artist": "Aphex Twin",
        "label": "Rephlex",
        "rating": 4,
        "date_added": "2024-03-01T10:00:00-08:00",
        "folder_id": 7,
        "instance_id": "2",
    }
    rest = (await client.get("/api/user/collection", params={"offset": 2}, headers=bearer(token))).json()
    assert [r["id"] for r in body["releases"] + rest["releases"]] == ["1002", "1002", "1001", "1101", "1301"]
    assert rest["has_more"] is False


async def test_wantlist(client: httpx.AsyncClient, synced_user: tuple[str, str]) -> None:
    _, token = synced_user
    body = (await client.get("/api/user/wantlist", headers=bearer(token))).json()
    assert body["total"] == 2 and [r["id"] for r in body["releases"]] == ["1003", "1302"]
    assert "folder_id" not in body["releases"][0]
    assert body["releases"][1]["artist"] == "AC/DC" and body["releases"][1]["rating"] == 3


async def test_recommendations(client: httpx.AsyncClient, synced_user: tuple[str, str]) -> None:
    _, token = synced_user
    body = (await client.get("/api/user/recommendations", params={"limit": 5}, headers=bearer(token))).json()
    recs = body["recommendations"]
    assert body["total"] == len(recs) == 5
    ids = [r["id"] for r in recs]
    # Not collected, not wanted; Aphex Twin (3 instances) outranks the rest; ties by id.
    assert not {"1001", "1002", "1003", "1101", "1301", "1302"} & set(ids)
    assert recs[0]["id"] == "1105" and recs[0]["score"] == 4  # Aphex (3) + Autechre (1)
    assert [r["score"] for r in recs] == sorted((r["score"] for r in recs), reverse=True)
    assert recs[1]["genres"] == ["Electronic"] and recs[1]["artist"] == "Aphex Twin"


async def test_collection_stats(client: httpx.AsyncClient, synced_user: tuple[str, str]) -> None:
    _, token = synced_user
    body = (await client.get("/api/user/collection/stats", headers=bearer(token))).json()
    assert body["total"] == 5
    assert body["by_genre"] == [{"name": "Electronic", "count": 4}, {"name": "Rock", "count": 1}]
    assert body["by_label"][0] == {"name": "Rephlex", "count": 3}
    assert body["by_decade"] == [{"decade": 1980, "count": 1}, {"decade": 1990, "count": 4}]


async def test_empty_user(client: httpx.AsyncClient, make_user: UserMaker) -> None:
    _, token = await make_user()
    h = bearer(token)
    assert (await client.get("/api/user/collection", headers=h)).json() == {
        "releases": [], "total": 0, "offset": 0, "limit": 50, "has_more": False
    }  # fmt: skip
    assert (await client.get("/api/user/recommendations", headers=h)).json() == {
        "recommendations": [],
        "total": 0,
    }
    stats = (await client.get("/api/user/collection/stats", headers=h)).json()
    assert stats == {"total": 0, "by_genre": [], "by_decade": [], "by_label": []}


async def test_status(client: httpx.AsyncClient, synced_user: tuple[str, str]) -> None:
    _, token = synced_user
    resp = await client.get(
        "/api/user/status", params={"ids": "1002, 1003,9999,abc,1002"}, headers=bearer(token)
    )
    assert resp.status_code == 200
    assert resp.json()["status"] == {
        "1002": {"in_collection": True, "in_wantlist": False},
        "1003": {"in_collection": False, "in_wantlist": True},
        "9999": {"in_collection": False, "in_wantlist": False},
        "abc": {"in_collection": False, "in_wantlist": False},
    }
    anon = (await client.get("/api/user/status", params={"ids": "1002"})).json()
    assert anon == {"status": {"1002": {"in_collection": False, "in_wantlist": False}}}
    invalid = await client.get("/api/user/status", params={"ids": "1002"}, headers=bearer("x.y.z"))
    assert invalid.status_code == 200 and invalid.json() == anon
    assert (await client.get("/api/user/status", params={"ids": ",,,"})).json() == {"status": {}}


async def test_user_bounds(client: httpx.AsyncClient, synced_user: tuple[str, str]) -> None:
    _, token = synced_user
    h = bearer(token)
    for params in ({"limit": 0}, {"limit": 201}, {"offset": -1}, {"offset": 100_001}):
        assert_envelope(await client.get("/api/user/collection", params=params, headers=h), 422)
    assert_envelope(await client.get("/api/user/recommendations", params={"limit": 101}, headers=h), 422)
    assert_envelope(await client.get("/api/user/status", headers=h), 422)
    many = ",".join(str(i) for i in range(101))
    body = assert_envelope(await client.get("/api/user/status", params={"ids": many}, headers=h), 400)
    assert body["code"] == "too_many_ids"
    assert_envelope(await client.get("/api/user/status", params={"ids": "1," * 3000}, headers=h), 422)
