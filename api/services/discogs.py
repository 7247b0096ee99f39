"""Discogs account linking (OAuth 1.0a) for the api: request tokens, the state in Redis, the
verifier exchange, and the encrypted token row (reference/api.md §2.3 with the §8 fixes).

The state (the request token) lives 10 minutes in Redis under `discogs:oauth:state:<token>`,
bound to the user who started the flow (and, for the browser-redirect flow, to a cookie of the
browser that started it). Its value holds the request-token secret encrypted with the SecretBox.
Verifying consumes the state atomically (a state works once); a wrong verifier puts it back, so
the user can retype the code until it expires.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Final, Literal
from uuid import UUID

import orjson
import redis.asyncio as aioredis

from api.queries import sync_queries, user_queries
from api.settings import ApiSettings
from common.crypto import SecretBox
from common.discogs_client import DiscogsClient, RetryPolicy

STATE_PREFIX: Final = "discogs:oauth:state:"
STATE_TTL_S: Final = 600

Flow = Literal["oob", "callback"]


class DiscogsNotConfiguredError(Exception):
    """The app has no Discogs consumer key/secret."""


class InvalidStateError(Exception):
    """Unknown, expired, already used, or another user's state."""


@dataclass(frozen=True)
class AppCredentials:
    consumer_key: str
    consumer_secret: str
    user_agent: str


@dataclass(frozen=True)
class PendingAuthorization:
    state: str
    authorize_url: str
    binding: str | None  # the browser cookie value for the callback flow


@dataclass(frozen=True)
class LinkedAccount:
    username: str
    user_id: str | None


def state_key(state: str) -> str:
    return f"{STATE_PREFIX}{state}"


async def app_credentials(conn: user_queries.Conn, box: SecretBox, settings: ApiSettings) -> AppCredentials:
    config = await user_queries.get_app_config(conn, box)
    key, secret = config.get("discogs_consumer_key"), config.get("discogs_consumer_secret")
    if not key or not secret:
        raise DiscogsNotConfiguredError
    return AppCredentials(key, secret, config.get("discogs_user_agent") or settings.discogs_user_agent)


def client(settings: ApiSettings, creds: AppCredentials) -> DiscogsClient:
    """A client for interactive calls: short timeout, one quick retry, no long 429 waits."""
    return DiscogsClient(
        consumer_key=creds.consumer_key,
        consumer_secret=creds.consumer_secret,
        api_url=settings.discogs_api_url,
        user_agent=creds.user_agent,
        signature_method=settings.discogs_signature_method,
        retry=RetryPolicy(max_429_retries=1, retry_after_s=2.0, max_error_retries=1, error_backoff_s=0.5),
        timeout_s=settings.discogs_timeout_s,
    )


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def start_authorization(
    settings: ApiSettings,
    creds: AppCredentials,
    redis: aioredis.Redis,
    box: SecretBox,
    user_id: UUID,
    flow: Flow,
    callback_url: str,
) -> PendingAuthorization:
    async with client(settings, creds) as discogs:
        token, token_secret = await discogs.request_token(callback_url if flow == "callback" else "oob")
    binding = secrets.token_urlsafe(32) if flow == "callback" else None
    value = {
        "user_id": str(user_id),
        "secret": box.encrypt(token_secret),
        "flow": flow,
        "binding": _hash(binding) if binding else None,
    }
    await redis.set(state_key(token), orjson.dumps(value).decode(), ex=STATE_TTL_S)
    separator = "&" if "?" in settings.discogs_authorize_url else "?"
    return PendingAuthorization(
        token, f"{settings.discogs_authorize_url}{separator}oauth_token={token}", binding
    )


async def _claim_state(
    redis: aioredis.Redis, state: str, user_id: UUID | None, binding: str | None
) -> tuple[dict[str, Any], int]:
    """The state's value, deleted from Redis, if it belongs to this user / browser; else raise.
    Returns the value and the TTL it had (to put it back after a wrong verifier)."""
    key = state_key(state)
    raw = await redis.get(key)
    if raw is None:
        raise InvalidStateError
    value: dict[str, Any] = orjson.loads(raw)
    owner_ok = user_id is not None and value.get("user_id") == str(user_id)
    browser_ok = (
        binding is not None
        and value.get("binding") is not None
        and hmac.compare_digest(_hash(binding), str(value["binding"]))
    )
    if not (owner_ok or browser_ok):
        raise InvalidStateError  # another user's state looks exactly like an unknown one
    ttl = int(await redis.ttl(key))
    if not await redis.delete(key):  # someone else consumed it meanwhile: single use
        raise InvalidStateError
    return value, max(ttl, 1)


async def complete_authorization(
    settings: ApiSettings,
    creds: AppCredentials,
    redis: aioredis.Redis,
    box: SecretBox,
    conn: user_queries.Conn,
    *,
    state: str,
    verifier: str,
    user_id: UUID | None,
    binding: str | None = None,
) -> tuple[UUID, LinkedAccount]:
    """Exchange the verifier, read the identity, store the encrypted tokens; returns the linked
    user id (the state's owner) and the Discogs account. Raises InvalidStateError or DiscogsError."""
    value, ttl = await _claim_state(redis, state, user_id, binding)
    owner = UUID(value["user_id"])
    try:
        async with client(settings, creds) as discogs:
            token, token_secret = await discogs.access_token(state, box.decrypt(value["secret"]), verifier)
            identity = await discogs.identity(token, token_secret)
    except Exception:
        # A mistyped code can be retried until the state expires.
        await redis.set(state_key(state), orjson.dumps(value).decode(), ex=ttl, nx=True)
        raise
    account = LinkedAccount(
        str(identity["username"]), None if identity.get("id") is None else str(identity["id"])
    )
    await sync_queries.save_discogs_link(
        conn,
        owner,
        access_token_ciphertext=box.encrypt(token),
        access_secret_ciphertext=box.encrypt(token_secret),
        username=account.username,
        provider_user_id=account.user_id,
    )
    return owner, account
