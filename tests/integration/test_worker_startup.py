"""The services' start-up failures an operator fixes end in one `<service>_cannot_start` line and
exit code 2, never a traceback: a store out of reach, a setting that does not parse, a port already
taken. The workers run `common.startup.run_worker`, the api and the dashboard `run_app`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import httpx
import orjson
import pytest

from tests.conftest import free_port
from tests.integration.dashboard.test_app import start_dashboard, stop, wait_ready

pytestmark = pytest.mark.integration


def environment(**env: str) -> dict[str, str]:
    return {
        **os.environ,
        "CONNECT_ATTEMPTS": "1",
        "LOG_FORMAT": "json",
        # Every port a service would bind, free, so no test depends on 8000-8011 being free.
        "HEALTH_PORT": str(free_port()),
        "API_PORT": str(free_port()),
        "DASHBOARD_PORT": str(free_port()),
        **env,
    }


def start(service: str, **env: str) -> tuple[int, list[dict[str, object]], str]:
    run = subprocess.run(
        [sys.executable, "-m", service],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment(**env),
        check=False,
    )
    output = run.stdout + run.stderr
    lines = [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]
    return run.returncode, lines, output


def failure(service: str, lines: list[dict[str, object]]) -> str:
    [line] = [line for line in lines if line.get("event") == f"{service}_cannot_start"]
    assert line["level"] == "error"
    return str(line["error"])


def out_of_reach(store: str) -> dict[str, str]:
    """The setting that points `store` at a closed port."""
    nowhere = f"127.0.0.1:{free_port()}"
    return {
        "neo4j": {"NEO4J_URI": f"bolt://{nowhere}"},
        "postgresql": {"POSTGRES_ADDRESS": nowhere},
    }[store]


@pytest.mark.parametrize(
    ("service", "store"),
    [
        ("graphinator", "neo4j"),
        ("tableinator", "postgresql"),
        ("curator", "postgresql"),
        ("api", "postgresql"),
        ("api", "neo4j"),  # after PostgreSQL and Redis answered: they are closed again
    ],
)
def test_a_store_out_of_reach(service: str, store: str) -> None:
    code, lines, output = start(service, **out_of_reach(store))
    assert code == 2, output
    assert failure(service, lines).startswith(f"cannot reach {store} at ")
    assert "Traceback" not in output


def test_the_dashboard_starts_without_its_stores() -> None:
    """It shows a store that is down as down; only a bad setting or a taken port stop it."""
    port = free_port()
    process = start_dashboard(port, **out_of_reach("neo4j"), **out_of_reach("postgresql"))
    try:
        wait_ready(f"http://127.0.0.1:{port}", process)
        latest = httpx.get(f"http://127.0.0.1:{port}/api/metrics", timeout=5).json()
        assert (latest["neo4j"]["status"], latest["postgres"]["status"]) == ("down", "down")
    finally:
        stop(process)


@pytest.mark.parametrize(
    ("service", "name", "value"),
    [
        ("graphinator", "BATCH_SIZE", "lots"),
        ("extractor", "PUBLISH_WINDOW", "0"),
        ("api", "JWT_EXPIRE_MINUTES", "0"),
        ("dashboard", "DASHBOARD_COLLECT_INTERVAL", "5"),
    ],
)
def test_a_setting_that_does_not_parse(service: str, name: str, value: str) -> None:
    code, lines, output = start(service, **{name: value})
    assert code == 2, output
    assert failure(service, lines).startswith(f"invalid setting: {name}: ")
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("service", "name"),
    [
        ("graphinator", "HEALTH_PORT"),
        ("tableinator", "HEALTH_PORT"),
        ("api", "API_PORT"),  # taken before the lifespan connects anything
        ("api", "HEALTH_PORT"),  # taken when the lifespan starts the health server
        ("dashboard", "DASHBOARD_PORT"),
    ],
)
def test_a_port_already_taken(service: str, name: str) -> None:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        code, lines, output = start(service, **{name: str(port)})
    assert code == 2, output
    assert f"('127.0.0.1', {port})" in failure(service, lines)
    assert "address already in use" in failure(service, lines)
    assert "Traceback" not in output


def test_any_other_failure_of_the_api_lifespan_keeps_its_traceback() -> None:
    code, lines, output = start("api", ENCRYPTION_KEYS=" ")
    assert code == 3, output
    assert "Traceback" in output
    assert "at least one non-empty encryption key is required" in output
    assert not [line for line in lines if line.get("event") == "api_cannot_start"]
