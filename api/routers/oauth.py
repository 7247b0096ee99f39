"""Discogs OAuth 1.0a: link a Discogs account (reference/api.md §2.3, with the §8 fixes).

Two ways to finish the flow:
- out-of-band (the reference's flow, the default): Discogs shows the user a code, which the client
  posts to `POST /api/oauth/verify/discogs` with the state;
- browser redirect (`?flow=callback`): Discogs sends the browser to
  `GET /api/oauth/callback/discogs`, which completes the link and redirects to the web UI.

The state is bound to the user who started the flow: verify only accepts the same user, and the
callback only the browser that started it (an HttpOnly cookie set by authorize) or a bearer token
of the same user. A foreign, unknown, expired or already used state gets the same 400.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Cookie, Query, Request, Response
from fastapi.responses import RedirectResponse

from api.dependencies import (
    CurrentUserDep,
    Neo4jDep,
    OptionalUserDep,
    PgPoolDep,
    RedisDep,
    SecretBoxDep,
    SettingsDep,
)
from api.errors import ApiError, error_responses
from api.models_sync import (
    AuthorizeResponse,
    OAuthFlow,
    OAuthStatusResponse,
    RevokeResponse,
    VerifyRequest,
    VerifyResponse,
)
from api.queries import sync_queries
from api.services import discogs as svc
from api.settings import ApiSettings
from common.discogs_client import DiscogsError, DiscogsUnavailableError
from common.logging import get_logger

log = get_logger(__name__)

router = APIRouter(prefix="/api/oauth", tags=["oauth"], responses=error_responses(401, 503))

BINDING_COOKIE = "discogs_oauth_binding"
COOKIE_PATH = "/api/oauth"
CALLBACK_ROUTE = "discogs_oauth_callback"

_NOT_CONFIGURED = ApiError(
    503,
    "discogs_not_configured",
    "Discogs is not configured: an administrator must set the Discogs consumer key and secret",
)
_BAD_STATE = ApiError(
    400, "invalid_oauth_state", "OAuth state not found or expired; restart the Discogs connection"
)


def _discogs_failure(exc: DiscogsError, what: str) -> ApiError:
    if isinstance(exc, DiscogsUnavailableError):
        return ApiError(502, "discogs_unavailable", f"Discogs is unavailable ({what}): {exc}")
    return ApiError(502, "discogs_error", f"Discogs {what} failed: {exc}")


async def _credentials(pool: PgPoolDep, box: SecretBoxDep, settings: ApiSettings) -> svc.AppCredentials:
    async with pool.connection() as conn:
        try:
            return await svc.app_credentials(conn, box, settings)
        except svc.DiscogsNotConfiguredError:
            raise _NOT_CONFIGURED from None


@router.get(
    "/authorize/discogs",
    response_model=AuthorizeResponse,
    summary="Start linking Discogs: a request token and the URL where the user approves the app",
    responses=error_responses(502),
)
async def authorize(
    request: Request,
    response: Response,
    user: CurrentUserDep,
    settings: SettingsDep,
    pool: PgPoolDep,
    redis: RedisDep,
    box: SecretBoxDep,
    flow: Annotated[OAuthFlow, Query(description="`oob` (a code to paste) or `callback`")] = "oob",
) -> AuthorizeResponse:
    creds = await _credentials(pool, box, settings)
    callback_url = settings.discogs_oauth_callback_url or str(request.url_for(CALLBACK_ROUTE))
    try:
        pending = await svc.start_authorization(settings, creds, redis, box, user.id, flow, callback_url)
    except DiscogsError as exc:
        log.warning("discogs_request_token_failed", error=str(exc))
        raise _discogs_failure(exc, "request token") from exc
    if pending.binding is not None:
        response.set_cookie(
            BINDING_COOKIE,
            pending.binding,
            max_age=svc.STATE_TTL_S,
            path=COOKIE_PATH,
            httponly=True,
            samesite="lax",  # sent on the top-level redirect back from discogs.com
            secure=request.url.scheme == "https",
        )
    return AuthorizeResponse(
        authorize_url=pending.authorize_url, state=pending.state, expires_in=svc.STATE_TTL_S, flow=flow
    )


@router.post(
    "/verify/discogs",
    response_model=VerifyResponse,
    summary="Finish linking Discogs with the code Discogs showed the user",
    responses=error_responses(400, 422, 502),
)
async def verify(
    body: VerifyRequest,
    user: CurrentUserDep,
    settings: SettingsDep,
    pool: PgPoolDep,
    redis: RedisDep,
    box: SecretBoxDep,
) -> VerifyResponse:
    creds = await _credentials(pool, box, settings)
    async with pool.connection() as conn:
        try:
            _, account = await svc.complete_authorization(
                settings,
                creds,
                redis,
                box,
                conn,
                state=body.state,
                verifier=body.oauth_verifier,
                user_id=user.id,
            )
        except svc.InvalidStateError:
            raise _BAD_STATE from None
        except DiscogsUnavailableError as exc:
            raise _discogs_failure(exc, "access token") from exc
        except DiscogsError as exc:
            log.info("discogs_verify_refused", user_id=str(user.id), error=str(exc))
            raise ApiError(
                400, "oauth_failed", "Discogs refused the code; check it and try again, or restart"
            ) from exc
    log.info("discogs_linked", user_id=str(user.id), discogs_username=account.username)
    return VerifyResponse(connected=True, discogs_username=account.username, discogs_user_id=account.user_id)


@router.get(
    "/callback/discogs",
    name=CALLBACK_ROUTE,
    response_class=RedirectResponse,
    status_code=303,
    summary="Where Discogs sends the browser back (callback flow); redirects to the web UI",
    responses={303: {"description": "To DISCOGS_OAUTH_RETURN_URL with ?discogs=connected|error"}},
)
async def callback(
    user: OptionalUserDep,
    settings: SettingsDep,
    pool: PgPoolDep,
    redis: RedisDep,
    box: SecretBoxDep,
    oauth_token: Annotated[str, Query(max_length=256)] = "",
    oauth_verifier: Annotated[str, Query(max_length=256)] = "",
    denied: Annotated[str, Query(max_length=256)] = "",
    binding: Annotated[str | None, Cookie(alias=BINDING_COOKIE, max_length=256)] = None,
) -> RedirectResponse:
    def back(outcome: str, reason: str | None = None) -> RedirectResponse:
        params = {"discogs": outcome} | ({"reason": reason} if reason else {})
        base = settings.discogs_oauth_return_url
        target = f"{base}{'&' if '?' in base else '?'}{urlencode(params)}"
        resp = RedirectResponse(target, status_code=303)
        resp.delete_cookie(BINDING_COOKIE, path=COOKIE_PATH)
        return resp

    if denied:
        await redis.delete(svc.state_key(denied))
        return back("error", "denied")
    if not oauth_token or not oauth_verifier:
        return back("error", "missing_parameters")
    try:
        creds = await _credentials(pool, box, settings)
    except ApiError:
        return back("error", "not_configured")
    async with pool.connection() as conn:
        try:
            owner, account = await svc.complete_authorization(
                settings,
                creds,
                redis,
                box,
                conn,
                state=oauth_token,
                verifier=oauth_verifier,
                user_id=user.id if user else None,
                binding=binding,
            )
        except svc.InvalidStateError:
            return back("error", "invalid_state")
        except DiscogsError as exc:
            log.info("discogs_callback_failed", error=str(exc))
            return back("error", "discogs_refused")
    log.info("discogs_linked", user_id=str(owner), discogs_username=account.username, flow="callback")
    return back("connected")


@router.get("/status/discogs", response_model=OAuthStatusResponse, summary="Is a Discogs account linked?")
async def status(user: CurrentUserDep, pool: PgPoolDep) -> OAuthStatusResponse:
    async with pool.connection() as conn:
        link = await sync_queries.get_discogs_link(conn, user.id)
    if link is None:
        return OAuthStatusResponse(connected=False)
    return OAuthStatusResponse(
        connected=True,
        discogs_username=link.username,
        discogs_user_id=link.provider_user_id,
        connected_at=link.connected_at,
    )


@router.delete(
    "/revoke/discogs",
    response_model=RevokeResponse,
    summary="Unlink Discogs (idempotent); `purge=true` also deletes the synced collection and wantlist",
)
async def revoke(
    user: CurrentUserDep,
    pool: PgPoolDep,
    driver: Neo4jDep,
    settings: SettingsDep,
    purge: Annotated[bool, Query(description="Also delete the synced collection and wantlist")] = False,
) -> RevokeResponse:
    async with pool.connection() as conn:
        await sync_queries.delete_discogs_link(conn, user.id)
        if purge:
            await sync_queries.purge_synced_rows(conn, user.id)
    if purge:
        await sync_queries.purge_synced_graph(driver, user.id, settings.neo4j_database)
    log.info("discogs_unlinked", user_id=str(user.id), purged=purge)
    return RevokeResponse(revoked=True, purged=purge)
