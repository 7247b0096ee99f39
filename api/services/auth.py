"""Password hashing (argon2id) and access tokens (JWT HS256), implemented once for the whole api."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

JWT_ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("sub", "email", "iat", "exp", "jti")
LEGACY_PBKDF2_ITERATIONS = 100_000

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile
# A valid hash to verify against when the email is unknown, so timing does not reveal accounts.
_DUMMY_HASH = _hasher.hash("not-a-real-password-only-for-timing")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _verify_legacy(stored: str, password: str) -> bool:
    """The reference system's `salthex:keyhex` PBKDF2-SHA256 format (rehashed on next login)."""
    salt_hex, sep, key_hex = stored.partition(":")
    if not sep:
        return False
    try:
        salt, key = bytes.fromhex(salt_hex), bytes.fromhex(key_hex)
    except ValueError:
        return False
    derived = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, LEGACY_PBKDF2_ITERATIONS, len(key) or 32)
    return bool(key) and hmac.compare_digest(derived, key)


def verify_password(stored: str | None, password: str) -> tuple[bool, bool]:
    """(matches, needs_rehash). A malformed or missing stored value never raises."""
    if not stored:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_DUMMY_HASH, password)
        return False, False
    if not stored.startswith("$argon2"):
        return _verify_legacy(stored, password), True
    try:
        _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False, False
    return True, _hasher.check_needs_rehash(stored)


async def hash_password_async(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)


async def verify_password_async(stored: str | None, password: str) -> tuple[bool, bool]:
    return await asyncio.to_thread(verify_password, stored, password)


@dataclass(frozen=True)
class TokenClaims:
    sub: str
    email: str
    iat: int
    exp: int
    jti: str


def issue_token(secret: str, user_id: str, email: str, expire_minutes: int) -> tuple[str, TokenClaims]:
    now = int(time.time())
    claims = TokenClaims(
        sub=user_id, email=email, iat=now, exp=now + expire_minutes * 60, jti=uuid.uuid4().hex
    )
    token = jwt.encode(
        {"sub": claims.sub, "email": claims.email, "iat": claims.iat, "exp": claims.exp, "jti": claims.jti},
        secret,
        algorithm=JWT_ALGORITHM,
    )
    return token, claims


class InvalidTokenError(ValueError):
    """The token is malformed, tampered, expired, uses another algorithm or lacks a claim."""


def decode_token(secret: str, token: str) -> TokenClaims:
    """Verify signature (HS256 only), expiry and the required claims."""
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],
            options={"require": list(REQUIRED_CLAIMS), "verify_exp": True, "verify_iat": True},
            leeway=5,
        )
    except jwt.PyJWTError as exc:
        raise InvalidTokenError(str(exc)) from exc
    except (ValueError, TypeError, UnicodeError) as exc:  # defensive: never a 500 from a bad token
        raise InvalidTokenError(str(exc)) from exc
    try:
        uuid.UUID(str(payload["sub"]))
        return TokenClaims(
            sub=str(payload["sub"]),
            email=str(payload["email"]),
            iat=int(payload["iat"]),
            exp=int(payload["exp"]),
            jti=str(payload["jti"]),
        )
    except (ValueError, TypeError) as exc:
        raise InvalidTokenError("malformed claims") from exc
