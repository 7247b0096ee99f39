"""Accounts, tokens and the admin config routes against the real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
import uuid
from typing import Any

import httpx
import jwt
import orjson
import pytest
import redis.asyncio as aioredis
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api.errors import ApiError
from api.queries.user_queries import get_app_config
from api.rate_limit import enforce_rate_limit
from api.settings import ApiSettings
from common.crypto import SecretBox
from tests.integration.api.conftest import UserMaker, assert_envelope, bearer, make_settings, running_app

pytestmark = pytest.mark.integration

PgPool = AsyncConnectionPool[AsyncConnection[dict[str, Any]]]


def _email() -> str:
    return f"a-{uuid.uuid4().hex[:10]}@Example.COM"


async def test_register_normalises_email_and_returns_account(client: httpx.AsyncClient) -> None:
    email = "  " + _email() + " "
    resp = await client.post("/api/auth/register", json={"email": email, "password": "12345678"})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["email"] == email.strip().lower()
    assert body["is_active"] is True and body["is_admin"] is False
    uuid.UUID(body["id"])
    assert body["created_at"]


@pytest.mark.parametrize(
    "payload",
    [
        {"email": "not-an-email", "password": "12345678"},
        {"email": "a@b", "password": "12345678"},
        {"email": "a@b.co", "password": "1234567"},
        {"email": "a@b.co", "password": "x" * 1025},
        {"email": "a@b.co"},
        {"password": "12345678"},
        {"email": 5, "password": "12345678"},
        {"email": "a\u0000b@c.de", "password": "12345678"},
        {"email": "a@b.co", "password": "1234\u00005678"},
    ],
)
async def test_register_rejects_invalid_input_with_422(
    client: httpx.AsyncClient, payload: dict[str, Any]
) -> None:
    body = assert_envelope(await client.post("/api/auth/register", json=payload), 422, "validation_error")
    assert isinstance(body["detail"], list) and body["detail"][0]["loc"][0] == "body"


async def test_register_malformed_json_is_422_envelope(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/api/auth/register", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_envelope(resp, 422, "validation_error")


async def test_duplicate_email_is_409_case_insensitive(client: httpx.AsyncClient) -> None:
    email = _email()
    assert (
        await client.post("/api/auth/register", json={"email": email, "password": "12345678"})
    ).status_code == 201
    resp = await client.post("/api/auth/register", json={"email": email.upper(), "password": "12345678"})
    assert_envelope(resp, 409, "email_already_registered")


async def test_password_is_stored_as_argon2id(client: httpx.AsyncClient, pg_pool: PgPool) -> None:
    email = _email()
    await client.post("/api/auth/register", json={"email": email, "password": "12345678"})
    async with pg_pool.connection() as conn:
        cur = await conn.execute("SELECT hashed_password FROM users WHERE email = %s", (email.lower(),))
        row = await cur.fetchone()
    assert row is not None and row["hashed_password"].startswith("$argon2id$")


async def test_login_me_and_token_claims(client: httpx.AsyncClient, api_settings: ApiSettings) -> None:
    email = _email()
    await client.post("/api/auth/register", json={"email": email, "password": "12345678"})
    resp = await client.post("/api/auth/login", json={"email": email.upper(), "password": "12345678"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == api_settings.jwt_expire_minutes * 60
    token = body["access_token"]
    assert len(token.split(".")) == 3
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"
    claims = jwt.decode(token, api_settings.jwt_secret_key.get_secret_value(), algorithms=["HS256"])
    assert set(claims) == {"sub", "email", "iat", "exp", "jti"}
    assert claims["email"] == email.lower()
    me = await client.get("/api/auth/me", headers=bearer(token))
    assert me.status_code == 200, me.text
    assert me.json()["id"] == claims["sub"] and me.json()["email"] == email.lower()


@pytest.mark.parametrize("password", ["wrong-password", ""])
async def test_login_wrong_password_is_401(client: httpx.AsyncClient, password: str) -> None:
    email = _email()
    await client.post("/api/auth/register", json={"email": email, "password": "12345678"})
    resp = await client.post("/api/auth/login", json={"email": email, "password": password})
    assert_envelope(resp, 401, "invalid_credentials")
    assert resp.headers["www-authenticate"] == "Bearer"


async def test_login_with_unstorable_text_is_422_not_500(client: httpx.AsyncClient) -> None:
    resp = await client.post("/api/auth/login", json={"email": "x\u0000@y.zz", "password": "12345678"})
    assert_envelope(resp, 422, "validation_error")
    raw = b'{"email": "\\ud800@y.zz", "password": "12345678"}'  # a lone surrogate
    resp = await client.post("/api/auth/login", content=raw, headers={"Content-Type": "application/json"})
    assert resp.status_code in (400, 422)
    assert_envelope(resp, resp.status_code)


async def test_login_unknown_email_is_the_same_401(client: httpx.AsyncClient) -> None:
    resp = await client.post("/api/auth/login", json={"email": _email(), "password": "12345678"})
    body = assert_envelope(resp, 401, "invalid_credentials")
    assert body["error"] == "Incorrect email or password"


async def test_inactive_user_cannot_login_nor_use_token(
    client: httpx.AsyncClient, make_user: UserMaker, pg_pool: PgPool
) -> None:
    user_id, token = await make_user(password="12345678")
    async with pg_pool.connection() as conn:
        cur = await conn.execute(
            "UPDATE users SET is_active = false WHERE id = %s RETURNING email", (user_id,)
        )
        email = (await cur.fetchone() or {})["email"]
    assert_envelope(await client.get("/api/user/collection", headers=bearer(token)), 401)
    resp = await client.post("/api/auth/login", json={"email": email, "password": "12345678"})
    assert_envelope(resp, 401, "invalid_credentials")


async def test_legacy_pbkdf2_hash_is_accepted_and_rehashed(
    client: httpx.AsyncClient, pg_pool: PgPool
) -> None:
    email = _email().lower()
    salt = os.urandom(32)
    key = hashlib.pbkdf2_hmac("sha256", b"legacy-pass", salt, 100_000, 32)
    async with pg_pool.connection() as conn:
        await conn.execute(
            "INSERT INTO users (email, hashed_password) VALUES (%s, %s)", (email, f"{salt.hex()}:{key.hex()}")
        )
    resp = await client.post("/api/auth/login", json={"email": email, "password": "legacy-pass"})
    assert resp.status_code == 200, resp.text
    async with pg_pool.connection() as conn:
        cur = await conn.execute("SELECT hashed_password FROM users WHERE email = %s", (email,))
        assert (await cur.fetchone() or {})["hashed_password"].startswith("$argon2id$")


# --- token attacks -------------------------------------------------------------------------------


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()


async def test_me_without_header_is_401(client: httpx.AsyncClient) -> None:
    resp = await client.get("/api/auth/me")
    assert_envelope(resp, 401, "not_authenticated")
    assert resp.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("scheme", ["Basic", "Token"])
async def test_wrong_scheme_is_401(client: httpx.AsyncClient, make_user: UserMaker, scheme: str) -> None:
    _, token = await make_user()
    assert_envelope(await client.get("/api/auth/me", headers={"Authorization": f"{scheme} {token}"}), 401)


async def test_token_attacks_are_401(
    client: httpx.AsyncClient, make_user: UserMaker, api_settings: ApiSettings
) -> None:
    user_id, token = await make_user()
    secret = api_settings.jwt_secret_key.get_secret_value()
    now = int(time.time())
    good = {"sub": user_id, "email": "x@y.z", "iat": now, "exp": now + 600, "jti": uuid.uuid4().hex}
    header, payload, signature = token.split(".")
    claims = jwt.decode(token, secret, algorithms=["HS256"])
    tampered_payload = _b64({**claims, "email": "admin@example.com"})
    flipped = "AA" if signature[-2:] != "AA" else "BB"
    attacks = {
        "tampered payload": f"{header}.{tampered_payload}.{signature}",
        "tampered signature": f"{header}.{payload}.{signature[:-2]}{flipped}",
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(good)}.",
        "alg none no dot": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(good)}",
        "other secret": jwt.encode(good, "another-secret-of-sufficient-length-123456", algorithm="HS256"),
        "HS384": jwt.encode(good, secret, algorithm="HS384"),
        "expired": jwt.encode({**good, "iat": now - 7200, "exp": now - 3600}, secret, algorithm="HS256"),
        "exp=1": jwt.encode({**good, "exp": 1}, secret, algorithm="HS256"),
        "no sub": jwt.encode({k: v for k, v in good.items() if k != "sub"}, secret, algorithm="HS256"),
        "no exp": jwt.encode({k: v for k, v in good.items() if k != "exp"}, secret, algorithm="HS256"),
        "no jti": jwt.encode({k: v for k, v in good.items() if k != "jti"}, secret, algorithm="HS256"),
        "sub not uuid": jwt.encode({**good, "sub": "1 OR 1=1"}, secret, algorithm="HS256"),
        "exp not a number": jwt.encode({**good, "exp": "soon"}, secret, algorithm="HS256"),
        "four parts": token + ".x",
        "garbage": "not.a.token",
    }
    for name, bad in attacks.items():
        resp = await client.get("/api/auth/me", headers=bearer(bad))
        assert resp.status_code == 401, (name, resp.text)
        assert_envelope(resp, 401)
    resp = await client.get("/api/auth/me", headers={b"Authorization": "Bearer é.é.é".encode()})
    assert_envelope(resp, 401)
    # The untouched token still works, and a token for a deleted user id is 404 on /me.
    assert (await client.get("/api/auth/me", headers=bearer(token))).status_code == 200
    ghost = jwt.encode({**good, "sub": str(uuid.uuid4())}, secret, algorithm="HS256")
    assert_envelope(await client.get("/api/auth/me", headers=bearer(ghost)), 404, "user_not_found")
    assert_envelope(await client.get("/api/user/collection", headers=bearer(ghost)), 401)


async def test_logout_revokes_the_token_until_expiry(
    client: httpx.AsyncClient, make_user: UserMaker, redis_client: aioredis.Redis, api_settings: ApiSettings
) -> None:
    _, token = await make_user()
    _, other = await make_user()
    resp = await client.post("/api/auth/logout", headers=bearer(token))
    assert resp.status_code == 200 and resp.json() == {"logged_out": True}
    assert_envelope(await client.get("/api/auth/me", headers=bearer(token)), 401, "token_revoked")
    assert_envelope(await client.post("/api/auth/logout", headers=bearer(token)), 401, "token_revoked")
    # Only that token: another session of another user is unaffected.
    assert (await client.get("/api/auth/me", headers=bearer(other))).status_code == 200
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    ttl = await redis_client.ttl(f"auth:revoked:{jti}")
    assert 0 < ttl <= api_settings.jwt_expire_minutes * 60 + 10


async def test_login_and_register_are_rate_limited_per_address(redis_client: aioredis.Redis) -> None:
    await redis_client.flushdb()
    settings = make_settings(LOGIN_RATE_LIMIT=3, REGISTER_RATE_LIMIT=2, RATE_LIMIT_WINDOW_S=60)
    async with running_app(settings) as (_, client):
        for _ in range(3):
            resp = await client.post("/api/auth/login", json={"email": "x@y.zz", "password": "nopenope"})
            assert resp.status_code == 401
        resp = await client.post("/api/auth/login", json={"email": "x@y.zz", "password": "nopenope"})
        assert_envelope(resp, 429, "rate_limited")
        assert 1 <= int(resp.headers["retry-after"]) <= 60
        for _ in range(2):
            resp = await client.post("/api/auth/register", json={"email": _email(), "password": "12345678"})
            assert resp.status_code == 201
        resp = await client.post("/api/auth/register", json={"email": _email(), "password": "12345678"})
        assert_envelope(resp, 429, "rate_limited")
        assert int(resp.headers["retry-after"]) >= 1
        # Another client address has its own budget.
        other = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=client._transport.app, client=("10.0.0.9", 1)),  # type: ignore[attr-defined]
            base_url="http://api.test",
        )
        async with other:
            resp = await other.post("/api/auth/login", json={"email": "x@y.zz", "password": "nopenope"})
            assert resp.status_code == 401
    await redis_client.flushdb()


async def test_the_rate_limit_is_a_sliding_window(redis_client: aioredis.Redis) -> None:
    """At most `limit` requests in any `window` seconds, wherever the clock's minutes fall (a
    counter per fixed window let a client through twice its limit across a boundary, and made the
    test above fail when it ran across one). A refused request is not counted: after Retry-After
    the next one is admitted."""
    address = f"test-{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        await enforce_rate_limit(redis_client, "test", address, 2, 3)
    await asyncio.sleep(1.5)
    for _ in range(2):  # still inside the window of the first two, whatever the clock says
        with pytest.raises(ApiError) as refused:
            await enforce_rate_limit(redis_client, "test", address, 2, 3)
    assert refused.value.status_code == 429
    retry_after = int((refused.value.headers or {})["Retry-After"])
    assert 1 <= retry_after <= 2  # the first request leaves the window 3 s after it came
    await asyncio.sleep(retry_after)
    await enforce_rate_limit(redis_client, "test", address, 2, 3)
    await redis_client.delete(f"ratelimit:test:{address}")


# --- admin -----------------------------------------------------------------------------------------


async def test_admin_routes_need_auth_and_admin_role(client: httpx.AsyncClient, make_user: UserMaker) -> None:
    assert_envelope(await client.get("/api/admin/config"), 401)
    _, token = await make_user()
    assert_envelope(await client.get("/api/admin/config", headers=bearer(token)), 403, "forbidden")
    resp = await client.put(
        "/api/admin/config/discogs_consumer_key", json={"value": "k"}, headers=bearer(token)
    )
    assert_envelope(resp, 403, "forbidden")


async def test_admin_sets_config_secrets_encrypted_and_masked(
    client: httpx.AsyncClient, make_user: UserMaker, pg_pool: PgPool, api_settings: ApiSettings
) -> None:
    _, token = await make_user(admin=True)
    h = bearer(token)
    resp = await client.put("/api/admin/config/discogs_consumer_key", json={"value": "my-key-123"}, headers=h)
    assert resp.status_code == 200, resp.text
    assert resp.json()["value"] == "my-key-123" and resp.json()["is_secret"] is False
    resp = await client.put(
        "/api/admin/config/discogs_consumer_secret", json={"value": "supersecretvalue"}, headers=h
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["value"] == "su************ue" and resp.json()["is_secret"] is True
    resp = await client.get("/api/admin/config", headers=h)
    assert resp.status_code == 200
    entries = {e["key"]: e for e in resp.json()["config"]}
    assert set(entries) == {"discogs_consumer_key", "discogs_consumer_secret", "discogs_user_agent"}
    assert entries["discogs_consumer_secret"]["value"] == "su************ue"
    assert "supersecretvalue" not in resp.text
    assert entries["discogs_user_agent"]["is_set"] in (True, False)
    async with pg_pool.connection() as conn:
        cur = await conn.execute(
            "SELECT value, is_secret FROM app_config WHERE key = 'discogs_consumer_secret'"
        )
        row = await cur.fetchone()
        assert row is not None and row["is_secret"] is True and "supersecretvalue" not in row["value"]
        config = await get_app_config(conn, SecretBox(api_settings.encryption_key_list))
    assert config["discogs_consumer_secret"] == "supersecretvalue"
    assert config["discogs_consumer_key"] == "my-key-123"


async def test_admin_config_bounds(client: httpx.AsyncClient, make_user: UserMaker) -> None:
    _, token = await make_user(admin=True)
    h = bearer(token)
    resp = await client.put("/api/admin/config/not_a_key", json={"value": "v"}, headers=h)
    body = assert_envelope(resp, 400, "invalid_config_key")
    assert "Valid:" in body["error"]
    assert_envelope(
        await client.put("/api/admin/config/discogs_user_agent", json={"value": ""}, headers=h), 422
    )
    resp = await client.put("/api/admin/config/discogs_user_agent", json={"value": "x" * 1025}, headers=h)
    assert_envelope(resp, 422)
    assert_envelope(await client.put("/api/admin/config/discogs_user_agent", json={}, headers=h), 422)
