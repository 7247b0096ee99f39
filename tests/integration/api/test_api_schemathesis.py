"""Property-based run of schemathesis against /openapi.json of a live api (uvicorn on a free port,
real stores): no 500, every status documented, every body matching its schema."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.api import create_app
from tests.conftest import free_port
from tests.integration.api.conftest import make_settings

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 40
# Routes that reach Discogs itself (tested against tests/fakes): 502 is their contract.
EXTERNAL_PREFIXES = ("/api/oauth",)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def live_api() -> Iterator[str]:
    app = create_app(make_settings())
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "api did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


@pytest.fixture(scope="module")
def auth_headers(live_api: str) -> dict[str, str]:
    email = f"schemathesis-{time.time_ns()}@example.com"
    with httpx.Client(base_url=live_api) as http:
        assert (
            http.post("/api/auth/register", json={"email": email, "password": "12345678"}).status_code == 201
        )
        token = http.post("/api/auth/login", json={"email": email, "password": "12345678"}).json()[
            "access_token"
        ]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def api_schema(live_api: str) -> Any:
    return schemathesis.openapi.from_url(f"{live_api}/openapi.json")


def test_openapi_conformance(api_schema: Any, auth_headers: dict[str, str]) -> None:
    failures: dict[str, str] = {}
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/api/auth/logout":  # would revoke the shared token mid-run
            continue
        if operation.path.startswith(EXTERNAL_PREFIXES):  # call the real Discogs; tested with its fake
            continue
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def run(case: Any) -> None:
            case.call_and_validate(headers=auth_headers, checks=CHECKS)

        try:
            run()
        except Exception as exc:
            failures[f"{operation.method.upper()} {operation.path}"] = str(exc)[:2000]
    assert operations >= 20
    assert not failures, "\n\n".join(f"{op}:\n{msg}" for op, msg in failures.items())
