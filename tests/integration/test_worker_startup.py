"""The workers' start-up failures an operator fixes end in one `<service>_cannot_start` line and
exit code 2, never a traceback: a store out of reach, a setting that does not parse, a health
port already taken."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import orjson
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.integration


def start(service: str, **env: str) -> tuple[int, list[dict[str, object]], str]:
    run = subprocess.run(
        [sys.executable, "-m", service],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "CONNECT_ATTEMPTS": "1",
            "LOG_FORMAT": "json",
            "HEALTH_PORT": str(free_port()),
            **env,
        },
        check=False,
    )
    output = run.stdout + run.stderr
    lines = [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]
    return run.returncode, lines, output


def failure(service: str, lines: list[dict[str, object]]) -> str:
    [line] = [line for line in lines if line.get("event") == f"{service}_cannot_start"]
    assert line["level"] == "error"
    return str(line["error"])


@pytest.mark.parametrize(
    ("service", "store"),
    [("graphinator", "neo4j"), ("tableinator", "postgresql"), ("curator", "postgresql")],
)
def test_a_store_out_of_reach(service: str, store: str) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    code, lines, output = start(service, NEO4J_URI=f"bolt://{nowhere}", POSTGRES_ADDRESS=nowhere)
    assert code == 2, output
    assert failure(service, lines).startswith(f"cannot reach {store} at ")
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("service", "name", "value"),
    [("graphinator", "BATCH_SIZE", "lots"), ("extractor", "PUBLISH_WINDOW", "0")],
)
def test_a_setting_that_does_not_parse(service: str, name: str, value: str) -> None:
    code, lines, output = start(service, **{name: value})
    assert code == 2, output
    assert failure(service, lines).startswith(f"invalid setting: {name}: ")
    assert "Traceback" not in output


@pytest.mark.parametrize("service", ["graphinator", "tableinator"])
def test_a_health_port_already_taken(service: str) -> None:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        code, lines, output = start(service, HEALTH_PORT=str(port))
    assert code == 2, output
    assert f"('127.0.0.1', {port})" in failure(service, lines)
    assert "address already in use" in failure(service, lines)
    assert "Traceback" not in output
