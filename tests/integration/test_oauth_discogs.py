"""Linking Discogs through HTTP (api over ASGI with its real lifespan) against the fake Discogs
server: the out-of-band and the callback flow, state binding, tokens encrypted at rest."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from tests.conftest import free_port
from tests.fakes.discogs_api import FakeDiscogs
from tests.integration.discogs_support import (
    API_BASE,
    api_settings,
    approve_on_discogs,
    configure_consumer_key,
    link_discogs,
    new_user,
    running_api,
    secret_box,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscogs]:
    server = FakeDiscogs()
    server.add_user("alice_discogs", 501)
    server.add_user("bob_discogs", 502)
    await server.start(free_port())
    yield server
    await server.stop()


@pytest.fixture
async def api(
    fake: FakeDiscogs, clean_postgres: Any, clean_redis: aioredis.Redis
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_api(api_settings(fake)) as pair:
        yield pair


@pytest.fixture
async def client(api: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return api[1]


async def test_routes_need_a_user(client: httpx.AsyncClient) -> None:
    for method, path in (
        ("GET", "/api/oauth/authorize/discogs"),
        ("POST", "/api/oauth/verify/discogs"),
        ("GET", "/api/oauth/status/discogs"),
        ("DELETE", "/api/oauth/revoke/discogs"),
    ):
        resp = await client.request(method, path)
        assert resp.status_code == 401, (path, resp.text)
        assert set(resp.json()) == {"error", "code", "detail"}


async def test_authorize_without_consumer_key_is_503(client: httpx.AsyncClient) -> None:
    _, headers = await new_user(client)
    resp = await client.get("/api/oauth/authorize/discogs", headers=headers)
    assert resp.status_code == 503
    assert resp.json()["code"] == "discogs_not_configured"
    assert "consumer key" in resp.json()["error"]


async def test_out_of_band_flow_links_the_account_with_encrypted_tokens(
    client: httpx.AsyncClient, fake: FakeDiscogs, pg_pool: Any, redis_client: aioredis.Redis
) -> None:
    await configure_consumer_key(client, pg_pool, fake)
    _, headers = await new_user(client)
    assert (await client.get("/api/oauth/status/discogs", headers=headers)).json() == {
        "connected": False,
        "discogs_username": None,
        "discogs_user_id": None,
        "connected_at": None,
    }

    resp = await client.get("/api/oauth/authorize/discogs", headers=headers)
    assert resp.status_code == 200
    body = resp.json()
    assert body["expires_in"] == 600
    assert body["flow"] == "oob"
    assert body["authorize_url"] == f"{fake.authorize_url}?oauth_token={body['state']}"
    # The state is in Redis for 10 minutes, and the request-token secret is not in plaintext.
    key = f"discogs:oauth:state:{body['state']}"
    assert 590 <= await redis_client.ttl(key) <= 600
    stored = await redis_client.get(key)
    assert stored is not None and fake.request_tokens[body["state"]].secret not in stored

    page = await approve_on_discogs(fake, body["authorize_url"], "alice_discogs")
    verifier = re.search(r'<code id="verifier">([^<]+)</code>', page.text)
    assert verifier is not None
    resp = await client.post(
        "/api/oauth/verify/discogs",
        json={"state": body["state"], "oauth_verifier": verifier.group(1)},
        headers=headers,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"connected": True, "discogs_username": "alice_discogs", "discogs_user_id": "501"}
    assert await redis_client.get(key) is None  # single use
    assert "HMAC-SHA1" in fake.signature_methods_seen

    status = (await client.get("/api/oauth/status/discogs", headers=headers)).json()
    assert status["connected"] is True
    assert status["discogs_username"] == "alice_discogs"
    assert status["discogs_user_id"] == "501"
    assert status["connected_at"]

    # At rest: ciphertext that opens to the access token Discogs issued.
    async with pg_pool.connection() as conn:
        row = await (
            await conn.execute("SELECT access_token, access_secret, provider_username FROM oauth_tokens")
        ).fetchone()
    assert row["provider_username"] == "alice_discogs"
    (issued_token, (issued_secret, _)) = next(iter(fake.access_tokens.items()))
    assert row["access_token"] != issued_token and row["access_secret"] != issued_secret
    assert secret_box().decrypt(row["access_token"]) == issued_token
    assert secret_box().decrypt(row["access_secret"]) == issued_secret

    # A used state cannot be replayed.
    resp = await client.post(
        "/api/oauth/verify/discogs",
        json={"state": body["state"], "oauth_verifier": verifier.group(1)},
        headers=headers,
    )
    assert resp.status_code == 400
    assert resp.json()["code"] == "invalid_oauth_state"


async def test_plaintext_signatures_work_too(fake: FakeDiscogs, clean_postgres: Any, pg_pool: Any) -> None:
    async with running_api(api_settings(fake, DISCOGS_SIGNATURE_METHOD="PLAINTEXT")) as (_, client):
        await configure_consumer_key(client, pg_pool, fake, via_http=False)
        _, headers = await new_user(client)
        result = await link_discogs(client, fake, headers, "bob_discogs")
    assert result["discogs_username"] == "bob_discogs"
    assert fake.signature_methods_seen == {"PLAINTEXT"}


async def test_bad_and_foreign_states_are_refused(
    client: httpx.AsyncClient, fake: FakeDiscogs, pg_pool: Any
) -> None:
    await configure_consumer_key(client, pg_pool, fake)
    _, alice = await new_user(client, "alice")
    _, mallory = await new_user(client, "mallory")

    resp = await client.post(
        "/api/oauth/verify/discogs", json={"state": "no-such-state", "oauth_verifier": "x"}, headers=alice
    )
    assert resp.status_code == 400
    assert resp.json()["code"] == "invalid_oauth_state"

    body = (await client.get("/api/oauth/authorize/discogs", headers=alice)).json()
    page = await approve_on_discogs(fake, body["authorize_url"], "alice_discogs")
    verifier = re.search(r'<code id="verifier">([^<]+)</code>', page.text)
    assert verifier is not None
    payload = {"state": body["state"], "oauth_verifier": verifier.group(1)}

    # Another user holding Alice's state and code gets the same answer as for an unknown state ...
    resp = await client.post("/api/oauth/verify/discogs", json=payload, headers=mallory)
    assert resp.status_code == 400
    assert resp.json()["code"] == "invalid_oauth_state"
    mallory_status = (await client.get("/api/oauth/status/discogs", headers=mallory)).json()
    assert mallory_status["connected"] is False

    # ... and a wrong code does not burn the state: Alice can still finish.
    wrong = {"state": body["state"], "oauth_verifier": "not-the-code"}
    resp = await client.post("/api/oauth/verify/discogs", json=wrong, headers=alice)
    assert resp.status_code == 400
    assert resp.json()["code"] == "oauth_failed"
    resp = await client.post("/api/oauth/verify/discogs", json=payload, headers=alice)
    assert resp.status_code == 200, resp.text
    assert resp.json()["discogs_username"] == "alice_discogs"


async def test_callback_flow_completes_only_in_the_browser_that_started_it(
    api: tuple[FastAPI, httpx.AsyncClient], fake: FakeDiscogs, pg_pool: Any
) -> None:
    app, client = api
    await configure_consumer_key(client, pg_pool, fake)
    _, alice = await new_user(client, "alice")
    _, mallory = await new_user(client, "mallory")

    resp = await client.get("/api/oauth/authorize/discogs", params={"flow": "callback"}, headers=alice)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["flow"] == "callback"
    assert fake.request_tokens[body["state"]].callback == f"{API_BASE}/api/oauth/callback/discogs"
    cookie = resp.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Path=/api/oauth" in cookie

    approved = await approve_on_discogs(fake, body["authorize_url"], "alice_discogs")
    assert approved.status_code == 302
    redirect = approved.headers["location"]
    assert redirect.startswith(f"{API_BASE}/api/oauth/callback/discogs?")
    assert parse_qs(urlsplit(redirect).query)["oauth_token"] == [body["state"]]

    # Another browser (no binding cookie), even signed in as someone else, is refused.
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40002))
    async with httpx.AsyncClient(transport=transport, base_url=API_BASE) as other_browser:
        resp = await other_browser.get(redirect, headers=mallory)
        assert resp.status_code == 303
        assert resp.headers["location"] == "/?discogs=error&reason=invalid_state"
    assert (await client.get("/api/oauth/status/discogs", headers=mallory)).json()["connected"] is False
    assert (await client.get("/api/oauth/status/discogs", headers=alice)).json()["connected"] is False

    # The browser that started the flow (its cookie) completes it, without a bearer header.
    resp = await client.get(redirect)
    assert resp.status_code == 303
    assert resp.headers["location"] == "/?discogs=connected"
    status = (await client.get("/api/oauth/status/discogs", headers=alice)).json()
    assert status["connected"] is True and status["discogs_username"] == "alice_discogs"


async def test_denied_on_discogs_redirects_with_an_error(
    client: httpx.AsyncClient, fake: FakeDiscogs, pg_pool: Any
) -> None:
    await configure_consumer_key(client, pg_pool, fake)
    _, alice = await new_user(client)
    body = (
        await client.get("/api/oauth/authorize/discogs", params={"flow": "callback"}, headers=alice)
    ).json()
    async with httpx.AsyncClient() as browser:
        resp = await browser.post(
            fake.authorize_url,
            data={"oauth_token": body["state"], "username": "alice_discogs", "decision": "deny"},
        )
    resp = await client.get(resp.headers["location"])
    assert resp.status_code == 303
    assert resp.headers["location"] == "/?discogs=error&reason=denied"


async def test_revoke_is_idempotent(client: httpx.AsyncClient, fake: FakeDiscogs, pg_pool: Any) -> None:
    await configure_consumer_key(client, pg_pool, fake)
    _, headers = await new_user(client)
    await link_discogs(client, fake, headers, "alice_discogs")
    for _ in range(2):
        resp = await client.delete("/api/oauth/revoke/discogs", headers=headers)
        assert resp.status_code == 200
        assert resp.json() == {"revoked": True, "purged": False}
    assert (await client.get("/api/oauth/status/discogs", headers=headers)).json()["connected"] is False


async def test_discogs_failures_are_502(client: httpx.AsyncClient, fake: FakeDiscogs, pg_pool: Any) -> None:
    await configure_consumer_key(client, pg_pool, fake)
    _, headers = await new_user(client)
    fake.always_fail = 503
    resp = await client.get("/api/oauth/authorize/discogs", headers=headers)
    assert resp.status_code == 502
    assert resp.json()["code"] == "discogs_unavailable"
    fake.always_fail = None
    # A consumer secret Discogs does not accept.
    fake.consumer_secret = "rotated"
    resp = await client.get("/api/oauth/authorize/discogs", headers=headers)
    assert resp.status_code == 502
    assert resp.json()["code"] == "discogs_error"
    assert "401" in resp.json()["error"]
