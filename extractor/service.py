"""The extractor service: find a dump version, download + verify it, parse + publish it, repeat.

Modes: `source_dir` (a local directory of `discogs_YYYYMMDD_<type>.xml[.gz]`, the demo and the
tests), `source_files` (such files named one by one, of one version) or the dump host at
`DISCOGS_DATA_URL`. `once` runs one cycle and returns whether the
version is completed; otherwise a new cycle runs every `CHECK_INTERVAL_HOURS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
from collections.abc import Sequence
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry

from common.errors import ServiceUnavailableError
from common.health import HealthServer
from common.logging import get_logger
from common.retry import connect_with_retry, event_set_within
from common.startup import CANNOT_START
from extractor import native
from extractor.backpressure import QueueGate
from extractor.discovery import choose_local_version, choose_version, discover, version_of_files
from extractor.download import DownloadError, download_file, fetch_checksums
from extractor.fast_publisher import FastPublisher
from extractor.http import RetryBudgetExceededError
from extractor.lock import DataDirBusyError, hold_data_dir
from extractor.progress import ExtractorMetrics, ProgressReporter
from extractor.publisher import PublishError, RecordPublisher
from extractor.runner import VersionRunner
from extractor.settings import ExtractorSettings
from extractor.state import StateStore

log = get_logger(__name__)


class ExtractorService:
    def __init__(
        self,
        settings: ExtractorSettings,
        *,
        source_dir: Path | None = None,
        source_files: Sequence[Path] | None = None,
        once: bool = False,
        reprocess: bool = False,
    ) -> None:
        self.settings = settings
        self.source_dir = source_dir if source_dir is not None else settings.source_dir
        self.source_files = list(source_files) if source_files else None
        self.once = once
        # Extract the first chosen version again even if its marker says completed (once).
        self._reprocess = reprocess
        self.registry = CollectorRegistry()
        self.metrics = ExtractorMetrics(self.registry)
        self.reporter = ProgressReporter(self.metrics, settings.progress_log_interval_s)
        url = settings.amqp_url.get_secret_value()
        self.publisher: RecordPublisher | FastPublisher
        if settings.amqp_publisher == "fast" and url.startswith("amqp://"):
            self.publisher = FastPublisher(url, settings.publish_window)
        else:
            self.publisher = RecordPublisher(url, settings.publish_window)
        self.gate = (
            QueueGate(url, settings.queue_max_records, settings.message_records)
            if settings.queue_max_records
            else None
        )
        self.health = HealthServer(
            "extractor",
            settings.health_host,
            settings.health_port,
            ready_checks={"rabbitmq": self.publisher.ping},
            status=self.reporter.status,
            registry=self.registry,
        )
        self._stop = asyncio.Event()

    # --- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until stopped (or one cycle with `once`); the process exit code."""
        try:
            await self.health.start()
        except OSError as exc:  # the port is taken, e.g. by the extractor service of `make run`
            port = self.settings.health_port
            if not self.once:
                log.error("extractor_cannot_start", error=f"health port {port}: {exc.strerror}")
                return CANNOT_START
            # A one-off run by hand still does its work; only its /health is missing.
            log.warning("health_server_not_started", port=port, reason=exc.strerror, advice="set HEALTH_PORT")
        native.log_status()
        try:
            await self._connect()
            while True:
                try:
                    completed = await self.cycle()
                except (ConnectionError, OSError, PublishError) as exc:
                    log.error("cycle_failed", error=str(exc))
                    completed = False
                if self.once:
                    return 0 if completed else 1
                wait_s = self.settings.check_interval_hours * 3600
                if not completed:
                    wait_s = min(wait_s, self.settings.retry_interval_minutes * 60)
                log.info("next_check", in_seconds=round(wait_s), after_success=completed)
                if await event_set_within(self._stop, wait_s):
                    return 0
                # A fresh connection per cycle: nothing to keep alive across a day-long sleep.
                await self.publisher.close()
                if self.gate is not None:
                    await self.gate.close()
                try:
                    await self._connect()
                except ServiceUnavailableError as exc:
                    log.error("rabbitmq_unreachable", error=str(exc))  # the next cycle fails fast
        except ServiceUnavailableError as exc:
            log.error("extractor_cannot_start", error=str(exc))
            return CANNOT_START
        finally:
            await self.publisher.close()
            if self.gate is not None:
                await self.gate.close()
            await self.health.stop()

    async def _connect(self) -> None:
        await connect_with_retry(
            "rabbitmq",
            "AMQP_URL",
            self.publisher.connect,
            self.settings.connect_attempts,
            self.settings.connect_backoff_max_s,
        )

    def stop(self) -> None:
        self._stop.set()

    # --- one cycle ---------------------------------------------------------------------------

    async def cycle(self) -> bool:
        if self.source_files is not None:
            return await self._cycle_files(self.source_files)
        if self.source_dir is not None:
            return await self._cycle_local(self.source_dir)
        return await self._cycle_remote()

    async def _cycle_local(self, source_dir: Path) -> bool:
        chosen = choose_local_version(source_dir)
        if chosen is None:
            log.warning("no_dump_in_source_dir", source_dir=str(source_dir))
            return False
        return await self._run_local(*chosen, source=str(source_dir))

    async def _cycle_files(self, paths: list[Path]) -> bool:
        try:
            version, files = version_of_files(paths)
        except ValueError as exc:  # checked at start; a file can still vanish before a later cycle
            log.error("source_files_unusable", error=str(exc))
            return False
        return await self._run_local(version, files, source=", ".join(str(p) for p in paths))

    async def _run_local(self, version: str, files: dict[str, Path], source: str) -> bool:
        log.info("version_chosen", version=version, source=source, types=sorted(files))
        self._restart_if_asked(version)
        return await self._run_version(version, files, source=source)

    async def _cycle_remote(self) -> bool:
        s = self.settings
        retry: dict[str, float] = {
            "attempts": s.download_attempts,
            "backoff": s.download_backoff_s,
            "max_wait": s.download_max_wait_s,
        }
        timeout = httpx.Timeout(s.http_timeout_s, connect=min(30.0, s.http_timeout_s))
        async with httpx.AsyncClient(
            timeout=timeout, follow_redirects=True, headers={"User-Agent": s.user_agent}
        ) as client:
            try:
                versions = await discover(client, s.discogs_data_url, retry=retry)
            except (httpx.HTTPError, RetryBudgetExceededError) as exc:
                log.error("discovery_failed", url=s.discogs_data_url, error=str(exc))
                return False
            chosen = choose_version(versions)
            if chosen is None:
                log.warning("no_complete_version", url=s.discogs_data_url, seen=[v.version for v in versions])
                return False
            version = chosen.version
            self._restart_if_asked(version)
            store = StateStore(s.data_dir, version)
            state = store.load()
            if state.completed:
                log.info("version_already_completed", version=version)
                self.reporter.start_version(version, list(chosen.files))
                for t in chosen.files:
                    self.reporter.set_phase(t, "completed")
                return True
            log.info("version_chosen", version=version, url=s.discogs_data_url)
            assert chosen.checksum is not None
            try:
                checksums = await fetch_checksums(client, chosen.checksum.url, **retry)
            except httpx.HTTPError as exc:
                log.error("checksum_fetch_failed", version=version, error=str(exc))
                return False
            directory = s.data_dir / version
            paths: dict[str, Path] = {}
            self.reporter.start_version(version, list(chosen.files))
            for data_type, remote in chosen.files.items():
                fstate = state.file(data_type)
                dest = directory / remote.name
                expected = checksums.get(remote.name)
                if expected is None:
                    fstate.phase = "failed"
                    fstate.error = f"{remote.name} is not listed in {chosen.checksum.name}"
                    store.save(state)
                    self.reporter.set_phase(data_type, "failed", fstate.error)
                    return False
                if (
                    fstate.phase in ("downloaded", "parsing", "completed")
                    and fstate.sha256 == expected
                    and dest.exists()
                ):
                    paths[data_type] = dest
                    continue
                fstate.file = remote.name
                fstate.phase = "downloading"
                fstate.error = None
                store.save(state)
                self.reporter.set_phase(data_type, "downloading")

                def progress(received: int, total: int | None, data_type: str = data_type) -> None:
                    p = self.reporter.files[data_type]
                    if received > p.bytes_read:
                        self.metrics.downloaded_bytes.inc(received - p.bytes_read)
                    p.bytes_read = received
                    p.bytes_total = total

                try:
                    digest = await download_file(
                        client,
                        remote.url,
                        dest,
                        expected,
                        attempts=s.download_attempts,
                        backoff=s.download_backoff_s,
                        max_wait=s.download_max_wait_s,
                        on_progress=progress,
                    )
                except (DownloadError, httpx.HTTPError) as exc:
                    fstate.phase = "failed"
                    fstate.error = str(exc)
                    store.save(state)
                    self.reporter.set_phase(data_type, "failed", str(exc))
                    return False
                fstate.phase = "downloaded"
                fstate.sha256 = digest
                fstate.bytes_total = dest.stat().st_size
                store.save(state)
                self.reporter.set_phase(data_type, "downloaded")
                paths[data_type] = dest
        completed = await self._run_version(version, paths, source=s.discogs_data_url)
        if completed:
            await asyncio.to_thread(prune_older_dumps, s.data_dir, version)
        return completed

    def _restart_if_asked(self, version: str) -> None:
        """With `reprocess`, the first time: a completed version starts again from its first
        record (its verified downloads are kept; the completed marker stays as the `.bak`)."""
        if not self._reprocess:
            return
        self._reprocess = False
        store = StateStore(self.settings.data_dir, version)
        state = store.load()
        if state.completed:
            log.info("version_reprocessing", version=version)
            store.save(state.restarted())

    async def _run_version(self, version: str, files: dict[str, Path], source: str) -> bool:
        store = StateStore(self.settings.data_dir, version)
        runner = VersionRunner(
            self.publisher,
            store,
            self.reporter,
            batch_size=self.settings.parse_batch_size,
            checkpoint_interval_s=self.settings.checkpoint_interval_s,
            window_records=self.settings.publish_window,
            message_records=self.settings.message_records,
            message_bytes=self.settings.message_max_bytes,
            parse_workers=self.settings.parse_workers,
            gate=self.gate,
        )
        if runner.state.source is None:
            runner.state.source = source
        return await runner.run(files)


def prune_older_dumps(data_dir: Path, version: str) -> None:
    """Delete the downloaded files of versions older than `version` (their markers stay)."""
    for entry in data_dir.iterdir():
        if entry.is_dir() and len(entry.name) == 8 and entry.name.isdigit() and entry.name < version:
            shutil.rmtree(entry, ignore_errors=True)
            log.info("old_dump_pruned", version=entry.name)


async def serve(
    settings: ExtractorSettings,
    *,
    source_dir: Path | None,
    source_files: Sequence[Path] | None = None,
    once: bool,
    reprocess: bool = False,
) -> int:
    service = ExtractorService(
        settings, source_dir=source_dir, source_files=source_files, once=once, reprocess=reprocess
    )
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def on_signal() -> None:
        log.info("extractor_stopping")
        service.stop()
        if main is not None:
            main.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal)
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(hold_data_dir(settings.data_dir))
        except (DataDirBusyError, PermissionError) as exc:
            log.error("extractor_cannot_start", data_dir=str(settings.data_dir), error=str(exc))
            return CANNOT_START
        try:
            return await service.run()
        except asyncio.CancelledError:
            return 130
