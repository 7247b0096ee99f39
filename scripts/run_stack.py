"""`make run`: start every service as its own supervised process and print the URLs.

Each service runs as `python -m <package>` with its log in `.local/logs/<service>.log`; a service
that exits is restarted with back-off. Ctrl-C (or `make stop`, which signals this supervisor)
stops them all cleanly. With `--detach` the supervisor runs in the background and this command
returns once the api that supervisor started answers on 8004 (another process answering there, e.g.
another stack's api, does not count); it fails, pointing at the logs, when the supervisor exits
first or the api does not answer in time.

The demo ingests the sample dumps in `samples/` once (the extractor's state marker makes later
runs skip a completed version) and points the api and curator at a local fake Discogs API, so the
whole product works without the internet. Set `EXTRACTOR_SOURCE_DIR` or `DISCOGS_DATA_URL` to
ingest a real dump instead, and `DEMO_FAKE_DISCOGS=0` to talk to the real Discogs API.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from common.startup import CANNOT_START

ROOT = Path(__file__).resolve().parent.parent
LOCAL = Path(os.environ.get("DISCOGSOGRAPHY_LOCAL_DIR", ROOT / ".local"))
LOGS = LOCAL / "logs"
PIDFILE = LOCAL / "run" / "stack.pid"
DEMO_SOURCE = LOCAL / "demo-source"
DEMO_DATA = LOCAL / "demo-data"  # the demo's own extractor state, apart from a real dump's
FAKE_DISCOGS_PORT = int(os.environ.get("FAKE_DISCOGS_PORT", "8090"))
API_PORT = 8004


@dataclass
class Service:
    name: str
    module: str
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    health_url: str | None = None
    one_shot: bool = False  # a finished one-shot job is not restarted
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    done: bool = False


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None and (ROOT / module.split(".", maxsplit=1)[0]).is_dir()


def demo_source() -> Path:
    """The 2020 sample dumps (a complete version: all four types) as the demo's local source."""
    DEMO_SOURCE.mkdir(parents=True, exist_ok=True)
    for sample in sorted((ROOT / "samples").glob("discogs_20200806_*.xml.gz")):
        link = DEMO_SOURCE / sample.name
        if not link.exists():
            link.symlink_to(sample)
    return DEMO_SOURCE


def graph_is_empty() -> bool:
    """True when Neo4j holds no release (e.g. `make test` emptied the shared local stores)."""
    from neo4j import GraphDatabase  # noqa: PLC0415

    from common.settings import Neo4jSettings  # noqa: PLC0415 - only the demo needs it

    settings = Neo4jSettings()
    auth = (settings.neo4j_username, settings.neo4j_password.get_secret_value())
    try:
        with GraphDatabase.driver(settings.neo4j_uri, auth=auth) as driver:
            records, _, _ = driver.execute_query("MATCH (r:Release) RETURN count(r) > 0 AS any")
            return not records[0]["any"]
    except Exception:  # an unreachable store is reported by the services themselves
        return False


def demo_data_dir() -> Path:
    """The demo extractor's data dir; its state is reset when the stores were emptied since, so the
    samples are ingested again instead of being skipped as an already completed version."""
    if DEMO_DATA.exists() and graph_is_empty():
        shutil.rmtree(DEMO_DATA)
        print("[run] the graph is empty: the demo samples will be ingested again")
    DEMO_DATA.mkdir(parents=True, exist_ok=True)
    return DEMO_DATA


def services() -> list[Service]:
    fake = os.environ.get("DEMO_FAKE_DISCOGS", "1") == "1"
    discogs_env: dict[str, str] = {}
    if fake:
        base = f"http://127.0.0.1:{FAKE_DISCOGS_PORT}"
        discogs_env = {"DISCOGS_API_URL": base, "DISCOGS_AUTHORIZE_URL": f"{base}/oauth/authorize"}
    # The extractor stays up after ingesting (health on 8000) and re-checks its source periodically.
    extractor_args: list[str] = []
    if os.environ.get("EXTRACTOR_SOURCE_DIR"):
        extractor_args = ["--source", os.environ["EXTRACTOR_SOURCE_DIR"]]
    elif not os.environ.get("DISCOGS_DATA_URL"):
        extractor_args = ["--source", str(demo_source()), "--data-dir", str(demo_data_dir())]
    listed = [
        Service("fake-discogs", "tests.fakes.discogs_api", ["--port", str(FAKE_DISCOGS_PORT)])
        if fake
        else None,
        Service("graphinator", "graphinator", health_url="http://127.0.0.1:8001/health"),
        Service("tableinator", "tableinator", health_url="http://127.0.0.1:8002/health"),
        Service("extractor", "extractor", extractor_args, health_url="http://127.0.0.1:8000/health"),
        Service("api", "api", env=discogs_env, health_url=f"http://127.0.0.1:{API_PORT}/health"),
        Service("curator", "curator", env=discogs_env, health_url="http://127.0.0.1:8011/health"),
        Service("dashboard", "dashboard", health_url="http://127.0.0.1:8003/health"),
    ]
    result = []
    for service in listed:
        if service is None:
            continue
        if not _available(service.module):
            print(f"[run] {service.name}: module {service.module} not present yet, skipped")
            continue
        result.append(service)
    return result


def start(service: Service) -> None:
    LOGS.mkdir(parents=True, exist_ok=True)
    log = (LOGS / f"{service.name}.log").open("ab")
    env = {**os.environ, "LOG_FORMAT": os.environ.get("LOG_FORMAT", "json"), **service.env}
    service.process = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
        [sys.executable, "-m", service.module, *service.args],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    log.close()


def cannot_start_reason(log: Path) -> str | None:
    """Why a service last said it cannot start (the `error` of the last `<service>_cannot_start`
    line near the end of its log), so the terminal shows it without opening the log."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 65536))
            tail = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(tail):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and str(event.get("event", "")).endswith("_cannot_start"):
            return str(event.get("error", ""))
    return None


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback health URL
            return bool(response.status == 200)
    except OSError:
        return False


def port_owner(port: int) -> int | None:
    """The pid of the process listening on TCP `port` on this machine (Linux /proc), or None."""
    sockets: set[str] = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        with contextlib.suppress(OSError):
            for row in table.read_text().splitlines()[1:]:
                fields = row.split()  # sl local_address rem_address st ... inode
                if fields[3] == "0A" and int(fields[1].rpartition(":")[2], 16) == port:  # 0A: LISTEN
                    sockets.add(f"socket:[{fields[9]}]")
    if not sockets:
        return None
    for process in Path("/proc").iterdir():
        if not process.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in sockets for fd in (process / "fd").iterdir()):
                return int(process.name)
        except OSError:  # it exited meanwhile, or is not ours to look into
            continue
    return None


def parent_of(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    ppid = next((line.split()[1] for line in status.splitlines() if line.startswith("PPid:")), None)
    return int(ppid) if ppid is not None else None


def api_is_ours(supervisor: int, port: int = API_PORT) -> bool:
    """The api on `port` answers and is the one `supervisor` started: the process listening there is
    its child. Another stack's api on the same port (whose own api then cannot bind) must not pass
    for ours."""
    if not answers(f"http://127.0.0.1:{port}/health"):
        return False
    if not Path("/proc/net/tcp").exists():  # not Linux: the answer is all there is to go on
        return True
    owner = port_owner(port)
    return owner is not None and parent_of(owner) == supervisor


def stop_all(running: list[Service]) -> None:
    for service in running:
        if service.process and service.process.poll() is None:
            service.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for service in running:
        if service.process is None:
            continue
        try:
            service.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            service.process.kill()
    print("[run] all services stopped")


def print_urls() -> None:
    print(
        "\n"
        "  web UI (explore)     http://127.0.0.1:8004/\n"
        "  api docs (OpenAPI)   http://127.0.0.1:8004/docs\n"
        "  api health           http://127.0.0.1:8004/health   http://127.0.0.1:8005/health\n"
        "  dashboard            http://127.0.0.1:8003/\n"
        "  RabbitMQ management  http://127.0.0.1:15672/  (discogsography / discogsography)\n"
        "  Neo4j (Bolt)         bolt://127.0.0.1:7687     (neo4j / discogsography)\n"
        f"  logs                 {LOGS}/\n"
        "  stop                 Ctrl-C, or `make stop`\n"
    )


def configure_demo_discogs() -> None:
    """Point the app's Discogs consumer credentials at the local fake (its demo key), once."""
    if os.environ.get("DEMO_FAKE_DISCOGS", "1") != "1" or not _available("api"):
        return
    for key, value in (("discogs_consumer_key", "demo-key"), ("discogs_consumer_secret", "demo-secret")):
        subprocess.run(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "api.admin_cli", "set-config", key, value],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
    print("[run] Discogs consumer key set to the local fake's demo app (user `demo`)")


def is_supervisor(pid: int) -> bool:
    """`pid` runs this script. A pid file left by a supervisor that did not end cleanly (a reboot,
    SIGKILL) may name a process that has nothing to do with us since; it must not be signalled."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists() and _alive(pid)  # no /proc: the pid is all we have
    except OSError:
        return False
    return any(Path(arg.decode(errors="replace")).name == Path(__file__).name for arg in cmdline.split(b"\0"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    return True


def running_supervisor() -> int | None:
    """The pid of a supervisor that is already running, if any (a stale pid file is removed)."""
    try:
        pid = int(PIDFILE.read_text())
    except (FileNotFoundError, ValueError):
        return None
    if not is_supervisor(pid):
        PIDFILE.unlink(missing_ok=True)
        return None
    return pid


def supervise() -> int:
    if (pid := running_supervisor()) is not None:
        print(f"[run] already running (supervisor pid {pid}); `make stop` first")
        print_urls()
        return 0
    configure_demo_discogs()
    running = services()
    PIDFILE.parent.mkdir(parents=True, exist_ok=True)
    PIDFILE.write_text(str(os.getpid()))
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    for service in running:
        start(service)
        print(f"[run] started {service.name} (pid {service.process.pid if service.process else '?'})")
    deadline = time.monotonic() + 60
    while not (ours := api_is_ours(os.getpid())) and time.monotonic() < deadline and not stopping:
        time.sleep(0.5)
    if not ours and not stopping:
        print(f"[run] the api did not answer within 60s; see {LOGS / 'api.log'}")
    print_urls()
    sys.stdout.flush()
    try:
        while not stopping:
            now = time.monotonic()
            for service in running:
                if service.done or service.process is None:
                    continue
                code = service.process.poll()
                if code is None:
                    continue
                if service.one_shot and code == 0:
                    service.done = True
                    print(f"[run] {service.name} finished")
                    continue
                if service.next_start == 0.0:
                    service.restarts += 1
                    delay = min(30.0, 2.0**service.restarts)
                    service.next_start = now + delay
                    log = LOGS / f"{service.name}.log"
                    why = cannot_start_reason(log) if code == CANNOT_START else None
                    print(
                        f"[run] {service.name} exited with {code}"
                        + (f" (cannot start: {why})" if why else "")
                        + f"; restart in {delay:.0f}s (see {log})"
                    )
                elif now >= service.next_start:
                    service.next_start = 0.0
                    start(service)
            time.sleep(0.5)
    finally:
        stop_all(running)
        with contextlib.suppress(FileNotFoundError):
            PIDFILE.unlink()
    return 0


def stop_running() -> int:
    pid = running_supervisor()
    if pid is None:
        print("[run] nothing to stop (no supervisor running)")
        return 0
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        PIDFILE.unlink(missing_ok=True)
        print("[run] supervisor was not running")
        return 0
    for _ in range(60):
        if not PIDFILE.exists():
            break
        time.sleep(0.5)
    print("[run] stopped")
    return 0


def detach() -> int:
    if (pid := running_supervisor()) is not None:
        print(f"[run] already running (supervisor pid {pid}); `make stop` first")
        print_urls()
        return 0
    LOGS.mkdir(parents=True, exist_ok=True)
    log = (LOGS / "supervisor.log").open("ab")
    supervisor = subprocess.Popen(  # noqa: S603 - this same script
        [sys.executable, __file__], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    return wait_for_api(supervisor, timeout=90)


def wait_for_api(supervisor: subprocess.Popen[bytes], timeout: float, port: int = API_PORT) -> int:
    """0 (the URLs printed) once the api that `supervisor` started answers on `port`; 1, saying
    why, when the supervisor exits first or the time runs out."""
    logs = f"see {LOGS / 'supervisor.log'} and {LOGS / 'api.log'}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (code := supervisor.poll()) is not None:
            print(f"[run] the supervisor exited with code {code} before its api answered; {logs}")
            return 1
        if api_is_ours(supervisor.pid, port):
            print_urls()
            return 0
        time.sleep(0.5)
    owner = port_owner(port)
    if owner is not None and parent_of(owner) != supervisor.pid:
        print(f"[run] 127.0.0.1:{port} is held by another process (pid {owner}), not by this stack's api")
    print(
        f"[run] the api did not answer within {timeout:.0f}s; {logs}. "
        f"The supervisor (pid {supervisor.pid}) keeps trying; `make stop` stops it"
    )
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stop", action="store_true", help="stop a running supervisor")
    parser.add_argument("--detach", action="store_true", help="run in the background and return")
    args = parser.parse_args()
    if args.stop:
        return stop_running()
    if args.detach:
        return detach()
    return supervise()


if __name__ == "__main__":
    sys.exit(main())
