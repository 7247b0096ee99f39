"""One sync of one user's Discogs collection and wantlist (reference/api.md §6, with the §8 fixes).

1. Load the user's Discogs link and the app's consumer key (both decrypted); missing -> failed
   with a message saying what to do.
2. Read the whole collection (folder 0, "All") and the whole wantlist, 100 per page, sorted by
   date added (oldest first, so items added meanwhile land on the last page), deduplicated by
   instance id (collection) or release id (wants). Every page must report the same
   `pagination.items` and the items read must add up to it (a removal during the read shifts
   later items to earlier pages, so one would be missed); a list that changed while it was read
   is read once more, then the sync fails rather than deleting things based on a partial read.
3. Only when both lists are complete: write Neo4j and PostgreSQL (upsert what is there, remove
   what is gone). Nothing is written when Discogs fails, so a failed sync never loses data.

Every Discogs error ends the sync as `failed` with a readable message (never a silent "completed").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from neo4j import AsyncDriver
from neo4j.exceptions import Neo4jError
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from common.crypto import SecretBox, SecretBoxError
from common.discogs_client import (
    DiscogsAuthError,
    DiscogsClient,
    DiscogsError,
    DiscogsNotFoundError,
    RateLimiter,
    RetryPolicy,
    user_path,
)
from common.logging import get_logger
from curator import graph, store
from curator.settings import CuratorSettings

log = get_logger(__name__)

PgPool = AsyncConnectionPool[AsyncConnection[dict[str, Any]]]
SORT = (("sort", "added"), ("sort_order", "asc"))
READ_ATTEMPTS = 2


class SyncFailedError(Exception):
    """The sync cannot complete; the message is shown to the user as the sync's error."""


@dataclass
class SyncProgress:
    pages_fetched: int = 0
    collection_count: int = 0
    wantlist_count: int = 0
    removed: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Listing:
    items: list[dict[str, Any]]
    expected: int
    stable: bool  # every page reported the same total (nothing was added or removed meanwhile)


class Syncer:
    """Runs syncs; one instance per worker process, sharing one Discogs rate limiter."""

    def __init__(self, settings: CuratorSettings, pool: PgPool, driver: AsyncDriver, box: SecretBox) -> None:
        self.settings = settings
        self.pool = pool
        self.driver = driver
        self.box = box
        self.limiter = RateLimiter(
            settings.discogs_rate_limit,
            settings.discogs_rate_window_s,
            margin_s=settings.discogs_rate_margin_s,
        )
        self.retry = RetryPolicy(
            max_429_retries=settings.discogs_max_429_retries,
            retry_after_s=settings.discogs_retry_after_s,
            max_error_retries=settings.discogs_max_error_retries,
            error_backoff_s=settings.discogs_error_backoff_s,
        )

    async def run(self, sync_id: UUID, user_id: UUID, progress: SyncProgress) -> None:
        """Fetch and write everything; raises SyncFailedError with a readable message."""
        async with self.pool.connection() as conn:
            try:
                link = await store.discogs_link(conn, self.box, user_id)
                config = await store.app_config(conn, self.box)
            except SecretBoxError as exc:
                raise SyncFailedError(
                    "The stored Discogs credentials cannot be decrypted (was ENCRYPTION_KEYS changed?); "
                    "reconnect Discogs or ask an administrator to set the consumer key again"
                ) from exc
        if link is None:
            raise SyncFailedError("Discogs is not connected for this account; connect Discogs first")
        key, secret = config.get(store.CONSUMER_KEY), config.get(store.CONSUMER_SECRET)
        if not key or not secret:
            raise SyncFailedError(
                "The Discogs consumer key and secret are not configured; ask an administrator to set them"
            )
        client = DiscogsClient(
            consumer_key=key,
            consumer_secret=secret,
            api_url=self.settings.discogs_api_url,
            user_agent=config.get(store.USER_AGENT) or self.settings.discogs_user_agent,
            signature_method=self.settings.discogs_signature_method,
            limiter=self.limiter,
            retry=self.retry,
            timeout_s=self.settings.discogs_timeout_s,
        )
        try:
            async with client:
                collection = await self._read(client, link, "collection", progress)
                wants = await self._read(client, link, "wantlist", progress)
        except DiscogsAuthError as exc:
            raise SyncFailedError(
                f"Discogs refused the stored authorisation ({exc}); reconnect your Discogs account"
            ) from exc
        except DiscogsNotFoundError as exc:
            raise SyncFailedError(f"Discogs does not know the user {link.username!r} ({exc})") from exc
        except DiscogsError as exc:
            raise SyncFailedError(str(exc)) from exc
        log.info(
            "sync_fetched",
            sync_id=str(sync_id),
            collection=len(collection),
            wants=len(wants),
            pages=progress.pages_fetched,
            discogs_requests=client.requests_made,
        )
        await self._write(sync_id, user_id, link.username, collection, wants, progress)

    async def _read(
        self,
        client: DiscogsClient,
        link: store.DiscogsLink,
        which: Literal["collection", "wantlist"],
        progress: SyncProgress,
    ) -> list[dict[str, Any]]:
        for attempt in range(1, READ_ATTEMPTS + 1):
            listing = await self._read_once(client, link, which, progress)
            if listing.stable and len(listing.items) == listing.expected:
                return listing.items
            log.warning(
                "sync_list_changed",
                which=which,
                expected=listing.expected,
                got=len(listing.items),
                attempt=attempt,
            )
        raise SyncFailedError(
            f"Your Discogs {which} changed while it was being read (Discogs reports "
            f"{listing.expected} items, {len(listing.items)} were read); run the sync again"
        )

    async def _read_once(
        self,
        client: DiscogsClient,
        link: store.DiscogsLink,
        which: Literal["collection", "wantlist"],
        progress: SyncProgress,
    ) -> _Listing:
        if which == "collection":
            path = user_path(link.username, "collection", "folders", "0", "releases")
            items_key, id_key = "releases", "instance_id"
        else:
            path = user_path(link.username, "wants")
            items_key, id_key = "wants", "id"
        seen: dict[int, dict[str, Any]] = {}
        total = skipped = 0
        totals: set[int] = set()
        async for page in client.pages(
            path,
            items_key,
            token=link.token,
            token_secret=link.token_secret,
            per_page=self.settings.discogs_per_page,
            extra_query=SORT,
        ):
            progress.pages_fetched += 1
            total = page.total_items  # the last page's count is the newest
            totals.add(total)
            for item in page.items:
                ident = _int(item.get(id_key))
                if ident is None or _release_id(item) is None:
                    log.warning("sync_item_skipped", which=which, reason=f"no {id_key} or release id")
                    skipped += 1
                    continue
                seen[ident] = item
        return _Listing(list(seen.values()), total - skipped, len(totals) <= 1)

    async def _write(
        self,
        sync_id: UUID,
        user_id: UUID,
        username: str,
        collection: list[dict[str, Any]],
        wants: list[dict[str, Any]],
        progress: SyncProgress,
    ) -> None:
        now = datetime.now(UTC).isoformat()
        collected = [_graph_item(i, collection=True) for i in collection]
        wanted = [_graph_item(i, collection=False) for i in wants]
        common = {"user_id": str(user_id), "username": username, "sync_id": str(sync_id), "synced_at": now}
        database, timeout = self.settings.neo4j_database, self.settings.write_timeout_s
        started = time.monotonic()
        try:
            progress.removed["neo4j_collected"] = await graph.write_list(
                self.driver, "COLLECTED", items=collected, database=database, timeout=timeout, **common
            )
            progress.removed["neo4j_wants"] = await graph.write_list(
                self.driver, "WANTS", items=wanted, database=database, timeout=timeout, **common
            )
        except Neo4jError as exc:
            raise SyncFailedError(f"Writing the graph failed ({exc.code}); try the sync again") from exc
        log.info("sync_graph_written", sync_id=str(sync_id), seconds=round(time.monotonic() - started, 2))
        started = time.monotonic()
        async with self.pool.connection() as conn, conn.transaction():
            # Same bound as the graph write: a lock held elsewhere fails the sync, never hangs it.
            limit = f"{int(timeout * 1000)}ms"
            await conn.execute("SELECT set_config('statement_timeout', %s, true)", (limit,))
            progress.removed["pg_collection"] = await store.replace_collection(
                conn, user_id, [_collection_row(i) for i in collection]
            )
            progress.removed["pg_wantlist"] = await store.replace_wantlist(
                conn, user_id, [_want_row(i) for i in wants]
            )
        log.info("sync_tables_written", sync_id=str(sync_id), seconds=round(time.monotonic() - started, 2))
        progress.collection_count = len(collection)
        progress.wantlist_count = len(wants)


# ---- mapping Discogs items


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _release_id(item: dict[str, Any]) -> int | None:
    """The release id: top-level `id`, else `basic_information.id` (both are the release id)."""
    info = item.get("basic_information") or {}
    return _int(item.get("id")) or _int(info.get("id") if isinstance(info, dict) else None)


def _info(item: dict[str, Any]) -> dict[str, Any]:
    info = item.get("basic_information")
    return info if isinstance(info, dict) else {}


def _str(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text[:limit] or None


def _first_name(values: Any, limit: int) -> str | None:
    if isinstance(values, list) and values and isinstance(values[0], dict):
        return _str(values[0].get("name"), limit)
    return None


def _year(info: dict[str, Any]) -> int | None:
    year = _int(info.get("year"))
    return year if year else None  # Discogs uses 0 for "unknown"


def _rating(item: dict[str, Any]) -> int:
    rating = _int(item.get("rating"))
    return rating if rating is not None and 0 <= rating <= 5 else 0


def _date(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _entities(values: Any, with_catno: bool = False) -> list[dict[str, Any]]:
    out = []
    for value in values if isinstance(values, list) else []:
        if isinstance(value, dict) and _int(value.get("id")) and value.get("name"):
            entity = {"id": _int(value["id"]), "name": str(value["name"])}
            if with_catno:
                entity["catno"] = value.get("catno")
            out.append(entity)
    return out


def _names(values: Any) -> list[str]:
    return sorted({str(v) for v in values if isinstance(v, str) and v}) if isinstance(values, list) else []


def _graph_item(item: dict[str, Any], *, collection: bool) -> dict[str, Any]:
    info = _info(item)
    out: dict[str, Any] = {
        "release_id": _release_id(item),
        "title": _str(info.get("title"), 1000),
        "year": _year(info),
        "artists": _entities(info.get("artists")),
        "labels": _entities(info.get("labels"), with_catno=True),
        "genres": _names(info.get("genres")),
        "styles": _names(info.get("styles")),
        "rating": _rating(item),
        "date_added": item.get("date_added") if isinstance(item.get("date_added"), str) else None,
    }
    if collection:
        out["instance_id"] = _int(item.get("instance_id"))
        out["folder_id"] = _int(item.get("folder_id"))
    else:
        out["notes"] = item.get("notes") if isinstance(item.get("notes"), str) else None
    return out


def _collection_row(item: dict[str, Any]) -> store.CollectionRow:
    info = _info(item)
    release_id, instance_id = _release_id(item), _int(item.get("instance_id"))
    assert release_id is not None and instance_id is not None  # filtered while reading
    return store.CollectionRow(
        release_id=release_id,
        instance_id=instance_id,
        folder_id=_int(item.get("folder_id")),
        title=_str(info.get("title"), 500),
        artist=_first_name(info.get("artists"), 500),
        year=_year(info),
        format=_first_name(info.get("formats"), 255),
        label=_first_name(info.get("labels"), 255),
        rating=_rating(item),
        date_added=_date(item.get("date_added")),
    )


def _want_row(item: dict[str, Any]) -> store.WantRow:
    info = _info(item)
    release_id = _release_id(item)
    assert release_id is not None
    notes = item.get("notes")
    return store.WantRow(
        release_id=release_id,
        title=_str(info.get("title"), 500),
        artist=_first_name(info.get("artists"), 500),
        year=_year(info),
        format=_first_name(info.get("formats"), 255),
        rating=_rating(item),
        notes=notes if isinstance(notes, str) else None,
        date_added=_date(item.get("date_added")),
    )
