"""A fake Discogs API: a real aiohttp server on a free port (reference/discogs-data.md §5).

- OAuth 1.0a: `GET|POST /oauth/request_token`, `GET /oauth/authorize` (an HTML page; approving
  shows the PIN for `oob` or redirects to the callback), `POST /oauth/access_token`,
  `GET /oauth/identity`. Signatures are checked - PLAINTEXT and HMAC-SHA1, the latter over the
  oauth, query and form parameters (RFC 5849) - with its own code, not the client's; nonces are
  single-use.
- `GET /users/{u}/collection/folders`, `/users/{u}/collection/folders/{id}/releases`,
  `/users/{u}/wants`: paginated (`page`, `per_page` <= 100, `sort=added`, `sort_order`), owner
  auth required, Discogs' body and `Link` shapes.
- Every response carries `X-Discogs-Ratelimit`, `-Used`, `-Remaining`. Requests are counted in a
  sliding window (`window_s`, 60 by default); more than `rate_limit` in a window gets a 429, like
  Discogs. `max_in_window` is the highest count ever seen; `fail_next(...)` injects 429s or 5xx.
- The data lives in `FakeDiscogs.users` and can be changed between syncs.

Standalone (for `make run`): `python -m tests.fakes.discogs_api --port 8099` serves a demo user
`demo` and the consumer key `demo-key` / `demo-secret`; approving on the authorize page needs no
password. `GET /_fake/stats` shows the counters.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import html
import json
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

from aiohttp import web
from aiohttp.typedefs import Handler

RATE_HEADERS = ("X-Discogs-Ratelimit", "X-Discogs-Ratelimit-Used", "X-Discogs-Ratelimit-Remaining")


def release_info(
    release_id: int,
    title: str,
    *,
    year: int = 2000,
    artist: str = "Some Artist",
    artist_id: int = 1,
    label: str = "Some Label",
    label_id: int = 1,
    fmt: str = "Vinyl",
    genres: list[str] | None = None,
    styles: list[str] | None = None,
) -> dict[str, Any]:
    """The `basic_information` object Discogs attaches to a collection or wantlist item."""
    return {
        "id": release_id,
        "master_id": 0,
        "master_url": None,
        "resource_url": f"https://api.discogs.com/releases/{release_id}",
        "thumb": "",
        "cover_image": "",
        "title": title,
        "year": year,
        "formats": [{"name": fmt, "qty": "1", "descriptions": ["LP"]}],
        "labels": [{"name": label, "catno": "CAT-1", "entity_type": "1", "id": label_id}],
        "artists": [{"name": artist, "anv": "", "join": "", "role": "", "tracks": "", "id": artist_id}],
        "genres": genres or ["Electronic"],
        "styles": styles or ["Techno"],
    }


@dataclass
class FakeUser:
    id: int
    username: str
    collection: list[dict[str, Any]] = field(default_factory=list)
    wants: list[dict[str, Any]] = field(default_factory=list)
    _next_instance: int = 1000

    def add_collected(
        self,
        release_id: int,
        title: str,
        *,
        rating: int = 0,
        folder_id: int = 1,
        date_added: str | None = None,
        instance_id: int | None = None,
        **info: Any,
    ) -> dict[str, Any]:
        if instance_id is None:
            self._next_instance += 1
            instance_id = self._next_instance
        item = {
            "id": release_id,
            "instance_id": instance_id,
            "folder_id": folder_id,
            "rating": rating,
            "date_added": date_added or _date_for(len(self.collection)),
            "basic_information": release_info(release_id, title, **info),
        }
        self.collection.append(item)
        return item

    def add_wanted(
        self,
        release_id: int,
        title: str,
        *,
        rating: int = 0,
        notes: str = "",
        date_added: str | None = None,
        **info: Any,
    ) -> dict[str, Any]:
        item = {
            "id": release_id,
            "resource_url": f"https://api.discogs.com/users/{self.username}/wants/{release_id}",
            "rating": rating,
            "notes": notes,
            "date_added": date_added or _date_for(len(self.wants)),
            "basic_information": release_info(release_id, title, **info),
        }
        self.wants.append(item)
        return item


def _date_for(n: int) -> str:
    """Distinct, increasing Discogs-style timestamps with an offset, like the real API."""
    return time.strftime("%Y-%m-%dT%H:%M:%S-07:00", time.gmtime(1_400_000_000 + n * 3600))


def _pe(value: str) -> str:
    return quote(value, safe="~")


@dataclass
class RequestToken:
    secret: str
    consumer_key: str
    callback: str
    verifier: str | None = None
    username: str | None = None


class FakeDiscogs:
    def __init__(
        self,
        *,
        consumer_key: str = "test-consumer-key",
        consumer_secret: str = "test-consumer-secret",
        rate_limit: int = 60,
        window_s: float = 60.0,
        enforce_rate_limit: bool = True,
    ) -> None:
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.rate_limit = rate_limit
        self.window_s = window_s
        self.enforce_rate_limit = enforce_rate_limit
        self.users: dict[str, FakeUser] = {}
        self.request_tokens: dict[str, RequestToken] = {}
        self.access_tokens: dict[str, tuple[str, str]] = {}  # token -> (secret, username)
        self.seen_nonces: set[str] = set()
        self.signature_methods_seen: set[str] = set()
        self.requests: deque[float] = deque()
        self.request_log: list[tuple[float, str, int]] = []  # (time, path, status)
        self.max_in_window = 0
        self.total_requests = 0
        self.status_counts: dict[int, int] = {}
        self.forced: deque[int] = deque()
        self.always_fail: int | None = None
        self.delay_s = 0.0  # added to every /users/... answer (a slow Discogs)
        # Called with the path after each /users/... answer: lets a test edit data mid-sync.
        self.after_data_request: Callable[[str], None] | None = None
        self.runner: web.AppRunner | None = None
        self.port = 0

    # ---- test controls

    def add_user(self, username: str, user_id: int | None = None) -> FakeUser:
        user = FakeUser(id=user_id or 100 + len(self.users), username=username)
        self.users[username] = user
        return user

    def fail_next(self, *statuses: int) -> None:
        """The next API requests answer these statuses (e.g. 429, 503), one each, in order."""
        self.forced.extend(statuses)

    def reset_counters(self) -> None:
        """Forget the requests seen so far (e.g. the linking calls before measuring a sync)."""
        self.requests.clear()
        self.request_log.clear()
        self.status_counts.clear()
        self.max_in_window = 0
        self.total_requests = 0

    def approve(self, request_token: str, username: str) -> str:
        """What a user clicking "Authorize" does; returns the verifier."""
        rt = self.request_tokens[request_token]
        rt.username = username
        rt.verifier = secrets.token_hex(5)
        return rt.verifier

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def authorize_url(self) -> str:
        return f"{self.base_url}/oauth/authorize"

    # ---- server

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._rate_middleware])
        app.router.add_route("*", "/oauth/request_token", self._request_token)
        app.router.add_get("/oauth/authorize", self._authorize_page)
        app.router.add_post("/oauth/authorize", self._authorize_submit)
        app.router.add_post("/oauth/access_token", self._access_token)
        app.router.add_get("/oauth/identity", self._identity)
        app.router.add_get("/users/{username}/collection/folders", self._folders)
        app.router.add_get("/users/{username}/collection/folders/{folder_id}/releases", self._folder_releases)
        app.router.add_get("/users/{username}/wants", self._wants)
        app.router.add_get("/_fake/stats", self._stats)
        return app

    async def start(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.runner = web.AppRunner(self.app(), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def _count(self) -> int:
        now = time.monotonic()
        self.requests.append(now)
        while self.requests and self.requests[0] <= now - self.window_s:
            self.requests.popleft()
        used = len(self.requests)
        self.max_in_window = max(self.max_in_window, used)
        self.total_requests += 1
        return used

    @web.middleware
    async def _rate_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_fake") or request.path == "/oauth/authorize":
            return await handler(request)  # the browser page and controls are not API calls
        used = self._count()
        resp: web.StreamResponse
        if self.forced:
            status = self.forced.popleft()
            resp = _error(status, "Injected failure")
        elif self.always_fail is not None:
            resp = _error(self.always_fail, "Discogs is down (fake)")
        elif self.enforce_rate_limit and used > self.rate_limit:
            resp = web.Response(status=429, body=b"")  # Discogs: no Retry-After, often no body
        else:
            if self.delay_s and request.path.startswith("/users/"):
                await asyncio.sleep(self.delay_s)
            try:
                resp = await handler(request)
            except web.HTTPException as exc:
                resp = web.Response(status=exc.status, body=exc.body, content_type=exc.content_type)
            if self.after_data_request is not None and request.path.startswith("/users/"):
                self.after_data_request(request.path)
        resp.headers["X-Discogs-Ratelimit"] = str(self.rate_limit)
        resp.headers["X-Discogs-Ratelimit-Used"] = str(min(used, self.rate_limit))
        resp.headers["X-Discogs-Ratelimit-Remaining"] = str(max(0, self.rate_limit - used))
        self.status_counts[resp.status] = self.status_counts.get(resp.status, 0) + 1
        self.request_log.append((time.monotonic(), request.path, resp.status))
        return resp

    # ---- OAuth signature checks (independent of common.discogs_client on purpose)

    async def _oauth(self, request: web.Request) -> dict[str, str]:
        """The verified oauth_* parameters of a request, or a 401."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("OAuth "):
            raise _unauthorized("You must authenticate to access this resource.")
        params: dict[str, str] = {}
        for part in header[len("OAuth ") :].split(","):
            name, sep, value = part.strip().partition("=")
            if not sep or len(value) < 2 or value[0] != '"' or value[-1] != '"':
                raise _unauthorized("Malformed OAuth header")
            params[unquote(name)] = unquote(value[1:-1])
        params.pop("realm", None)
        for required in ("oauth_consumer_key", "oauth_signature_method", "oauth_signature", "oauth_nonce"):
            if required not in params:
                raise _unauthorized(f"Missing {required}")
        if params["oauth_consumer_key"] != self.consumer_key:
            raise _unauthorized("Invalid consumer.")
        token = params.get("oauth_token", "")
        token_secret = ""
        if token:
            if token in self.access_tokens:
                token_secret = self.access_tokens[token][0]
            elif token in self.request_tokens:
                token_secret = self.request_tokens[token].secret
            else:
                raise _unauthorized("Invalid OAuth token.")
        key = f"{_pe(self.consumer_secret)}&{_pe(token_secret)}"
        method = params["oauth_signature_method"]
        self.signature_methods_seen.add(method)
        if method == "PLAINTEXT":
            ok = hmac.compare_digest(params["oauth_signature"], key)
        elif method == "HMAC-SHA1":
            signed = [(k, v) for k, v in params.items() if k != "oauth_signature"]
            signed += list(parse_qsl(request.query_string, keep_blank_values=True))
            if request.content_type == "application/x-www-form-urlencoded" and request.can_read_body:
                signed += list(parse_qsl((await request.read()).decode(), keep_blank_values=True))
            pairs = sorted((_pe(k), _pe(v)) for k, v in signed)
            normalized = "&".join(f"{k}={v}" for k, v in pairs)
            base_url = f"{request.scheme}://{request.host.lower()}{request.raw_path.split('?')[0]}"
            base = "&".join((request.method.upper(), _pe(base_url), _pe(normalized)))
            expected = base64.b64encode(hmac.new(key.encode(), base.encode(), hashlib.sha1).digest()).decode()
            ok = hmac.compare_digest(params["oauth_signature"], expected)
        else:
            raise _unauthorized(f"Unsupported signature method {method}")
        if not ok:
            raise _unauthorized("Invalid signature.")
        if params["oauth_nonce"] in self.seen_nonces:
            raise _unauthorized("Nonce already used.")
        self.seen_nonces.add(params["oauth_nonce"])
        return params

    async def _owner(self, request: web.Request) -> FakeUser:
        params = await self._oauth(request)
        token = params.get("oauth_token", "")
        if token not in self.access_tokens:
            raise _unauthorized("You must authenticate to access this resource.")
        username = request.match_info["username"]
        user = self.users.get(username)
        if user is None:
            raise _json_error(404, "User does not exist or may have been deleted.")
        if self.access_tokens[token][1] != username:
            raise _json_error(403, "You don't have permission to access this resource.")
        return user

    # ---- OAuth endpoints

    async def _request_token(self, request: web.Request) -> web.Response:
        params = await self._oauth(request)
        if params.get("oauth_token"):
            raise _unauthorized("A request token request carries no token.")
        callback = params.get("oauth_callback", "oob")
        token, secret = secrets.token_hex(12), secrets.token_hex(16)
        self.request_tokens[token] = RequestToken(secret, params["oauth_consumer_key"], callback)
        body = urlencode(
            {"oauth_token": token, "oauth_token_secret": secret, "oauth_callback_confirmed": "true"}
        )
        return web.Response(text=body, content_type="application/x-www-form-urlencoded")

    async def _authorize_page(self, request: web.Request) -> web.Response:
        token = request.query.get("oauth_token", "")
        if token not in self.request_tokens:
            return web.Response(status=400, text="Invalid request token.", content_type="text/html")
        options = "".join(f'<option value="{html.escape(u)}">{html.escape(u)}</option>' for u in self.users)
        page = (
            "<!doctype html><title>Authorize application</title>"
            "<h1>Authorize access to your Discogs account?</h1>"
            '<form method="post" action="/oauth/authorize">'
            f'<input type="hidden" name="oauth_token" value="{html.escape(token)}">'
            f'<label>Signed in as <select name="username">{options}</select></label>'
            '<button name="decision" value="allow" id="authorize">Authorize</button>'
            '<button name="decision" value="deny" id="deny">Deny</button></form>'
        )
        return web.Response(text=page, content_type="text/html")

    async def _authorize_submit(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = str(form.get("oauth_token", ""))
        username = str(form.get("username", ""))
        rt = self.request_tokens.get(token)
        if rt is None or username not in self.users:
            return web.Response(status=400, text="Invalid request.", content_type="text/html")
        if form.get("decision") == "deny":
            if rt.callback != "oob":
                raise web.HTTPFound(_with_query(rt.callback, {"denied": token}))
            return web.Response(text="<p>Access denied.</p>", content_type="text/html")
        verifier = self.approve(token, username)
        if rt.callback != "oob":
            raise web.HTTPFound(_with_query(rt.callback, {"oauth_token": token, "oauth_verifier": verifier}))
        return web.Response(
            text=f'<p>Enter this code in the application: <code id="verifier">{verifier}</code></p>',
            content_type="text/html",
        )

    async def _access_token(self, request: web.Request) -> web.Response:
        params = await self._oauth(request)
        token = params.get("oauth_token", "")
        rt = self.request_tokens.get(token)
        if rt is None or rt.verifier is None or rt.username is None:
            raise _unauthorized("Invalid or unauthorized request token.")
        if not hmac.compare_digest(params.get("oauth_verifier", ""), rt.verifier):
            raise _unauthorized("Invalid OAuth verifier.")
        del self.request_tokens[token]
        access, secret = secrets.token_hex(12), secrets.token_hex(16)
        self.access_tokens[access] = (secret, rt.username)
        body = urlencode({"oauth_token": access, "oauth_token_secret": secret})
        return web.Response(text=body, content_type="application/x-www-form-urlencoded")

    async def _identity(self, request: web.Request) -> web.Response:
        params = await self._oauth(request)
        token = params.get("oauth_token", "")
        if token not in self.access_tokens:
            raise _unauthorized("You must authenticate to access this resource.")
        user = self.users[self.access_tokens[token][1]]
        return web.json_response(
            {
                "id": user.id,
                "username": user.username,
                "resource_url": f"https://api.discogs.com/users/{user.username}",
                "consumer_name": "discogsography",
            }
        )

    # ---- data endpoints

    async def _folders(self, request: web.Request) -> web.Response:
        user = await self._owner(request)
        folders: dict[int, int] = {}
        for item in user.collection:
            folders[item["folder_id"]] = folders.get(item["folder_id"], 0) + 1
        body = [{"id": 0, "name": "All", "count": len(user.collection)}]
        body += [{"id": 1, "name": "Uncategorized", "count": folders.pop(1, 0)}]
        body += [{"id": fid, "name": f"Folder {fid}", "count": n} for fid, n in sorted(folders.items())]
        return web.json_response({"folders": body})

    async def _folder_releases(self, request: web.Request) -> web.Response:
        user = await self._owner(request)
        folder_id = int(request.match_info["folder_id"])
        items = [i for i in user.collection if folder_id in (0, i["folder_id"])]
        return self._paginate(request, items, "releases")

    async def _wants(self, request: web.Request) -> web.Response:
        user = await self._owner(request)
        return self._paginate(request, list(user.wants), "wants")

    def _paginate(self, request: web.Request, items: list[dict[str, Any]], key: str) -> web.Response:
        try:
            page = int(request.query.get("page", "1"))
            per_page = min(100, max(1, int(request.query.get("per_page", "50"))))
        except ValueError as exc:
            raise _json_error(400, "page and per_page must be integers") from exc
        if request.query.get("sort") == "added":
            items.sort(key=lambda i: str(i["date_added"]), reverse=request.query.get("sort_order") == "desc")
        pages = max(1, -(-len(items) // per_page))
        if page < 1 or page > pages:
            raise _json_error(404, f"Page {page} is out of range.")
        chunk = items[(page - 1) * per_page : page * per_page]
        base = f"{request.scheme}://{request.host}{request.path}"

        def url(n: int) -> str:
            return f"{base}?{urlencode({'page': n, 'per_page': per_page})}"

        urls: dict[str, str] = {}
        if page > 1:
            urls |= {"first": url(1), "prev": url(page - 1)}
        if page < pages:
            urls |= {"next": url(page + 1), "last": url(pages)}
        pagination = {"page": page, "pages": pages, "per_page": per_page, "items": len(items), "urls": urls}
        resp = web.json_response({"pagination": pagination, key: chunk})
        if urls:
            resp.headers["Link"] = ", ".join(f'<{u}>; rel="{rel}"' for rel, u in urls.items())
        return resp

    async def _stats(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "total_requests": self.total_requests,
                "max_in_window": self.max_in_window,
                "rate_limit": self.rate_limit,
                "window_s": self.window_s,
                "status_counts": {str(k): v for k, v in self.status_counts.items()},
            }
        )


def _with_query(url: str, params: dict[str, str]) -> str:
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


def _json_error(status: int, message: str) -> web.HTTPException:
    exc = web.HTTPException(text=json.dumps({"message": message}), content_type="application/json")
    exc.set_status(status)
    return exc


def _unauthorized(message: str) -> web.HTTPException:
    return _json_error(401, message)


def demo_fake(rate_limit: int = 60) -> FakeDiscogs:
    """The demo data `python -m tests.fakes.discogs_api` serves."""
    fake = FakeDiscogs(consumer_key="demo-key", consumer_secret="demo-secret", rate_limit=rate_limit)
    demo = fake.add_user("demo", 4242)
    for n in range(1, 6):
        demo.add_collected(n, f"Demo Release {n}", rating=n % 6, year=1990 + n, artist=f"Artist {n % 3}")
    for n in range(6, 9):
        demo.add_wanted(n, f"Wanted Release {n}", year=2000 + n)
    return fake


async def _serve(port: int, host: str, rate_limit: int) -> None:
    fake = demo_fake(rate_limit)
    await fake.start(port, host)
    print(f"fake Discogs API on http://{host}:{fake.port} (consumer key demo-key / demo-secret)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a fake Discogs API for demos and tests.")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--rate-limit", type=int, default=60)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, args.host, args.rate_limit))


if __name__ == "__main__":
    main()
