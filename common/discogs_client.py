"""A small Discogs API client: OAuth 1.0a signing, rate limiting, retries (used by api and curator).

Signing follows RFC 5849 (reference/api.md §6.3 with its [R] fix): the signature base string holds
the method, the base URL (scheme and host lower-cased, default port dropped, no query) and the
sorted, percent-encoded parameters - oauth parameters **and** the query string. HMAC-SHA1 is the
default (it never sends the secrets); PLAINTEXT (`consumer_secret&token_secret`) is what the
Discogs docs show and is only safe over HTTPS.

Rate limiting (reference/discogs-data.md §5): Discogs allows 60 authenticated requests per minute
per source address, as a moving window. `RateLimiter` never lets more than `max_requests` requests
start within any `window_s` seconds, and slows down further when the server's
`X-Discogs-Ratelimit-Remaining` runs low. A 429 is retried after `Retry-After` (Discogs sends
none, so a configurable back-off), a bounded number of times; 5xx and connection errors are
retried with exponential back-off; 401/403 are permanent (the authorisation is bad).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import aiohttp
import orjson
from yarl import URL

from common.errors import DiscogsographyError
from common.logging import get_logger

log = get_logger(__name__)

SignatureMethod = Literal["HMAC-SHA1", "PLAINTEXT"]
DEFAULT_USER_AGENT: Final = "discogsography/1.0 +https://github.com/discogsography"
DEFAULT_API_URL: Final = "https://api.discogs.com"
DEFAULT_AUTHORIZE_URL: Final = "https://www.discogs.com/oauth/authorize"
MAX_PER_PAGE: Final = 100


# --------------------------------------------------------------------------- OAuth 1.0a signing


def percent_encode(value: str) -> str:
    """RFC 3986 encoding: only ``A-Z a-z 0-9 - . _ ~`` stay as they are (UTF-8 first)."""
    return quote(value, safe="~")


def normalize_base_url(url: str) -> str:
    """RFC 5849 §3.4.1.2: lower-case scheme and host, no default port, no query or fragment."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    netloc = host if port is None or (scheme, port) in {("http", 80), ("https", 443)} else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", "", ""))


def normalized_parameters(params: Sequence[tuple[str, str]]) -> str:
    encoded = sorted((percent_encode(k), percent_encode(v)) for k, v in params)
    return "&".join(f"{k}={v}" for k, v in encoded)


def signature_base_string(method: str, url: str, params: Sequence[tuple[str, str]]) -> str:
    """`params`: the query and form-body parameters plus the oauth_* ones (never oauth_signature)."""
    return "&".join(
        (
            method.upper(),
            percent_encode(normalize_base_url(url)),
            percent_encode(normalized_parameters(params)),
        )
    )


def signing_key(consumer_secret: str, token_secret: str) -> str:
    return f"{percent_encode(consumer_secret)}&{percent_encode(token_secret)}"


def hmac_sha1_signature(base_string: str, consumer_secret: str, token_secret: str) -> str:
    digest = hmac.new(
        signing_key(consumer_secret, token_secret).encode(), base_string.encode(), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode()


@dataclass(frozen=True)
class OAuthCredentials:
    consumer_key: str
    consumer_secret: str
    token: str = ""
    token_secret: str = ""


def oauth_parameters(
    method: str,
    url: str,
    creds: OAuthCredentials,
    *,
    query: Sequence[tuple[str, str]] = (),
    extra: Mapping[str, str] | None = None,
    signature_method: SignatureMethod = "HMAC-SHA1",
    nonce: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    """The oauth_* parameters of one request, `oauth_signature` included.

    `url` may carry a query string; it is merged with `query` for signing.
    """
    oauth: dict[str, str] = {
        "oauth_consumer_key": creds.consumer_key,
        "oauth_nonce": nonce or secrets.token_hex(16),
        "oauth_signature_method": signature_method,
        "oauth_timestamp": str(timestamp if timestamp is not None else int(time.time())),
        "oauth_version": "1.0",
    }
    if creds.token:
        oauth["oauth_token"] = creds.token
    oauth.update(extra or {})
    if signature_method == "PLAINTEXT":
        oauth["oauth_signature"] = signing_key(creds.consumer_secret, creds.token_secret)
    else:
        url_query = parse_qsl(urlsplit(url).query, keep_blank_values=True)
        base = signature_base_string(method, url, [*url_query, *query, *oauth.items()])
        oauth["oauth_signature"] = hmac_sha1_signature(base, creds.consumer_secret, creds.token_secret)
    return oauth


def authorization_header(oauth: Mapping[str, str]) -> str:
    """`OAuth k1="v1", k2="v2"` with names sorted and values percent-encoded."""
    return "OAuth " + ", ".join(
        f'{percent_encode(k)}="{percent_encode(v)}"' for k, v in sorted(oauth.items())
    )


# --------------------------------------------------------------------------- errors


class DiscogsError(DiscogsographyError):
    """A Discogs call that failed; `message` is readable by a user."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DiscogsAuthError(DiscogsError):
    """Discogs refused the credentials (401/403): reconnect, or fix the consumer key."""


class DiscogsNotFoundError(DiscogsError):
    """404: unknown user or resource."""


class DiscogsUnavailableError(DiscogsError):
    """Discogs could not be reached or kept answering 5xx / 429 after the retries."""


class DiscogsProtocolError(DiscogsError):
    """Discogs answered something we cannot understand (not JSON, missing fields)."""


# --------------------------------------------------------------------------- rate limiting


class RateLimiter:
    """At most `max_requests` request starts within any `window_s` seconds (sliding window).

    One instance is shared by everything in a process that talks to Discogs, because Discogs counts
    per source address. `margin_s` widens the window a little, so requests that were spaced by our
    clock are still spaced when they arrive at the server.
    """

    def __init__(
        self,
        max_requests: int,
        window_s: float = 60.0,
        *,
        margin_s: float = 0.0,
        low_water: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_requests < 1 or window_s <= 0:
            raise ValueError("max_requests must be >= 1 and window_s > 0")
        self.max_requests = max_requests
        self.window_s = window_s
        self.margin_s = margin_s
        self.low_water = low_water
        self._clock = clock
        self._starts: deque[float] = deque()
        self._pause_until = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                span = self.window_s + self.margin_s
                while self._starts and self._starts[0] <= now - span:
                    self._starts.popleft()
                wait = self._pause_until - now
                if len(self._starts) >= self.max_requests:
                    wait = max(wait, self._starts[0] + span - now)
                if wait <= 0:
                    self._starts.append(now)
                    return
                await asyncio.sleep(wait)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Slow down when the server says few requests remain (other clients share the address)."""
        raw = headers.get("X-Discogs-Ratelimit-Remaining")
        if raw is None:
            return
        try:
            remaining = int(raw)
        except ValueError:
            return
        if remaining <= self.low_water:
            pause = (self.window_s / self.max_requests) * (self.low_water - remaining + 1)
            self._pause_until = max(self._pause_until, self._clock() + pause)
            log.info("discogs_rate_limit_low", remaining=remaining, pause_s=round(pause, 2))

    def backoff(self, seconds: float) -> None:
        """Nobody in this process starts a request for `seconds` (after a 429)."""
        self._pause_until = max(self._pause_until, self._clock() + seconds)


# --------------------------------------------------------------------------- client


@dataclass(frozen=True)
class RetryPolicy:
    max_429_retries: int = 5
    retry_after_s: float = 60.0  # Discogs sends no Retry-After; its window is 60 s
    max_error_retries: int = 3
    error_backoff_s: float = 2.0


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    page: int
    pages: int
    total_items: int


class DiscogsClient:
    """Async Discogs client bound to one consumer key; use as `async with DiscogsClient(...)`."""

    def __init__(
        self,
        *,
        consumer_key: str,
        consumer_secret: str,
        api_url: str = DEFAULT_API_URL,
        user_agent: str = DEFAULT_USER_AGENT,
        signature_method: SignatureMethod = "HMAC-SHA1",
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.api_url = api_url.rstrip("/")
        self.user_agent = user_agent
        self.signature_method = signature_method
        self.limiter = limiter
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s
        self.requests_made = 0
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> DiscogsClient:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            headers={"User-Agent": self.user_agent},
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- low level

    async def _send(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        token: str = "",
        token_secret: str = "",
        extra_oauth: Mapping[str, str] | None = None,
        form: bool = False,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One request with rate limiting and retries; returns (status, headers, body) of the last try."""
        if self._session is None:
            raise RuntimeError("DiscogsClient used outside `async with`")
        url = f"{self.api_url}{path}"
        creds = OAuthCredentials(self.consumer_key, self.consumer_secret, token, token_secret)
        qs = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in query)
        full = URL(f"{url}?{qs}" if qs else url, encoded=True)
        rate_retries = 0
        error_retries = 0
        while True:
            oauth = oauth_parameters(
                method, url, creds, query=query, extra=extra_oauth, signature_method=self.signature_method
            )
            headers = {"Authorization": authorization_header(oauth), "Accept": "application/json"}
            if form:
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            if self.limiter is not None:
                await self.limiter.acquire()
            self.requests_made += 1
            try:
                async with self._session.request(method, full, headers=headers) as resp:
                    body = await resp.read()
                    status, resp_headers = resp.status, resp.headers
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = str(exc) or type(exc).__name__
                if error_retries >= self.retry.max_error_retries:
                    raise DiscogsUnavailableError(
                        f"cannot reach Discogs at {self.api_url}: {reason}"
                    ) from exc
                error_retries += 1
                await self._sleep_error(error_retries, path, reason)
                continue
            if self.limiter is not None:
                self.limiter.observe(resp_headers)
            if status == 429:
                if rate_retries >= self.retry.max_429_retries:
                    raise DiscogsUnavailableError(
                        f"Discogs kept answering 429 Too Many Requests on {path} "
                        f"after {rate_retries} retries",
                        status,
                    )
                rate_retries += 1
                delay = _retry_after(resp_headers, self.retry.retry_after_s)
                log.warning("discogs_rate_limited", path=path, retry_in_s=delay, attempt=rate_retries)
                if self.limiter is not None:
                    self.limiter.backoff(delay)
                else:
                    await asyncio.sleep(delay)
                continue
            if status >= 500:
                if error_retries >= self.retry.max_error_retries:
                    raise DiscogsUnavailableError(
                        f"Discogs is unavailable: HTTP {status} on {path} after {error_retries} retries",
                        status,
                    )
                error_retries += 1
                await self._sleep_error(error_retries, path, f"HTTP {status}")
                continue
            return status, resp_headers, body

    async def _sleep_error(self, attempt: int, path: str, reason: str) -> None:
        delay = self.retry.error_backoff_s * (2 ** (attempt - 1))
        log.warning("discogs_retry", path=path, reason=reason, retry_in_s=delay, attempt=attempt)
        await asyncio.sleep(delay)

    @staticmethod
    def _raise_for_status(status: int, body: bytes, what: str) -> None:
        if status == 200:
            return
        message = _error_message(body)
        if status in (401, 403):
            raise DiscogsAuthError(f"Discogs refused {what} (HTTP {status}): {message}", status)
        if status == 404:
            raise DiscogsNotFoundError(f"Discogs has no {what} (HTTP 404): {message}", status)
        raise DiscogsError(f"Discogs {what} failed (HTTP {status}): {message}", status)

    # ---- OAuth 1.0a

    async def request_token(self, callback: str = "oob") -> tuple[str, str]:
        """Step 1: a request token and its secret."""
        status, _, body = await self._send(
            "GET", "/oauth/request_token", extra_oauth={"oauth_callback": callback}, form=True
        )
        self._raise_for_status(status, body, "the request token")
        return _token_pair(body, "request token")

    async def access_token(self, token: str, token_secret: str, verifier: str) -> tuple[str, str]:
        """Step 3: exchange an approved request token + verifier for the access token."""
        status, _, body = await self._send(
            "POST",
            "/oauth/access_token",
            token=token,
            token_secret=token_secret,
            extra_oauth={"oauth_verifier": verifier},
            form=True,
        )
        self._raise_for_status(status, body, "the verifier")
        return _token_pair(body, "access token")

    async def identity(self, token: str, token_secret: str) -> dict[str, Any]:
        status, _, body = await self._send("GET", "/oauth/identity", token=token, token_secret=token_secret)
        self._raise_for_status(status, body, "the identity")
        data = _json_object(body, "identity")
        if not data.get("username"):
            raise DiscogsProtocolError("Discogs identity has no username")
        return data

    # ---- reads

    async def get_json(
        self, path: str, *, query: Sequence[tuple[str, str]] = (), token: str = "", token_secret: str = ""
    ) -> dict[str, Any]:
        status, _, body = await self._send("GET", path, query=query, token=token, token_secret=token_secret)
        self._raise_for_status(status, body, path)
        return _json_object(body, path)

    async def pages(
        self,
        path: str,
        items_key: str,
        *,
        token: str,
        token_secret: str,
        per_page: int = MAX_PER_PAGE,
        extra_query: Sequence[tuple[str, str]] = (),
    ) -> AsyncIterator[Page]:
        """Every page of a paginated list, in order, until `pagination.pages`."""
        page = 1
        while True:
            query = [("page", str(page)), ("per_page", str(min(per_page, MAX_PER_PAGE))), *extra_query]
            data = await self.get_json(path, query=query, token=token, token_secret=token_secret)
            items = data.get(items_key)
            pagination = data.get("pagination") or {}
            if not isinstance(items, list) or not isinstance(pagination, dict):
                raise DiscogsProtocolError(f"Discogs answered {path} without a '{items_key}' list")
            pages = int(pagination.get("pages") or 1)
            total = int(pagination.get("items") or 0)
            yield Page([i for i in items if isinstance(i, dict)], page, pages, total)
            if page >= pages or not items:
                return
            page += 1


def user_path(username: str, *rest: str) -> str:
    """`/users/<username>/...` with the username URL-encoded (reference/api.md §8 item 26)."""
    return "/".join(("/users", quote(username, safe=""), *rest))


def _retry_after(headers: Mapping[str, str], default: float) -> float:
    raw = headers.get("Retry-After")
    if raw is None:
        return default
    try:
        return max(0.0, float(raw))
    except ValueError:
        return default


def _error_message(body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return text[:200] or "no message"
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    return str(data)[:200]


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DiscogsProtocolError(f"Discogs answered {what} with something that is not JSON") from exc
    if not isinstance(data, dict):
        raise DiscogsProtocolError(
            f"Discogs answered {what} with a JSON {type(data).__name__}, not an object"
        )
    return data


def _token_pair(body: bytes, what: str) -> tuple[str, str]:
    fields = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    token, secret = fields.get("oauth_token"), fields.get("oauth_token_secret")
    if not token or not secret:
        raise DiscogsProtocolError(f"Discogs answered without a {what}")
    return token, secret
