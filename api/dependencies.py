"""FastAPI dependencies: settings, store clients (from app.state, created in the lifespan), the
caller's identity from a bearer JWT, and the secrets box. Tests override any of these."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import redis.asyncio as aioredis
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from neo4j import AsyncDriver
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api.errors import ApiError
from api.models import CurrentUser
from api.queries.user_queries import get_user_by_id
from api.services.auth import InvalidTokenError, TokenClaims, decode_token
from api.settings import ApiSettings
from common.crypto import SecretBox

PgPool = AsyncConnectionPool[AsyncConnection[dict[str, Any]]]

_bearer = HTTPBearer(auto_error=False, description="JWT from POST /api/auth/login")
_WWW_AUTH = {"WWW-Authenticate": "Bearer"}


def revoked_key(jti: str) -> str:
    return f"auth:revoked:{jti}"


# Dependencies are `async def` even when they do no I/O: FastAPI runs a plain `def` dependency in
# its thread pool, a thread hop (and GIL hand-over) per dependency per request, which cost more
# than some routes' own work and added latency spikes under load.


def _state(request: Request, name: str) -> Any:
    value = getattr(request.app.state, name, None)
    if value is None:
        raise ApiError(503, "service_unavailable", "Service not ready")
    return value


async def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


async def get_pg_pool(request: Request) -> PgPool:
    pool: PgPool = _state(request, "pg_pool")
    return pool


async def get_redis(request: Request) -> aioredis.Redis:
    client: aioredis.Redis = _state(request, "redis")
    return client


async def get_neo4j(request: Request) -> AsyncDriver:
    driver: AsyncDriver = _state(request, "neo4j")
    return driver


async def get_secret_box(request: Request) -> SecretBox:
    box: SecretBox = _state(request, "secret_box")
    return box


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
PgPoolDep = Annotated[PgPool, Depends(get_pg_pool)]
RedisDep = Annotated[aioredis.Redis, Depends(get_redis)]
Neo4jDep = Annotated[AsyncDriver, Depends(get_neo4j)]
SecretBoxDep = Annotated[SecretBox, Depends(get_secret_box)]
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def get_token_claims(
    credentials: BearerDep, settings: SettingsDep, redis_client: RedisDep
) -> TokenClaims:
    """The verified claims of the bearer token: 401 when missing, invalid, expired or revoked."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, "not_authenticated", "Not authenticated", headers=_WWW_AUTH)
    try:
        claims = decode_token(settings.jwt_secret_key.get_secret_value(), credentials.credentials)
    except InvalidTokenError as exc:
        raise ApiError(401, "invalid_token", "Invalid or expired token", headers=_WWW_AUTH) from exc
    if await redis_client.exists(revoked_key(claims.jti)):
        raise ApiError(401, "token_revoked", "Token has been revoked", headers=_WWW_AUTH)
    return claims


ClaimsDep = Annotated[TokenClaims, Depends(get_token_claims)]


async def _load_user(pool: PgPool, claims: TokenClaims) -> CurrentUser | None:
    async with pool.connection() as conn:
        row = await get_user_by_id(conn, UUID(claims.sub))
    if row is None or not row.is_active:
        return None
    return CurrentUser(id=row.id, email=row.email, is_admin=row.is_admin)


async def get_current_user(claims: ClaimsDep, pool: PgPoolDep) -> CurrentUser:
    """The authenticated, active caller (401 otherwise)."""
    user = await _load_user(pool, claims)
    if user is None:
        raise ApiError(401, "invalid_token", "Account not found or inactive", headers=_WWW_AUTH)
    return user


CurrentUserDep = Annotated[CurrentUser, Depends(get_current_user)]


async def get_optional_user(
    credentials: BearerDep, settings: SettingsDep, redis_client: RedisDep, pool: PgPoolDep
) -> CurrentUser | None:
    """The caller when a valid token is sent; None (anonymous) for a missing or invalid one."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        return None
    try:
        claims = decode_token(settings.jwt_secret_key.get_secret_value(), credentials.credentials)
    except InvalidTokenError:
        return None
    if await redis_client.exists(revoked_key(claims.jti)):
        return None
    return await _load_user(pool, claims)


OptionalUserDep = Annotated[CurrentUser | None, Depends(get_optional_user)]


async def require_admin(user: CurrentUserDep) -> CurrentUser:
    if not user.is_admin:
        raise ApiError(403, "forbidden", "Administrator role required")
    return user


AdminDep = Annotated[CurrentUser, Depends(require_admin)]
