"""`make run-detached` reports success only when the api its own supervisor started answers: not
when another process (another stack's api) answers on the port, and not after the supervisor
exited. Fake supervisors and apis on free ports stand in for the real stack on 8004."""

from __future__ import annotations

import functools
import http.server
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import run_stack
from tests.conftest import free_port

# A stand-in for the supervisor: starts its arguments (the "api") as its child, says the child's
# pid, and waits for it.
SUPERVISOR = (
    "import subprocess, sys; api = subprocess.Popen(sys.argv[1:]); print(api.pid, flush=True); api.wait()"
)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "health").write_text("ok")
    return tmp_path


@pytest.fixture
def foreign_api(site: Path) -> Iterator[int]:
    """An api answering /health from this test process, which no supervisor started."""
    port = free_port()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()


def python(code: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE)


def end(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=10)


def test_port_owner_is_the_listening_process(foreign_api: int) -> None:
    assert run_stack.port_owner(foreign_api) == os.getpid()
    assert run_stack.port_owner(free_port()) is None


def test_success_once_the_supervisors_own_api_answers(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    serve = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(site), str(port)]
    supervisor = python(SUPERVISOR, *serve)  # an "api" that answers /health from `site`
    assert supervisor.stdout is not None
    api = int(supervisor.stdout.readline())
    try:
        assert run_stack.wait_for_api(supervisor, timeout=30, port=port) == 0
        assert run_stack.api_is_ours(supervisor.pid, port)
        assert not run_stack.api_is_ours(os.getpid(), port)  # the api is not this process's child
    finally:
        os.kill(api, signal.SIGTERM)
        supervisor.wait(timeout=10)
    assert "web UI" in capsys.readouterr().out


def test_another_process_answering_on_the_port_is_not_success(
    foreign_api: int, capsys: pytest.CaptureFixture[str]
) -> None:
    supervisor = python("import time; time.sleep(60)")  # alive, but its api never binds the port
    try:
        assert not run_stack.api_is_ours(supervisor.pid, foreign_api)
        assert run_stack.wait_for_api(supervisor, timeout=2, port=foreign_api) == 1
    finally:
        end(supervisor)
    out = capsys.readouterr().out
    assert f"127.0.0.1:{foreign_api} is held by another process (pid {os.getpid()})" in out
    assert "did not answer within 2s" in out
    assert "api.log" in out
    assert "web UI" not in out


def test_a_supervisor_that_exits_early_fails_at_once(
    foreign_api: int, capsys: pytest.CaptureFixture[str]
) -> None:
    supervisor = python("raise SystemExit(3)")
    supervisor.wait(timeout=10)
    assert run_stack.wait_for_api(supervisor, timeout=30, port=foreign_api) == 1
    out = capsys.readouterr().out
    assert "the supervisor exited with code 3 before its api answered" in out
    assert "supervisor.log" in out
    assert "web UI" not in out


def test_the_reason_a_service_cannot_start_is_read_from_its_log(tmp_path: Path) -> None:
    """The supervisor prints it with the restart notice: the last `_cannot_start` line's error."""
    log = tmp_path / "api.log"
    assert run_stack.cannot_start_reason(log) is None  # no log yet
    lines = [
        '{"event": "api_cannot_start", "error": "cannot reach postgresql at 127.0.0.1:1 (old)"}',
        "a plain-text warning from a library",
        '{"event": "api_cannot_start", "error": "invalid setting: api_port: too big"}',
        '{"event": "api_stopped"}',
        "x" * 70_000,  # a long line before the end does not hide the reason
    ]
    log.write_text("\n".join(lines[:4]) + "\n")
    assert run_stack.cannot_start_reason(log) == "invalid setting: api_port: too big"
    log.write_text("\n".join(lines) + "\n" + lines[2] + "\n")
    assert run_stack.cannot_start_reason(log) == "invalid setting: api_port: too big"
    log.write_text('{"event": "api_started"}\n')
    assert run_stack.cannot_start_reason(log) is None


def test_a_stale_pid_file_names_no_supervisor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pid file whose pid now belongs to another process (after a reboot or a SIGKILL) is removed,
    and `make stop` signals nothing; a live supervisor is still found."""
    pidfile = tmp_path / "stack.pid"
    monkeypatch.setattr(run_stack, "PIDFILE", pidfile)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pidfile.write_text(str(other.pid))
        assert run_stack.running_supervisor() is None and not pidfile.exists()
        pidfile.write_text(str(other.pid))
        assert run_stack.stop_running() == 0
        assert other.poll() is None  # not signalled
    finally:
        other.kill()
        other.wait()
    script = tmp_path / "run_stack.py"  # named as the supervisor's script
    script.write_text("import time; print('up', flush=True); time.sleep(60)")
    supervisor = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE)
    try:
        assert supervisor.stdout is not None and supervisor.stdout.readline() == b"up\n"  # it has exec'd
        pidfile.write_text(str(supervisor.pid))
        assert run_stack.running_supervisor() == supervisor.pid
    finally:
        supervisor.kill()
        supervisor.wait()
