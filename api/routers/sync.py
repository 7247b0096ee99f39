"""Sync trigger and history (reference/api.md §2.5, design §6).

`POST /api/sync` checks the Discogs link and the app's consumer key up front, writes a `queued`
history row and publishes a sync request for the curator worker. One active (queued or running)
sync per user is enforced by a partial unique index, so it holds across any number of api
replicas: a second request gets the active sync back (`already_running`) instead of a new one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from api.dependencies import CurrentUserDep, PgPoolDep, SecretBoxDep
from api.errors import ApiError, error_responses
from api.models_sync import SyncItem, SyncStartedResponse, SyncStatusResponse
from api.queries import sync_queries, user_queries
from api.sync_publisher import SyncPublisherDep, SyncPublisherError
from common.logging import get_logger
from common.messages import SyncRequest

log = get_logger(__name__)

router = APIRouter(prefix="/api/sync", tags=["sync"], responses=error_responses(401, 503))


def _item(row: sync_queries.SyncRow) -> SyncItem:
    return SyncItem(
        sync_id=str(row.id),
        sync_type=row.sync_type,
        status=row.status,  # the CHECK constraint limits the values
        items_synced=row.items_synced,
        collection_count=row.collection_count,
        wantlist_count=row.wantlist_count,
        pages_fetched=row.pages_fetched,
        error=row.error_message,
        created_at=row.created_at,
        started_at=row.started_at,
        completed_at=row.completed_at,
    )


@router.post(
    "",
    status_code=202,
    response_model=SyncStartedResponse,
    summary="Sync the caller's Discogs collection and wantlist (in the background)",
    responses={
        **error_responses(409),
        202: {"description": "`queued` (new) or `already_running` (the active sync's id)"},
    },
)
async def start_sync(
    user: CurrentUserDep, pool: PgPoolDep, box: SecretBoxDep, publisher: SyncPublisherDep
) -> JSONResponse:
    async with pool.connection() as conn:
        if await sync_queries.get_discogs_link(conn, user.id) is None:
            raise ApiError(
                409, "discogs_not_connected", "Discogs is not connected; connect your Discogs account first"
            )
        config = await user_queries.get_app_config(conn, box)
        if not config.get("discogs_consumer_key") or not config.get("discogs_consumer_secret"):
            raise ApiError(
                503,
                "discogs_not_configured",
                "Discogs is not configured: an administrator must set the Discogs consumer key and secret",
            )
        for _ in range(3):  # the active sync may finish between the failed insert and the lookup
            try:
                async with conn.transaction():
                    row = await sync_queries.insert_queued_sync(conn, user.id)
                break
            except sync_queries.ActiveSyncExistsError:
                active = await sync_queries.get_active_sync(conn, user.id)
                if active is not None:
                    body = SyncStartedResponse(sync_id=str(active.id), status="already_running")
                    return JSONResponse(body.model_dump(), status_code=202)
        else:
            raise ApiError(409, "sync_conflict", "Another sync is starting; try again")
    request = SyncRequest(
        sync_id=str(row.id), user_id=str(user.id), requested_at=datetime.now(UTC).isoformat()
    )
    try:
        await publisher.publish(request)
    except SyncPublisherError as exc:
        log.error("sync_publish_failed", sync_id=str(row.id), error=str(exc))
        async with pool.connection() as conn:
            await sync_queries.fail_queued_sync(
                conn, row.id, "The sync could not be queued (message broker unavailable)"
            )
        raise ApiError(503, "queue_unavailable", "The sync could not be queued; try again later") from exc
    log.info("sync_queued", sync_id=str(row.id), user_id=str(user.id))
    return JSONResponse(
        SyncStartedResponse(sync_id=str(row.id), status="queued").model_dump(), status_code=202
    )


@router.get(
    "/status", response_model=SyncStatusResponse, summary="The caller's 10 latest syncs, newest first"
)
async def sync_status(user: CurrentUserDep, pool: PgPoolDep) -> SyncStatusResponse:
    async with pool.connection() as conn:
        rows = await sync_queries.list_syncs(conn, user.id)
    return SyncStatusResponse(syncs=[_item(r) for r in rows])


@router.get(
    "/{sync_id}",
    response_model=SyncItem,
    summary="One of the caller's syncs",
    responses=error_responses(404, 422),
)
async def get_sync(user: CurrentUserDep, pool: PgPoolDep, sync_id: Annotated[UUID, Path()]) -> SyncItem:
    async with pool.connection() as conn:
        row = await sync_queries.get_sync(conn, user.id, sync_id)
    if row is None:
        raise ApiError(404, "sync_not_found", "No such sync for this account")
    return _item(row)
