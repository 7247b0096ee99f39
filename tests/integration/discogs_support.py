"""Helpers for the Discogs OAuth / sync / curator tests: the api over ASGI with its real lifespan,
the fake Discogs server, the curator as a real worker process, and users with tokens."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from api.api import create_app
from api.queries.user_queries import set_admin, set_app_config
from api.settings import ApiSettings
from common.amqp import declare_sync_topology
from common.crypto import SecretBox
from tests.conftest import REPO_ROOT, free_port
from tests.fakes.discogs_api import FakeDiscogs

JWT_SECRET = "test-secret-key-that-is-long-enough-0123456789"
ENCRYPTION_KEYS = "test-encryption-key-for-discogs-sync"
API_BASE = "http://api.test"
TERMINAL = {"completed", "failed"}


def api_settings(fake: FakeDiscogs, **overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "JWT_SECRET_KEY": JWT_SECRET,
        "ENCRYPTION_KEYS": ENCRYPTION_KEYS,
        "LOGIN_RATE_LIMIT": 100_000,
        "REGISTER_RATE_LIMIT": 100_000,
        "CONNECT_ATTEMPTS": 2,
        "DISCOGS_API_URL": fake.base_url,
        "DISCOGS_AUTHORIZE_URL": fake.authorize_url,
    }
    values.update(overrides)
    return ApiSettings(**values)


def secret_box() -> SecretBox:
    return SecretBox([ENCRYPTION_KEYS])


@asynccontextmanager
async def running_api(settings: ApiSettings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("127.0.0.1", 40001))
        async with httpx.AsyncClient(transport=transport, base_url=API_BASE) as client:
            yield app, client


async def new_user(client: httpx.AsyncClient, prefix: str = "user") -> tuple[str, dict[str, str]]:
    """Register and log in a fresh user; returns (email, auth headers)."""
    email = f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"
    password = "correct horse battery"
    resp = await client.post("/api/auth/register", json={"email": email, "password": password})
    assert resp.status_code == 201, resp.text
    resp = await client.post("/api/auth/login", json={"email": email, "password": password})
    assert resp.status_code == 200, resp.text
    return email, {"Authorization": f"Bearer {resp.json()['access_token']}"}


async def configure_consumer_key(
    client: httpx.AsyncClient, pool: Any, fake: FakeDiscogs, via_http: bool = True
) -> None:
    """Set the Discogs consumer key/secret: through the admin API (an admin made with the DB
    helper), or straight through the query helper."""
    if not via_http:
        async with pool.connection() as conn:
            await set_app_config(conn, secret_box(), "discogs_consumer_key", fake.consumer_key)
            await set_app_config(conn, secret_box(), "discogs_consumer_secret", fake.consumer_secret)
        return
    email, headers = await new_user(client, "admin")
    async with pool.connection() as conn:
        await set_admin(conn, email, True)
    for key, value in (
        ("discogs_consumer_key", fake.consumer_key),
        ("discogs_consumer_secret", fake.consumer_secret),
    ):
        resp = await client.put(f"/api/admin/config/{key}", json={"value": value}, headers=headers)
        assert resp.status_code == 200, resp.text


async def approve_on_discogs(fake: FakeDiscogs, authorize_url: str, username: str) -> httpx.Response:
    """What the user does on discogs.com: open the authorize page and click "Authorize"."""
    async with httpx.AsyncClient() as browser:
        page = await browser.get(authorize_url)
        assert page.status_code == 200, page.text
        token = re.search(r'name="oauth_token" value="([^"]+)"', page.text)
        assert token is not None
        return await browser.post(
            fake.authorize_url,
            data={"oauth_token": token.group(1), "username": username, "decision": "allow"},
        )


async def link_discogs(
    client: httpx.AsyncClient, fake: FakeDiscogs, headers: dict[str, str], username: str
) -> dict[str, Any]:
    """The out-of-band flow end to end; returns the verify response body."""
    resp = await client.get("/api/oauth/authorize/discogs", headers=headers)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    page = await approve_on_discogs(fake, body["authorize_url"], username)
    match = re.search(r'<code id="verifier">([^<]+)</code>', page.text)
    assert match is not None, page.text
    resp = await client.post(
        "/api/oauth/verify/discogs",
        json={"state": body["state"], "oauth_verifier": match.group(1)},
        headers=headers,
    )
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = resp.json()
    return result


async def wait_for_sync(
    client: httpx.AsyncClient, headers: dict[str, str], sync_id: str, timeout: float = 90.0
) -> dict[str, Any]:
    """Poll GET /api/sync/{id} until the sync is completed or failed."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        resp = await client.get(f"/api/sync/{sync_id}", headers=headers)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        if body["status"] in TERMINAL:
            return body
        assert asyncio.get_running_loop().time() < deadline, f"sync still {body['status']}: {body}"
        await asyncio.sleep(0.2)


async def purge_sync_queue(amqp_connection: Any) -> None:
    channel = await amqp_connection.channel()
    _, queue = await declare_sync_topology(channel)
    await queue.purge()
    await channel.close()


class CuratorProcess:
    """`python -m curator` as a real worker process, on a free health port."""

    # Every process started and not yet stopped: `kill_all` ends them after each test, so a test
    # that fails half-way never leaves a worker consuming the next tests' sync requests.
    running: ClassVar[set[CuratorProcess]] = set()

    def __init__(self, fake: FakeDiscogs, **env: Any) -> None:
        self.health_port = free_port()
        self.env = {
            **os.environ,
            "HEALTH_PORT": str(self.health_port),
            "ENCRYPTION_KEYS": ENCRYPTION_KEYS,
            "DISCOGS_API_URL": fake.base_url,
            "DISCOGS_RATE_LIMIT": "3",
            "DISCOGS_RATE_WINDOW_S": "3",
            "DISCOGS_RETRY_AFTER_S": "1",
            "DISCOGS_ERROR_BACKOFF_S": "0.1",
            "DISCOGS_MAX_ERROR_RETRIES": "1",
            "SYNC_HEARTBEAT_INTERVAL_S": "0.5",
            "SYNC_STALE_AFTER_S": "3",
            "SYNC_REAPER_INTERVAL_S": "1",
            "CONNECT_ATTEMPTS": "3",
            "LOG_FORMAT": "json",
            **{k: str(v) for k, v in env.items()},
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = REPO_ROOT / ".local" / f"curator-test-{self.health_port}.log"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - a long-running child, not awaited
            [sys.executable, "-m", "curator"], env=self.env, cwd=REPO_ROOT, stdout=log, stderr=log
        )
        CuratorProcess.running.add(self)
        deadline = asyncio.get_running_loop().time() + 60
        async with httpx.AsyncClient() as http:
            while True:
                assert self.proc.poll() is None, f"curator exited: {self.log_path.read_text()[-3000:]}"
                try:
                    if (await http.get(f"{self.health_url}/ready")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                assert asyncio.get_running_loop().time() < deadline, "curator never became ready"
                await asyncio.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: a crash, no clean-up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        CuratorProcess.running.discard(self)
        self._report_log()

    @classmethod
    def kill_all(cls) -> None:
        for process in list(cls.running):
            process.kill()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            for _ in range(150):
                if self.proc.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            else:
                self.kill()
        CuratorProcess.running.discard(self)
        self._report_log()

    def _report_log(self) -> None:
        """Print the log's tail (captured by pytest, shown only when the test failed) and delete
        the file, so test runs leave no logs behind."""
        if not self.log_path.exists():
            return
        tail = "\n".join(self.logs().splitlines()[-40:])
        print(f"--- curator log ({self.log_path.name}), last lines:\n{tail}")
        self.log_path.unlink(missing_ok=True)

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""
