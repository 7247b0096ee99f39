"""Accounts: register, login, me, logout (design §6)."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request, status

from api.dependencies import ClaimsDep, PgPoolDep, RedisDep, SettingsDep, revoked_key
from api.errors import ApiError, error_responses
from api.models import LoginRequest, LogoutResponse, RegisterRequest, TokenResponse, UserResponse
from api.queries import user_queries
from api.rate_limit import client_address, enforce_rate_limit
from api.services.auth import hash_password_async, issue_token, verify_password_async
from common.logging import get_logger

log = get_logger(__name__)

router = APIRouter(prefix="/api/auth", tags=["auth"], responses=error_responses(422, 503))


def _user_response(row: user_queries.UserRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "email": row.email,
        "is_active": row.is_active,
        "is_admin": row.is_admin,
        "created_at": row.created_at,
    }


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserResponse,
    summary="Create an account",
    responses=error_responses(409, 429),
)
async def register(
    body: RegisterRequest, request: Request, settings: SettingsDep, pool: PgPoolDep, redis_client: RedisDep
) -> dict[str, Any]:
    address = client_address(request, settings.trust_forwarded_for)
    await enforce_rate_limit(
        redis_client, "register", address, settings.register_rate_limit, settings.rate_limit_window_s
    )
    hashed = await hash_password_async(body.password)
    try:
        async with pool.connection() as conn:
            row = await user_queries.create_user(conn, body.email, hashed)
    except user_queries.DuplicateEmailError as exc:
        raise ApiError(409, "email_already_registered", "Email already registered") from exc
    log.info("user_registered", user_id=str(row.id))
    return _user_response(row)


@router.post(
    "/login",
    response_model=TokenResponse,
    summary="Exchange email and password for a bearer token",
    responses=error_responses(401, 429),
)
async def login(
    body: LoginRequest, request: Request, settings: SettingsDep, pool: PgPoolDep, redis_client: RedisDep
) -> dict[str, Any]:
    address = client_address(request, settings.trust_forwarded_for)
    await enforce_rate_limit(
        redis_client, "login", address, settings.login_rate_limit, settings.rate_limit_window_s
    )
    async with pool.connection() as conn:
        row = await user_queries.get_user_by_email(conn, body.email)
    # Always run one hash verification so timing does not reveal whether the email exists.
    ok, needs_rehash = await verify_password_async(row.hashed_password if row else None, body.password)
    if row is None or not ok or not row.is_active:
        raise ApiError(
            401, "invalid_credentials", "Incorrect email or password", headers={"WWW-Authenticate": "Bearer"}
        )
    if needs_rehash:
        new_hash = await hash_password_async(body.password)
        async with pool.connection() as conn:
            await user_queries.update_password_hash(conn, row.id, new_hash)
    token, _ = issue_token(
        settings.jwt_secret_key.get_secret_value(), str(row.id), row.email, settings.jwt_expire_minutes
    )
    return {"access_token": token, "token_type": "bearer", "expires_in": settings.jwt_expire_minutes * 60}


@router.get(
    "/me", response_model=UserResponse, summary="The signed-in account", responses=error_responses(401, 404)
)
async def me(claims: ClaimsDep, pool: PgPoolDep) -> dict[str, Any]:
    async with pool.connection() as conn:
        row = await user_queries.get_user_by_id(conn, UUID(claims.sub))
    if row is None:
        raise ApiError(404, "user_not_found", "User not found")
    return _user_response(row)


@router.post(
    "/logout",
    response_model=LogoutResponse,
    summary="Revoke the bearer token until it expires",
    responses=error_responses(401),
)
async def logout(claims: ClaimsDep, redis_client: RedisDep) -> dict[str, Any]:
    remaining = max(1, claims.exp - int(time.time()) + 5)
    await redis_client.set(revoked_key(claims.jti), "1", ex=remaining)
    return {"logged_out": True}
