"""PostgreSQL queries for accounts and app configuration. Each takes an open connection (rows as
dicts) and returns typed rows; none imports FastAPI."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.errors import UniqueViolation

from common.crypto import SecretBox, SecretBoxError
from common.logging import get_logger

log = get_logger(__name__)

Conn = AsyncConnection[dict[str, Any]]

# The app configuration keys the api knows; the secret ones are encrypted at rest.
CONFIG_KEYS: Final = ("discogs_consumer_key", "discogs_consumer_secret", "discogs_user_agent")
SECRET_CONFIG_KEYS: Final = frozenset({"discogs_consumer_secret"})


class DuplicateEmailError(Exception):
    """An account with this email already exists."""


@dataclass(frozen=True)
class UserRow:
    id: UUID
    email: str
    hashed_password: str
    is_active: bool
    is_admin: bool
    created_at: datetime


_USER_COLUMNS = "id, email, hashed_password, is_active, is_admin, created_at"


def _user(row: dict[str, Any] | None) -> UserRow | None:
    return UserRow(**row) if row else None


async def create_user(conn: Conn, email: str, hashed_password: str, is_admin: bool = False) -> UserRow:
    try:
        cur = await conn.execute(
            "INSERT INTO users (email, hashed_password, is_admin) VALUES (%s, %s, %s) "
            f"RETURNING {_USER_COLUMNS}",
            (email, hashed_password, is_admin),
        )
    except UniqueViolation as exc:
        raise DuplicateEmailError(email) from exc
    row = await cur.fetchone()
    user = _user(row)
    if user is None:  # pragma: no cover - INSERT ... RETURNING always returns the row
        raise RuntimeError("insert returned no row")
    return user


async def get_user_by_email(conn: Conn, email: str) -> UserRow | None:
    cur = await conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE lower(email) = lower(%s)", (email,))
    return _user(await cur.fetchone())


async def get_user_by_id(conn: Conn, user_id: UUID) -> UserRow | None:
    cur = await conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = %s", (user_id,))
    return _user(await cur.fetchone())


async def update_password_hash(conn: Conn, user_id: UUID, hashed_password: str) -> None:
    await conn.execute(
        "UPDATE users SET hashed_password = %s, updated_at = now() WHERE id = %s", (hashed_password, user_id)
    )


async def set_admin(conn: Conn, email: str, is_admin: bool) -> bool:
    cur = await conn.execute(
        "UPDATE users SET is_admin = %s, updated_at = now() WHERE lower(email) = lower(%s)", (is_admin, email)
    )
    return cur.rowcount > 0


# --- app configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigRow:
    key: str
    value: str  # plaintext (decrypted)
    is_secret: bool
    updated_at: datetime


async def list_app_config(conn: Conn, box: SecretBox) -> dict[str, ConfigRow]:
    """Every stored config row, secrets decrypted. A secret that no key can open is skipped."""
    cur = await conn.execute("SELECT key, value, is_secret, updated_at FROM app_config ORDER BY key")
    out: dict[str, ConfigRow] = {}
    for row in await cur.fetchall():
        value = row["value"]
        if row["is_secret"]:
            try:
                value = box.decrypt(value)
            except SecretBoxError:
                log.error("app_config_undecryptable", key=row["key"])
                continue
        out[row["key"]] = ConfigRow(row["key"], value, row["is_secret"], row["updated_at"])
    return out


async def get_app_config(conn: Conn, box: SecretBox) -> dict[str, str]:
    """{key: plaintext value} of every stored config row (secrets decrypted)."""
    return {key: row.value for key, row in (await list_app_config(conn, box)).items()}


async def set_app_config(conn: Conn, box: SecretBox, key: str, value: str) -> None:
    """Upsert one config value; keys in SECRET_CONFIG_KEYS are stored encrypted."""
    if key not in CONFIG_KEYS:
        raise ValueError(f"unknown config key {key!r}; valid: {', '.join(CONFIG_KEYS)}")
    is_secret = key in SECRET_CONFIG_KEYS
    stored = box.encrypt(value) if is_secret else value
    await conn.execute(
        """
        INSERT INTO app_config (key, value, is_secret, updated_at) VALUES (%s, %s, %s, now())
        ON CONFLICT (key) DO UPDATE
            SET value = EXCLUDED.value, is_secret = EXCLUDED.is_secret, updated_at = now()
        """,
        (key, stored, is_secret),
    )


def mask_secret(value: str) -> str:
    """First and last two characters kept, the rest starred (4 characters or fewer: all starred)."""
    if len(value) <= 4:
        return "*" * 4
    return value[:2] + "*" * (len(value) - 4) + value[-2:]
