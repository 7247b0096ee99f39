"""Shareable snapshots of the explore view (reference §2.7, §7)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, status

from api.dependencies import RedisDep, SettingsDep
from api.errors import ApiError, error_responses
from api.models import SnapshotRequest, SnapshotResponse, SnapshotSaved
from api.rate_limit import client_address, enforce_rate_limit
from api.snapshot_store import SnapshotStore, TooManyNodesError

router = APIRouter(prefix="/api/snapshot", tags=["snapshot"], responses=error_responses(422, 503))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SnapshotSaved,
    summary="Save a snapshot; returns its token",
    responses=error_responses(413, 429),
)
async def save_snapshot(
    body: SnapshotRequest, request: Request, redis_client: RedisDep, settings: SettingsDep
) -> dict[str, Any]:
    await enforce_rate_limit(
        redis_client,
        "snapshot",
        client_address(request, settings.trust_forwarded_for),
        settings.snapshot_rate_limit,
        settings.rate_limit_window_s,
    )
    store = SnapshotStore(redis_client, settings.snapshot_ttl_days, settings.snapshot_max_nodes)
    try:
        saved = await store.save([n.model_dump() for n in body.nodes], body.center.model_dump())
    except TooManyNodesError as exc:
        raise ApiError(422, "too_many_nodes", str(exc)) from exc
    return {"token": saved.token, "url": f"/?snapshot={saved.token}", "expires_at": saved.expires_at}


@router.get(
    "/{token}",
    response_model=SnapshotResponse,
    summary="Load a snapshot",
    responses=error_responses(404),
)
async def load_snapshot(
    token: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")],
    redis_client: RedisDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    store = SnapshotStore(redis_client, settings.snapshot_ttl_days, settings.snapshot_max_nodes)
    entry = await store.load(token)
    if entry is None:
        raise ApiError(404, "snapshot_not_found", "Snapshot not found or expired")
    return {"nodes": entry["nodes"], "center": entry["center"], "created_at": entry["created_at"]}
