"""Personal data synced from Discogs: collection, wantlist, recommendations, stats, status."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.dependencies import CurrentUserDep, Neo4jDep, OptionalUserDep, SettingsDep
from api.errors import ApiError, error_responses
from api.models import (
    CollectionResponse,
    CollectionStats,
    RecommendationsResponse,
    UserStatusResponse,
    WantlistResponse,
)
from api.queries import neo4j_queries as q
from api.settings import ApiSettings

router = APIRouter(prefix="/api/user", tags=["user"], responses=error_responses(401, 422, 503))

MAX_STATUS_IDS = 100
MAX_OFFSET = 100_000


def _opts(settings: ApiSettings) -> dict[str, Any]:
    return {"timeout": settings.neo4j_query_timeout_s, "database": settings.neo4j_database}


def _page(items: list[dict[str, Any]], total: int, limit: int, offset: int) -> dict[str, Any]:
    return {
        "releases": items,
        "total": total,
        "offset": offset,
        "limit": limit,
        "has_more": offset + len(items) < total,
    }


LimitParam = Annotated[int, Query(ge=1, le=200)]
OffsetParam = Annotated[int, Query(ge=0, le=MAX_OFFSET)]


@router.get("/collection", response_model=CollectionResponse, summary="The user's collection (per instance)")
async def collection(
    user: CurrentUserDep,
    driver: Neo4jDep,
    settings: SettingsDep,
    limit: LimitParam = 50,
    offset: OffsetParam = 0,
) -> dict[str, Any]:
    items, total = await q.user_items(driver, str(user.id), "COLLECTED", limit, offset, **_opts(settings))
    return _page(items, total, limit, offset)


@router.get("/wantlist", response_model=WantlistResponse, summary="The user's wantlist")
async def wantlist(
    user: CurrentUserDep,
    driver: Neo4jDep,
    settings: SettingsDep,
    limit: LimitParam = 50,
    offset: OffsetParam = 0,
) -> dict[str, Any]:
    items, total = await q.user_items(driver, str(user.id), "WANTS", limit, offset, **_opts(settings))
    return _page(items, total, limit, offset)


@router.get(
    "/recommendations",
    response_model=RecommendationsResponse,
    summary="Releases by the user's favourite artists not yet collected or wanted",
)
async def recommendations(
    user: CurrentUserDep,
    driver: Neo4jDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    recs = await q.recommendations(driver, str(user.id), limit, **_opts(settings))
    return {"recommendations": recs, "total": len(recs)}


@router.get("/collection/stats", response_model=CollectionStats, summary="Collection statistics")
async def collection_stats(user: CurrentUserDep, driver: Neo4jDep, settings: SettingsDep) -> dict[str, Any]:
    return await q.collection_stats(driver, str(user.id), **_opts(settings))


@router.get(
    "/status",
    response_model=UserStatusResponse,
    summary="Whether releases are in the caller's collection / wantlist (anonymous: all false)",
    responses=error_responses(400),
)
async def status(
    user: OptionalUserDep,
    driver: Neo4jDep,
    settings: SettingsDep,
    ids: Annotated[
        str, Query(max_length=4096, description=f"Comma-separated release ids (at most {MAX_STATUS_IDS})")
    ],
) -> dict[str, Any]:
    requested = list(dict.fromkeys(p.strip() for p in ids.split(",") if p.strip()))
    if len(requested) > MAX_STATUS_IDS:
        raise ApiError(400, "too_many_ids", f"Too many ids: {len(requested)} (max {MAX_STATUS_IDS})")
    found: dict[int, tuple[bool, bool]] = {}
    numeric = [n for n in (q.parse_id(p) for p in requested) if n is not None]
    if user is not None and numeric:
        found = await q.release_status(driver, str(user.id), numeric, **_opts(settings))
    result = {}
    for piece in requested:
        n = q.parse_id(piece)
        in_collection, in_wantlist = found.get(n, (False, False)) if n is not None else (False, False)
        result[piece] = {"in_collection": in_collection, "in_wantlist": in_wantlist}
    return {"status": result}
