"""One extractor per data directory: a second one stops at once with the holder's name, touching
nothing; the lock dies with its process, however it ends."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from extractor.lock import DataDirBusyError, hold_data_dir
from tests.conftest import free_port

HOLDER = """
import sys, time
from pathlib import Path
from extractor.lock import hold_data_dir
with hold_data_dir(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def start_holder(data_dir: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data_dir)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_holder_is_refused_and_a_killed_one_leaves_no_stale_lock(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    holder = start_holder(data_dir)
    try:
        with (
            pytest.raises(DataDirBusyError, match=rf"another extractor \(pid {holder.pid} on "),
            hold_data_dir(data_dir),
        ):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)  # no clean-up code runs
        holder.wait()
    with hold_data_dir(data_dir):  # free at once
        assert f"pid {os.getpid()} " in (data_dir / ".extractor.lock").read_text()
    with hold_data_dir(data_dir):  # and again after a normal release
        pass


def test_the_extractor_refuses_a_data_dir_in_use_before_touching_anything(
    tmp_path: Path, samples_dir: Path
) -> None:
    data_dir = tmp_path / "data"
    holder = start_holder(data_dir)
    env = {
        **os.environ,
        "HEALTH_PORT": str(free_port()),
        "CONNECT_ATTEMPTS": "1",
        "LOG_FORMAT": "json",
        # Nothing listens here: had the lock not stopped it, the run would fail differently.
        "AMQP_URL": f"amqp://nobody:nothing@127.0.0.1:{free_port()}/",
    }
    try:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "extractor",
                "--once",
                "--source",
                str(samples_dir),
                "--data-dir",
                str(data_dir),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
    finally:
        holder.kill()
        holder.wait()
    assert run.returncode == 2, run.stdout + run.stderr
    output = run.stdout + run.stderr
    assert "extractor_cannot_start" in output
    assert f"another extractor (pid {holder.pid} on " in output
    assert "Traceback" not in output
    assert sorted(p.name for p in data_dir.iterdir()) == [".extractor.lock"]  # no marker, index or dump


def test_the_extractor_service_refuses_a_taken_health_port_with_a_clear_error(
    tmp_path: Path, samples_dir: Path
) -> None:
    port = free_port()
    env = {**os.environ, "HEALTH_PORT": str(port), "CONNECT_ATTEMPTS": "1", "LOG_FORMAT": "json"}
    with socket.create_server(("127.0.0.1", port)):
        run = subprocess.run(
            [sys.executable, "-m", "extractor", "--source", str(samples_dir), "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
    output = run.stdout + run.stderr
    assert run.returncode == 2, output
    assert "extractor_cannot_start" in output
    assert f"health port {port}" in output
    assert "Traceback" not in output
