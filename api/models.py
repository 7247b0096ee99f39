"""Request and response models of the api (the OpenAPI schema is generated from these)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

# ---------------------------------------------------------------------------------------------
# Errors: one envelope for every error response (design §3).


class ValidationProblem(BaseModel):
    """One request-validation problem (the items of `detail` on a 422)."""

    type: str
    loc: list[str | int]
    msg: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class ErrorResponse(BaseModel):
    """The error envelope: `error` and `detail` both carry the message (or, for 422, `detail`
    carries the list of validation problems); `code` is a stable snake_case identifier."""

    error: str = Field(description="Human-readable message")
    code: str = Field(description="Stable snake_case error code", examples=["not_found"])
    detail: str | list[ValidationProblem] = Field(
        description="The message again, or the list of validation problems for 422"
    )


# ---------------------------------------------------------------------------------------------
# Health


class HealthResponse(BaseModel):
    status: Literal["healthy", "starting"]
    service: str
    timestamp: datetime


class ReadyResponse(BaseModel):
    status: Literal["ready", "not_ready"]
    service: str
    checks: dict[str, str]


# ---------------------------------------------------------------------------------------------
# Auth

# local@domain.tld: no spaces or '@' in either part, a dot inside the domain (reference §2.2.1).
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_PASSWORD_CHARS = 1024


def _normalise_email(value: str) -> str:
    return _storable(value).strip().lower()


def _storable(value: str) -> str:
    """Text PostgreSQL can store: valid UTF-8 (no lone surrogates) and no NUL character."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid UTF-8 text") from exc
    return value


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=255, examples=["someone@example.com"])
    password: str = Field(min_length=8, max_length=MAX_PASSWORD_CHARS)

    @field_validator("password")
    @classmethod
    def _password(cls, value: str) -> str:
        return _storable(value)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        value = _normalise_email(value)
        if not EMAIL_RE.match(value) or value.startswith(".") or ".." in value.split("@")[1]:
            raise ValueError("not a valid email address")
        return value


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=255)
    password: str = Field(max_length=MAX_PASSWORD_CHARS)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return _normalise_email(value)


class UserResponse(BaseModel):
    id: UUID
    email: str
    is_active: bool
    is_admin: bool = False
    created_at: datetime


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int = Field(description="Lifetime of the token in seconds")


class LogoutResponse(BaseModel):
    logged_out: bool = True


class CurrentUser(BaseModel):
    """The authenticated caller, resolved from a bearer token and the users table."""

    id: UUID
    email: str
    is_admin: bool


# ---------------------------------------------------------------------------------------------
# Admin

ConfigKey = Literal["discogs_consumer_key", "discogs_consumer_secret", "discogs_user_agent"]


class ConfigEntry(BaseModel):
    key: str
    value: str | None = Field(description="The value; secrets are masked; null when not set")
    is_secret: bool
    is_set: bool
    updated_at: datetime | None = None


class ConfigResponse(BaseModel):
    config: list[ConfigEntry]


class ConfigUpdateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: str = Field(min_length=1, max_length=1024)

    @field_validator("value")
    @classmethod
    def _value(cls, value: str) -> str:
        return _storable(value)


# ---------------------------------------------------------------------------------------------
# Explore

ExploreType = Literal["artist", "genre", "label", "style"]
NodeType = Literal["artist", "release", "label", "genre", "style"]


class AutocompleteResult(BaseModel):
    id: str
    name: str
    score: float


class AutocompleteResponse(BaseModel):
    results: list[AutocompleteResult]


class ExploreCenter(BaseModel):
    id: str
    name: str
    type: str


class ExploreCategory(BaseModel):
    id: str
    name: str
    category: str
    count: int


class ExploreResponse(BaseModel):
    center: ExploreCenter
    categories: list[ExploreCategory]


class ExpandChild(BaseModel):
    id: str
    name: str
    type: str
    year: int | None = None
    release_count: int | None = None


class ExpandResponse(BaseModel):
    children: list[ExpandChild]
    total: int
    offset: int
    limit: int
    has_more: bool


class NodeDetails(BaseModel):
    """Details of one node; which optional fields are present depends on the type."""

    id: str
    name: str
    year: int | None = None
    release_count: int | None = None
    artist_count: int | None = None
    genres: list[str] | None = None
    styles: list[str] | None = None
    groups: list[str] | None = None
    members: list[str] | None = None
    aliases: list[str] | None = None
    artists: list[str] | None = None
    labels: list[str] | None = None
    parent_labels: list[str] | None = None
    sublabels: list[str] | None = None
    realname: str | None = None
    profile: str | None = None
    country: str | None = None
    released: str | None = None
    formats: list[str] | None = None


class TrendPoint(BaseModel):
    year: int
    count: int


class TrendsResponse(BaseModel):
    name: str
    type: str
    data: list[TrendPoint]


# ---------------------------------------------------------------------------------------------
# Snapshot

SnapshotNodeType = Literal["artist", "label", "master", "release", "genre", "style", "category"]


class SnapshotNode(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: Annotated[str, Field(min_length=1, max_length=256)]
    type: SnapshotNodeType

    @field_validator("type", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class SnapshotRequest(BaseModel):
    nodes: list[SnapshotNode] = Field(min_length=1)
    center: SnapshotNode


class SnapshotSaved(BaseModel):
    token: str
    url: str = Field(description="A URL that opens the snapshot in the web UI")
    expires_at: datetime


class SnapshotResponse(BaseModel):
    nodes: list[SnapshotNode]
    center: SnapshotNode
    created_at: datetime


# ---------------------------------------------------------------------------------------------
# User


class UserRelease(BaseModel):
    id: str
    title: str | None
    year: int | None = None
    artist: str | None = None
    label: str | None = None
    rating: int | None = None
    date_added: str | None = None


class CollectionRelease(UserRelease):
    folder_id: int | None = None
    instance_id: str | None = None


class CollectionResponse(BaseModel):
    releases: list[CollectionRelease]
    total: int = Field(description="Number of collection instances (a release owned twice counts twice)")
    offset: int
    limit: int
    has_more: bool


class WantlistResponse(BaseModel):
    releases: list[UserRelease]
    total: int
    offset: int
    limit: int
    has_more: bool


class Recommendation(BaseModel):
    id: str
    title: str | None
    year: int | None = None
    artist: str | None = None
    label: str | None = None
    genres: list[str]
    score: int


class RecommendationsResponse(BaseModel):
    recommendations: list[Recommendation]
    total: int


class NameCount(BaseModel):
    name: str
    count: int


class DecadeCount(BaseModel):
    decade: int
    count: int


class CollectionStats(BaseModel):
    total: int
    by_genre: list[NameCount]
    by_decade: list[DecadeCount]
    by_label: list[NameCount]


class ReleaseStatus(BaseModel):
    in_collection: bool
    in_wantlist: bool


class UserStatusResponse(BaseModel):
    status: dict[str, ReleaseStatus]
