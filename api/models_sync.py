"""Request and response models of the Discogs OAuth and sync routes (reference/api.md §2.3, §2.5)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

OAuthFlow = Literal["oob", "callback"]


class AuthorizeResponse(BaseModel):
    authorize_url: str = Field(description="Send the user here to approve the app on Discogs")
    state: str = Field(description="The request token; pass it back to verify")
    expires_in: int = Field(description="Seconds the state stays valid")
    flow: OAuthFlow = Field(
        description="`oob`: Discogs shows a code to paste into verify; "
        "`callback`: Discogs redirects the browser to the callback route"
    )


class VerifyRequest(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    state: str = Field(min_length=1, max_length=256)
    oauth_verifier: str = Field(min_length=1, max_length=256)


class VerifyResponse(BaseModel):
    connected: bool
    discogs_username: str
    discogs_user_id: str | None


class OAuthStatusResponse(BaseModel):
    connected: bool
    discogs_username: str | None = None
    discogs_user_id: str | None = None
    connected_at: datetime | None = None


class RevokeResponse(BaseModel):
    revoked: bool
    purged: bool = False


class SyncStartedResponse(BaseModel):
    sync_id: str
    status: Literal["queued", "already_running"] = Field(
        description="`queued`: a new sync was accepted; `already_running`: the user's active sync"
    )


class SyncItem(BaseModel):
    sync_id: str
    sync_type: str
    status: Literal["queued", "running", "completed", "failed"]
    items_synced: int | None
    collection_count: int | None
    wantlist_count: int | None
    pages_fetched: int | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


class SyncStatusResponse(BaseModel):
    syncs: list[SyncItem]
