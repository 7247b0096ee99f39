"""PostgreSQL side of a sync: the history row's life cycle, the user's Discogs link and the app's
consumer key, and the `user_collections` / `user_wantlists` mirror.

Every state change of a history row is a conditional UPDATE (`... AND status = 'running'`), so a
worker that lost its row (the reaper re-queued or failed it) finds out instead of overwriting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from psycopg import AsyncConnection

from common.crypto import SecretBox

Conn = AsyncConnection[dict[str, Any]]

CONSUMER_KEY: Final = "discogs_consumer_key"
CONSUMER_SECRET: Final = "discogs_consumer_secret"  # noqa: S105 - a config key name
USER_AGENT: Final = "discogs_user_agent"


@dataclass(frozen=True)
class ClaimedSync:
    sync_id: UUID
    user_id: UUID
    attempts: int


@dataclass(frozen=True)
class DiscogsLink:
    username: str
    token: str
    token_secret: str


@dataclass(frozen=True)
class CollectionRow:
    release_id: int
    instance_id: int
    folder_id: int | None
    title: str | None
    artist: str | None
    year: int | None
    format: str | None
    label: str | None
    rating: int
    date_added: datetime | None


@dataclass(frozen=True)
class WantRow:
    release_id: int
    title: str | None
    artist: str | None
    year: int | None
    format: str | None
    rating: int
    notes: str | None
    date_added: datetime | None


# ---- history rows


async def claim_sync(conn: Conn, sync_id: UUID, stale_after_s: float) -> ClaimedSync | None:
    """queued -> running (or take over a running row whose worker went silent); None if neither."""
    cur = await conn.execute(
        """
        UPDATE sync_history
           SET status = 'running', started_at = now(), heartbeat_at = now(),
               attempts = attempts + 1, error_message = NULL
         WHERE id = %s
           AND (status = 'queued'
                OR (status = 'running'
                    AND coalesce(heartbeat_at, started_at, created_at)
                        < now() - make_interval(secs => %s)))
        RETURNING id, user_id, attempts
        """,
        (sync_id, stale_after_s),
    )
    row = await cur.fetchone()
    return ClaimedSync(row["id"], row["user_id"], row["attempts"]) if row else None


async def sync_status(conn: Conn, sync_id: UUID) -> str | None:
    cur = await conn.execute("SELECT status FROM sync_history WHERE id = %s", (sync_id,))
    row = await cur.fetchone()
    return None if row is None else str(row["status"])


async def heartbeat(conn: Conn, sync_id: UUID, pages_fetched: int) -> bool:
    """Refresh the heartbeat; False when the row is no longer ours (no longer running)."""
    cur = await conn.execute(
        """UPDATE sync_history SET heartbeat_at = now(), pages_fetched = %s
            WHERE id = %s AND status = 'running'""",
        (pages_fetched, sync_id),
    )
    return cur.rowcount == 1


async def complete_sync(
    conn: Conn, sync_id: UUID, collection_count: int, wantlist_count: int, pages_fetched: int
) -> bool:
    cur = await conn.execute(
        """
        UPDATE sync_history
           SET status = 'completed', completed_at = now(), heartbeat_at = now(),
               collection_count = %s, wantlist_count = %s, items_synced = %s,
               pages_fetched = %s, error_message = NULL
         WHERE id = %s AND status = 'running'
        """,
        (collection_count, wantlist_count, collection_count + wantlist_count, pages_fetched, sync_id),
    )
    return cur.rowcount == 1


async def fail_sync(
    conn: Conn,
    sync_id: UUID,
    error: str,
    *,
    pages_fetched: int | None = None,
    from_statuses: tuple[str, ...] = ("running",),
) -> bool:
    cur = await conn.execute(
        """
        UPDATE sync_history
           SET status = 'failed', completed_at = now(), error_message = %s,
               pages_fetched = coalesce(%s, pages_fetched)
         WHERE id = %s AND status = ANY(%s)
        """,
        (error[:2000], pages_fetched, sync_id, list(from_statuses)),
    )
    return cur.rowcount == 1


async def requeue_sync(conn: Conn, sync_id: UUID) -> bool:
    """running -> queued (a worker shutting down hands the sync back)."""
    cur = await conn.execute(
        "UPDATE sync_history SET status = 'queued', heartbeat_at = NULL WHERE id = %s AND status = 'running'",
        (sync_id,),
    )
    return cur.rowcount == 1


@dataclass(frozen=True)
class ReapResult:
    requeued: list[tuple[UUID, UUID]]  # (sync_id, user_id) to publish again
    failed: list[UUID]


async def reap_stale(
    conn: Conn, stale_after_s: float, max_attempts: int, queued_timeout_s: float
) -> ReapResult:
    """Rows whose worker went silent: re-queue them (attempts left) or fail them; fail rows that
    stayed queued far too long. Runs at start-up and periodically, on any number of workers."""
    cur = await conn.execute(
        """
        UPDATE sync_history
           SET status = 'queued', heartbeat_at = NULL
         WHERE status = 'running' AND attempts < %s
           AND coalesce(heartbeat_at, started_at, created_at) < now() - make_interval(secs => %s)
        RETURNING id, user_id
        """,
        (max_attempts, stale_after_s),
    )
    requeued = [(r["id"], r["user_id"]) for r in await cur.fetchall()]
    cur = await conn.execute(
        """
        UPDATE sync_history
           SET status = 'failed', completed_at = now(),
               error_message = 'The sync was interrupted ' || attempts
                   || ' time(s) (the worker stopped responding); start a new sync'
         WHERE status = 'running' AND attempts >= %s
           AND coalesce(heartbeat_at, started_at, created_at) < now() - make_interval(secs => %s)
        RETURNING id
        """,
        (max_attempts, stale_after_s),
    )
    failed = [r["id"] for r in await cur.fetchall()]
    cur = await conn.execute(
        """
        UPDATE sync_history
           SET status = 'failed', completed_at = now(),
               error_message = 'The sync was never picked up by a worker; start a new sync'
         WHERE status = 'queued' AND created_at < now() - make_interval(secs => %s)
        RETURNING id
        """,
        (queued_timeout_s,),
    )
    failed += [r["id"] for r in await cur.fetchall()]
    return ReapResult(requeued, failed)


# ---- credentials


async def discogs_link(conn: Conn, box: SecretBox, user_id: UUID) -> DiscogsLink | None:
    cur = await conn.execute(
        """SELECT access_token, access_secret, provider_username FROM oauth_tokens
            WHERE user_id = %s AND provider = 'discogs'""",
        (user_id,),
    )
    row = await cur.fetchone()
    if row is None or not row["provider_username"]:
        return None
    return DiscogsLink(
        row["provider_username"], box.decrypt(row["access_token"]), box.decrypt(row["access_secret"])
    )


async def app_config(conn: Conn, box: SecretBox) -> dict[str, str]:
    """The Discogs settings in `app_config`, secret ones decrypted."""
    cur = await conn.execute(
        "SELECT key, value, is_secret FROM app_config WHERE key = ANY(%s)",
        ([CONSUMER_KEY, CONSUMER_SECRET, USER_AGENT],),
    )
    out: dict[str, str] = {}
    for row in await cur.fetchall():
        out[row["key"]] = box.decrypt(row["value"]) if row["is_secret"] else row["value"]
    return out


# ---- the PostgreSQL mirror


async def replace_collection(conn: Conn, user_id: UUID, rows: list[CollectionRow]) -> int:
    """Upsert every instance and delete the ones the user no longer has; returns rows deleted.
    Call inside a transaction."""
    async with conn.cursor() as cur:
        await cur.executemany(
            """
            INSERT INTO user_collections
                (user_id, release_id, instance_id, folder_id, title, artist, year, format, label,
                 rating, date_added, updated_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())
            ON CONFLICT (user_id, instance_id) DO UPDATE SET
                release_id = EXCLUDED.release_id, folder_id = EXCLUDED.folder_id,
                title = EXCLUDED.title, artist = EXCLUDED.artist, year = EXCLUDED.year,
                format = EXCLUDED.format, label = EXCLUDED.label, rating = EXCLUDED.rating,
                date_added = EXCLUDED.date_added, updated_at = now()
            """,
            [
                (
                    user_id,
                    r.release_id,
                    r.instance_id,
                    r.folder_id,
                    r.title,
                    r.artist,
                    r.year,
                    r.format,
                    r.label,
                    r.rating,
                    r.date_added,
                )
                for r in rows
            ],
        )
        await cur.execute(
            "DELETE FROM user_collections WHERE user_id = %s AND NOT (instance_id = ANY(%s))",
            (user_id, [r.instance_id for r in rows]),
        )
        return cur.rowcount


async def replace_wantlist(conn: Conn, user_id: UUID, rows: list[WantRow]) -> int:
    """Upsert every want and delete the ones the user no longer has; returns rows deleted."""
    async with conn.cursor() as cur:
        await cur.executemany(
            """
            INSERT INTO user_wantlists
                (user_id, release_id, title, artist, year, format, rating, notes, date_added, updated_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now())
            ON CONFLICT (user_id, release_id) DO UPDATE SET
                title = EXCLUDED.title, artist = EXCLUDED.artist, year = EXCLUDED.year,
                format = EXCLUDED.format, rating = EXCLUDED.rating, notes = EXCLUDED.notes,
                date_added = EXCLUDED.date_added, updated_at = now()
            """,
            [
                (user_id, r.release_id, r.title, r.artist, r.year, r.format, r.rating, r.notes, r.date_added)
                for r in rows
            ],
        )
        await cur.execute(
            "DELETE FROM user_wantlists WHERE user_id = %s AND NOT (release_id = ANY(%s))",
            (user_id, [r.release_id for r in rows]),
        )
        return cur.rowcount
