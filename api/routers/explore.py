"""Explore the graph: autocomplete, explore, expand, node details, trends (reference §2.6, §4)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from api.cache import cache_key, cached
from api.dependencies import Neo4jDep, RedisDep, SettingsDep
from api.errors import ApiError, error_responses
from api.models import AutocompleteResponse, ExpandResponse, ExploreResponse, NodeDetails, TrendsResponse
from api.queries import neo4j_queries as q
from api.settings import ApiSettings

router = APIRouter(prefix="/api", tags=["explore"], responses=error_responses(400, 422, 503))

MAX_NAME = 512
MAX_OFFSET = 10_000

TypeParam = Annotated[str, Query(max_length=32, description="artist, genre, label or style")]
NameParam = Annotated[str | None, Query(max_length=MAX_NAME, description="Exact, case-sensitive name")]
IdParam = Annotated[
    str | None,
    Query(
        max_length=64,
        description="Discogs id (artist, label) or name (genre, style); wins over `name` when given",
    ),
]


def _type(value: str, allowed: tuple[str, ...]) -> str:
    type_ = value.strip().lower()
    if type_ not in allowed:
        raise ApiError(400, "invalid_type", f"Invalid type {value!r}. Valid: {', '.join(allowed)}")
    return type_


def _ref(type_: str, name: str | None, id_: str | None) -> q.Ref:
    if id_ is not None and id_ != "":
        if type_ in ("genre", "style"):
            return q.Ref(type_, name=id_)
        numeric = q.parse_id(id_)
        if numeric is None:
            raise ApiError(400, "invalid_id", f"Invalid id {id_!r}: a Discogs id is a whole number")
        return q.Ref(type_, id=numeric)
    if name is None:
        raise ApiError(422, "validation_error", "Invalid request: query.name: Field required", headers=None)
    return q.Ref(type_, name=name)


def _not_found(ref: q.Ref) -> ApiError:
    what = ref.name if ref.id is None else ref.id
    return ApiError(404, "not_found", f"{ref.type.capitalize()} {what!r} not found")


def _opts(settings: ApiSettings) -> dict[str, Any]:
    return {"timeout": settings.neo4j_query_timeout_s, "database": settings.neo4j_database}


@router.get(
    "/autocomplete",
    response_model=AutocompleteResponse,
    summary="Search names by prefix (every word must match)",
)
async def autocomplete(
    driver: Neo4jDep,
    redis_client: RedisDep,
    settings: SettingsDep,
    q_: Annotated[str, Query(alias="q", min_length=2, max_length=200, description="Search text")],
    type: TypeParam = "artist",
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> dict[str, Any]:
    type_ = _type(type, q.AUTOCOMPLETE_TYPES)
    norm = q.normalise_query(q_)
    # Keyed by the full-text query itself: inputs that differ only in what the index ignores
    # ("night love (" and "night love", punctuation, spacing, case) share one entry.
    search = q.lucene_prefix_query(norm)
    if search is None:
        return {"results": []}  # no word to search for

    async def compute() -> list[dict[str, Any]]:
        return await q.autocomplete(driver, type_, norm, limit, **_opts(settings))

    key = cache_key("autocomplete", type_, limit, search)
    results = await cached(redis_client, "autocomplete", key, settings.autocomplete_cache_ttl_s, compute)
    return {"results": results}


@router.get(
    "/explore",
    response_model=ExploreResponse,
    summary="A node and the size of each of its categories",
    responses=error_responses(404),
)
async def explore(
    driver: Neo4jDep,
    redis_client: RedisDep,
    settings: SettingsDep,
    name: NameParam = None,
    type: TypeParam = "artist",
    id: IdParam = None,
) -> dict[str, Any]:
    ref = _ref(_type(type, q.EXPLORE_TYPES), name, id)

    async def compute() -> dict[str, Any] | None:
        return await q.explore(driver, ref, **_opts(settings))

    key = cache_key("explore", ref.type, ref.id, ref.name)
    result = await cached(redis_client, "explore", key, settings.explore_cache_ttl_s, compute)
    if result is None:
        raise _not_found(ref)
    return result


@router.get(
    "/expand",
    response_model=ExpandResponse,
    response_model_exclude_unset=True,
    summary="One page of a node's children in a category",
)
async def expand(
    driver: Neo4jDep,
    redis_client: RedisDep,
    settings: SettingsDep,
    node_id: Annotated[str, Query(max_length=MAX_NAME, description="The parent's exact name")],
    type: Annotated[str, Query(max_length=32, description="artist, genre, label or style")],
    category: Annotated[str, Query(max_length=32)],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    id: IdParam = None,
) -> dict[str, Any]:
    type_ = _type(type, q.EXPLORE_TYPES)
    cat = category.strip().lower()
    valid = [c for c, _ in q.CATEGORIES[type_]]
    if cat not in valid:
        raise ApiError(
            400, "invalid_category", f"Invalid category {category!r} for {type_}. Valid: {', '.join(valid)}"
        )
    ref = _ref(type_, node_id, id)
    opts = _opts(settings)

    async def compute() -> dict[str, Any]:
        children, total = await asyncio.gather(
            q.expand_page(driver, ref, cat, limit, offset, **opts),
            q.expand_total(driver, ref, cat, **opts),
        )
        return {"children": children, "total": total}

    key = cache_key("expand", ref.type, ref.id, ref.name, cat, limit, offset)
    page = await cached(redis_client, "expand", key, settings.explore_cache_ttl_s, compute)
    children, total = page["children"], int(page["total"])
    return {
        "children": children,
        "total": total,
        "offset": offset,
        "limit": limit,
        "has_more": offset + len(children) < total,
    }


@router.get(
    "/node/{node_id}",
    response_model=NodeDetails,
    response_model_exclude_unset=True,
    summary="Details of one node (by id, else by exact name/title)",
    responses=error_responses(404),
)
async def node(
    driver: Neo4jDep,
    redis_client: RedisDep,
    settings: SettingsDep,
    node_id: Annotated[str, Path(min_length=1, max_length=MAX_NAME)],
    type: Annotated[
        str, Query(max_length=32, description="artist, release, label, genre or style")
    ] = "artist",
) -> dict[str, Any]:
    type_ = _type(type, q.NODE_TYPES)

    async def compute() -> dict[str, Any] | None:
        return await q.node_details(driver, type_, node_id, **_opts(settings))

    key = cache_key("node", type_, node_id)
    details = await cached(redis_client, "node", key, settings.explore_cache_ttl_s, compute)
    if details is None:
        raise ApiError(404, "not_found", f"{type_.capitalize()} {node_id!r} not found")
    return details


@router.get("/trends", response_model=TrendsResponse, summary="Releases per year (sparse, ascending)")
async def trends(
    driver: Neo4jDep,
    redis_client: RedisDep,
    settings: SettingsDep,
    name: NameParam = None,
    type: TypeParam = "artist",
    id: IdParam = None,
) -> dict[str, Any]:
    type_ = _type(type, q.EXPLORE_TYPES)
    ref = _ref(type_, name, id)

    async def compute() -> list[dict[str, int]]:
        return await q.trends(driver, ref, **_opts(settings))

    key = cache_key("trends", ref.type, ref.id, ref.name)
    data = await cached(redis_client, "trends", key, settings.explore_cache_ttl_s, compute)
    return {"name": name if name is not None else (ref.name or str(ref.id)), "type": type_, "data": data}
