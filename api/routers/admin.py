"""Admin configuration (Discogs app credentials, user agent); admin role required (403 otherwise)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path

from api.dependencies import AdminDep, PgPoolDep, SecretBoxDep
from api.errors import ApiError, error_responses
from api.models import ConfigEntry, ConfigResponse, ConfigUpdateRequest
from api.queries import user_queries
from common.logging import get_logger

log = get_logger(__name__)

router = APIRouter(prefix="/api/admin", tags=["admin"], responses=error_responses(401, 403, 422, 503))


def _entries(rows: dict[str, user_queries.ConfigRow]) -> list[ConfigEntry]:
    entries = []
    for key in user_queries.CONFIG_KEYS:
        row = rows.get(key)
        is_secret = key in user_queries.SECRET_CONFIG_KEYS
        if row is None:
            entries.append(ConfigEntry(key=key, value=None, is_secret=is_secret, is_set=False))
            continue
        value = user_queries.mask_secret(row.value) if is_secret else row.value
        entries.append(
            ConfigEntry(key=key, value=value, is_secret=is_secret, is_set=True, updated_at=row.updated_at)
        )
    return entries


@router.get("/config", response_model=ConfigResponse, summary="App configuration (secrets masked)")
async def get_config(_: AdminDep, pool: PgPoolDep, box: SecretBoxDep) -> dict[str, Any]:
    async with pool.connection() as conn:
        rows = await user_queries.list_app_config(conn, box)
    return {"config": _entries(rows)}


@router.put(
    "/config/{key}",
    response_model=ConfigEntry,
    summary="Set one configuration value",
    responses=error_responses(400),
)
async def put_config(
    admin: AdminDep,
    body: ConfigUpdateRequest,
    pool: PgPoolDep,
    box: SecretBoxDep,
    key: str = Path(max_length=64, description=f"One of: {', '.join(user_queries.CONFIG_KEYS)}"),
) -> ConfigEntry:
    if key not in user_queries.CONFIG_KEYS:
        raise ApiError(
            400,
            "invalid_config_key",
            f"Unknown config key {key!r}. Valid: {', '.join(user_queries.CONFIG_KEYS)}",
        )
    async with pool.connection() as conn:
        await user_queries.set_app_config(conn, box, key, body.value)
        rows = await user_queries.list_app_config(conn, box)
    log.info("app_config_updated", key=key, by=str(admin.id))
    return next(e for e in _entries(rows) if e.key == key)
