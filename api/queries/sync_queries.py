"""PostgreSQL (and one Neo4j) queries for the Discogs link and sync history. Each takes an open
connection / driver and returns typed rows; none imports FastAPI."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from neo4j import AsyncDriver
from psycopg import AsyncConnection
from psycopg.errors import UniqueViolation

Conn = AsyncConnection[dict[str, Any]]

PROVIDER: Final = "discogs"
SYNC_HISTORY_LIMIT: Final = 10


class ActiveSyncExistsError(Exception):
    """The user already has a queued or running sync (the partial unique index said so)."""


# ---- Discogs link


@dataclass(frozen=True)
class LinkRow:
    access_token: str  # ciphertext
    access_secret: str  # ciphertext
    username: str | None
    provider_user_id: str | None
    connected_at: datetime


async def get_discogs_link(conn: Conn, user_id: UUID) -> LinkRow | None:
    cur = await conn.execute(
        """SELECT access_token, access_secret, provider_username, provider_user_id, updated_at
             FROM oauth_tokens WHERE user_id = %s AND provider = %s""",
        (user_id, PROVIDER),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return LinkRow(
        row["access_token"],
        row["access_secret"],
        row["provider_username"],
        row["provider_user_id"],
        row["updated_at"],
    )


async def save_discogs_link(
    conn: Conn,
    user_id: UUID,
    *,
    access_token_ciphertext: str,
    access_secret_ciphertext: str,
    username: str,
    provider_user_id: str | None,
) -> datetime:
    cur = await conn.execute(
        """
        INSERT INTO oauth_tokens
            (user_id, provider, access_token, access_secret, provider_username, provider_user_id)
        VALUES (%s, %s, %s, %s, %s, %s)
        ON CONFLICT (user_id, provider) DO UPDATE SET
            access_token = EXCLUDED.access_token, access_secret = EXCLUDED.access_secret,
            provider_username = EXCLUDED.provider_username,
            provider_user_id = EXCLUDED.provider_user_id, updated_at = now()
        RETURNING updated_at
        """,
        (user_id, PROVIDER, access_token_ciphertext, access_secret_ciphertext, username, provider_user_id),
    )
    row = await cur.fetchone()
    assert row is not None
    updated: datetime = row["updated_at"]
    return updated


async def delete_discogs_link(conn: Conn, user_id: UUID) -> bool:
    cur = await conn.execute(
        "DELETE FROM oauth_tokens WHERE user_id = %s AND provider = %s", (user_id, PROVIDER)
    )
    return cur.rowcount > 0


async def purge_synced_rows(conn: Conn, user_id: UUID) -> None:
    """Remove the PostgreSQL mirror of the user's collection and wantlist."""
    await conn.execute("DELETE FROM user_collections WHERE user_id = %s", (user_id,))
    await conn.execute("DELETE FROM user_wantlists WHERE user_id = %s", (user_id,))


async def purge_synced_graph(driver: AsyncDriver, user_id: UUID, database: str | None = None) -> None:
    """Remove the user's COLLECTED / WANTS relationships (the User node stays)."""
    await driver.execute_query(
        "MATCH (:User {id: $user_id})-[x:COLLECTED|WANTS]->() DELETE x",
        user_id=str(user_id),
        database_=database,
    )


# ---- sync history


@dataclass(frozen=True)
class SyncRow:
    id: UUID
    user_id: UUID
    sync_type: str
    status: str
    collection_count: int | None
    wantlist_count: int | None
    items_synced: int | None
    pages_fetched: int | None
    error_message: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


_SYNC_COLUMNS = (
    "id, user_id, sync_type, status, collection_count, wantlist_count, items_synced, "
    "pages_fetched, error_message, created_at, started_at, completed_at"
)


async def insert_queued_sync(conn: Conn, user_id: UUID) -> SyncRow:
    """A new `queued` full sync; ActiveSyncExistsError when one is already queued or running
    (enforced by the partial unique index, so it holds across any number of api replicas)."""
    try:
        cur = await conn.execute(
            f"INSERT INTO sync_history (user_id, sync_type, status) VALUES (%s, 'full', 'queued') "
            f"RETURNING {_SYNC_COLUMNS}",
            (user_id,),
        )
    except UniqueViolation as exc:
        raise ActiveSyncExistsError(str(user_id)) from exc
    row = await cur.fetchone()
    assert row is not None
    return SyncRow(**row)


async def get_active_sync(conn: Conn, user_id: UUID) -> SyncRow | None:
    cur = await conn.execute(
        f"SELECT {_SYNC_COLUMNS} FROM sync_history "
        "WHERE user_id = %s AND status IN ('queued', 'running') ORDER BY created_at DESC LIMIT 1",
        (user_id,),
    )
    row = await cur.fetchone()
    return SyncRow(**row) if row else None


async def list_syncs(conn: Conn, user_id: UUID, limit: int = SYNC_HISTORY_LIMIT) -> list[SyncRow]:
    cur = await conn.execute(
        f"SELECT {_SYNC_COLUMNS} FROM sync_history WHERE user_id = %s ORDER BY created_at DESC, id LIMIT %s",
        (user_id, limit),
    )
    return [SyncRow(**row) for row in await cur.fetchall()]


async def get_sync(conn: Conn, user_id: UUID, sync_id: UUID) -> SyncRow | None:
    cur = await conn.execute(
        f"SELECT {_SYNC_COLUMNS} FROM sync_history WHERE id = %s AND user_id = %s",
        (sync_id, user_id),
    )
    row = await cur.fetchone()
    return SyncRow(**row) if row else None


async def fail_queued_sync(conn: Conn, sync_id: UUID, error: str) -> None:
    await conn.execute(
        """UPDATE sync_history SET status = 'failed', completed_at = now(), error_message = %s
            WHERE id = %s AND status = 'queued'""",
        (error, sync_id),
    )
