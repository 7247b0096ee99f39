"""Process one dump version: parse every file (worker process) and publish (this process).

Per file: resume after the last broker-confirmed ordinal of the state marker, checkpoint the
confirmed ordinal about every second, then `file_complete`. After every file of the version is
completed: `extraction_complete` once per data type. A version whose marker says completed is
skipped. A corrupt/truncated dump, a broker refusal or a lost connection fails the file (phase
`failed` with the error), never completes it; the next run retries it from its checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import queue as queue_mod
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from common.amqp import DATA_TYPES
from common.logging import get_logger
from common.messages import ExtractionComplete, FileComplete
from extractor.backpressure import QueueGate
from extractor.baseline import find_baseline, index_dir, prune_indexes
from extractor.fast_publisher import FastPublisher
from extractor.progress import ProgressReporter
from extractor.publisher import PublishError, RecordPublisher
from extractor.state import StateStore, VersionState
from extractor.worker import parse_worker

log = get_logger(__name__)

_QUEUE_BATCHES: Final = 8
# (last ordinal, records, unchanged records) published but not yet checkpointed
_Pending = list[tuple[int, int, int]]


class FileFailedError(Exception):
    """A file could not be processed to its end; the message says why."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class VersionRunner:
    def __init__(
        self,
        publisher: RecordPublisher | FastPublisher,
        store: StateStore,
        reporter: ProgressReporter,
        *,
        batch_size: int = 64,
        checkpoint_interval_s: float = 1.0,
        window_records: int = 10_000,
        message_records: int = 100,
        message_bytes: int = 1 << 20,
        parse_workers: int = 0,
        gate: QueueGate | None = None,
    ) -> None:
        self.publisher = publisher
        self.gate = gate
        self.store = store
        self.reporter = reporter
        self.batch_size = batch_size
        self.checkpoint_interval_s = checkpoint_interval_s
        self.window_records = max(1, window_records)
        self.worker_options = {
            "message_records": message_records,
            "message_bytes": message_bytes,
            "parse_workers": parse_workers,
        }
        self.state: VersionState = store.load()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parse-queue")

    @property
    def version(self) -> str:
        return self.store.version

    def save(self) -> None:
        self.store.save(self.state)

    async def run(self, files: dict[str, Path]) -> bool:
        """Process `files` ({type: path}); True when the version is completed."""
        types: list[str] = [t for t in DATA_TYPES if t in files]
        self.reporter.start_version(self.version, types)
        if self.state.completed:
            log.info("version_already_completed", version=self.version)
            for t in types:
                self.reporter.set_phase(t, "completed")
                self.reporter.files[t].records = self.state.file(t).records
            return True
        try:
            ok = True
            for data_type in types:
                fstate = self.state.file(data_type)
                if fstate.phase == "completed" and fstate.file_complete_sent:
                    self.reporter.files[data_type].records = fstate.records
                    self.reporter.set_phase(data_type, "completed")
                    continue
                try:
                    await self.process_file(data_type, files[data_type])
                except FileFailedError as exc:
                    ok = False
                    fstate.phase = "failed"
                    fstate.error = str(exc)
                    self.save()
                    self.reporter.set_phase(data_type, "failed", str(exc))
                    if isinstance(exc.__cause__, PublishError | ConnectionError):
                        break  # the broker is gone: the other files would fail the same way
            if not ok:
                return False
            counts = {t: self.state.file(t).records for t in types}
            for data_type in types:
                await self.publisher.publish(
                    ExtractionComplete(type=data_type, version=self.version, record_counts=counts).to_bytes(),
                    data_type,
                    0,
                )
            await self.publisher.flush()
            self.state.extraction_complete_sent = True
            self.save()
            log.info("extraction_complete", version=self.version, record_counts=counts)
            # The stores now hold this version: older record indexes can never be a baseline again.
            prune_indexes(self.store.data_dir, self.version)
            return True
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def process_file(self, data_type: str, path: Path) -> None:
        fstate = self.state.file(data_type)
        fstate.file = path.name
        fstate.phase = "parsing"
        fstate.error = None
        fstate.started_at = fstate.started_at or _now()
        fstate.bytes_total = _file_size(path)
        self.save()
        skip = fstate.confirmed
        data_dir = self.store.data_dir
        baseline = None if self.state.full else find_baseline(data_dir, self.version, data_type)
        self.reporter.set_phase(data_type, "parsing")
        self.reporter.start_file(data_type, fstate.bytes_total, fstate.records)
        log.info(
            "file_started",
            type=data_type,
            version=self.version,
            file=path.name,
            resume_after=skip,
            # Records unchanged since this version are published as unchanged items; none: all in full.
            baseline=baseline.name if baseline is not None else None,
        )
        options = {
            **self.worker_options,
            "baseline": str(baseline) if baseline is not None else None,
            "index_dir": str(index_dir(data_dir, self.version)),
        }

        self.publisher.reset_ordinals(skip)
        ctx = _worker_context()
        out: Any = ctx.Queue(maxsize=_QUEUE_BATCHES)
        proc = ctx.Process(
            target=parse_worker,
            args=(
                str(path),
                data_type,
                self.version,
                skip,
                out,
                self.batch_size,
                os.getpid(),
                options,
            ),
            name=f"parse-{data_type}",
            daemon=False,  # it runs a pool of parse processes; it dies with us (PR_SET_PDEATHSIG)
        )
        proc.start()
        # Malformed records / messages not yet covered by a checkpoint.
        pending_malformed: _Pending = []
        pending_valid: _Pending = []
        loop = asyncio.get_running_loop()
        last_checkpoint = time.monotonic()
        window = self.window_records
        final_bytes = 0
        try:
            while True:
                msg = await loop.run_in_executor(self._executor, _get, out, proc)
                kind = msg[0]
                if kind == "batch":
                    valid = 0
                    bad = 0
                    unchanged = 0
                    for ordinal, _offset, count, body, error, same in msg[1]:
                        if ordinal - fstate.confirmed > window:
                            # Keep what a crash could re-publish within one window.
                            await self._make_room(
                                data_type, ordinal - window // 2, pending_valid, pending_malformed
                            )
                        if error is None:
                            if self.gate is not None:
                                await self.gate.wait(data_type, self.reporter.files[data_type])
                            await self.publisher.publish(body, data_type, ordinal)
                            pending_valid.append((ordinal, count, same))
                            valid += count
                            unchanged += same
                        else:
                            log.warning(
                                "malformed_record",
                                type=data_type,
                                version=self.version,
                                ordinal=ordinal,
                                error=error,
                            )
                            await self.publisher.publish_dead_letter(body, data_type, error, ordinal)
                            pending_malformed.append((ordinal, 1, 0))
                            bad += 1
                    self.reporter.advance(data_type, valid, bad, msg[1][-1][1] if msg[1] else 0, unchanged)
                    now = time.monotonic()
                    if now - last_checkpoint >= self.checkpoint_interval_s:
                        last_checkpoint = now
                        self._checkpoint(data_type, pending_valid, pending_malformed)
                elif kind == "done":
                    final_bytes = int(msg[2])
                    break
                elif kind == "corrupt":
                    await self._drain(data_type, pending_valid, pending_malformed)
                    raise FileFailedError(str(msg[1]))
                else:
                    await self._drain(data_type, pending_valid, pending_malformed)
                    raise FileFailedError(f"parser failed: {msg[1]}")
            await self._drain(data_type, pending_valid, pending_malformed)
        except (PublishError, ConnectionError, OSError) as exc:
            raise FileFailedError(f"publishing failed: {exc}") from exc
        except asyncio.CancelledError:
            # Shutting down (SIGTERM): wait for the confirms in flight, record them, then stop.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._drain(data_type, pending_valid, pending_malformed), 15)
            log.info("file_interrupted", type=data_type, confirmed=self.state.file(data_type).confirmed)
            raise
        finally:
            if proc.is_alive():
                proc.terminate()
            await loop.run_in_executor(None, proc.join, 10)
            with contextlib.suppress(Exception):
                out.close()
                out.cancel_join_thread()
        self.reporter.advance(data_type, 0, 0, final_bytes)
        # Everything is confirmed: tell the consumers, then mark the file completed.
        fstate.phase = "completed"
        self.save()
        await self.publisher.publish(
            FileComplete(type=data_type, version=self.version, record_count=fstate.records).to_bytes(),
            data_type,
            fstate.confirmed,
        )
        await self.publisher.flush()
        fstate.file_complete_sent = True
        fstate.completed_at = _now()
        self.save()
        self.reporter.set_phase(data_type, "completed")

    async def _make_room(
        self, data_type: str, target: int, pending_valid: _Pending, pending_malformed: _Pending
    ) -> None:
        """Wait for confirms up to `target`, then save the checkpoint (one save per half window)."""
        while self.publisher.confirmed_ordinal < target and self.publisher.in_flight:
            await self.publisher.wait_oldest()
        self._checkpoint(data_type, pending_valid, pending_malformed)

    async def _drain(self, data_type: str, pending_valid: _Pending, pending_malformed: _Pending) -> None:
        try:
            await self.publisher.flush()
        finally:
            self._checkpoint(data_type, pending_valid, pending_malformed)

    def _checkpoint(self, data_type: str, pending_valid: _Pending, pending_malformed: _Pending) -> None:
        """Record the confirmed ordinal (and the counts at or before it) in the marker."""
        confirmed = self.publisher.confirmed_ordinal
        fstate = self.state.file(data_type)
        if confirmed <= fstate.confirmed:
            return
        valid, unchanged = _take_upto(pending_valid, confirmed)
        bad, _ = _take_upto(pending_malformed, confirmed)
        fstate.confirmed = confirmed
        fstate.records += valid
        fstate.unchanged += unchanged
        fstate.malformed += bad
        self.save()


def _worker_context() -> Any:
    """Where each file's parse worker starts. A fork server (extractor.fork_server) imports the
    worker's code once and forks each worker from that clean, single-threaded process: spawn paid
    the imports per file, about a CPU-second, and forking this process could copy a lock one of
    its threads holds. (A main script run by path, not with -m, is still run again in each
    worker: keep its top level light.)"""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["extractor.fork_server"])
    return ctx


def _file_size(path: Path) -> int:
    return path.stat().st_size


def _take_upto(pending: _Pending, limit: int) -> tuple[int, int]:
    """Remove the (ascending) entries whose last ordinal is <= limit; return their records and
    unchanged records."""
    n = 0
    records = 0
    unchanged = 0
    while n < len(pending) and pending[n][0] <= limit:
        records += pending[n][1]
        unchanged += pending[n][2]
        n += 1
    del pending[:n]
    return records, unchanged


def _get(out: Any, proc: Any) -> Any:
    """Blocking read of the worker queue that notices a worker that died without a word."""
    while True:
        try:
            return out.get(timeout=0.5)
        except queue_mod.Empty:
            if not proc.is_alive():
                try:
                    return out.get(timeout=0.5)
                except queue_mod.Empty:
                    return ("error", f"parse worker exited with code {proc.exitcode}")
