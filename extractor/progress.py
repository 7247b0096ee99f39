"""What the extractor reports: `/health` body, Prometheus metrics, progress bar or log lines.

The `/health` shape (read by the dashboard):
  {"version": str | None,
   "files": {type: {"phase", "records", "bytes_read", "bytes_total", "records_per_s", "eta_s",
                    "error", "malformed", "unchanged", "waiting_for_consumers"}}}
`eta_s`: seconds left for a file being parsed, at its mean byte rate since this run started it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from tqdm import tqdm  # type: ignore[import-untyped]

from common.amqp import DATA_TYPES
from common.logging import get_logger

log = get_logger(__name__)


@dataclass
class FileProgress:
    phase: str = "pending"
    records: int = 0
    bytes_read: int = 0
    bytes_total: int | None = None
    records_per_s: float = 0.0
    error: str | None = None
    malformed: int = 0
    unchanged: int = 0  # of `records`: published as unchanged items (same raw XML as the baseline)
    waiting_for_consumers: bool = False  # publishing paused: the consumer queues are full (backpressure)
    _window_start: float = field(default_factory=time.monotonic)
    _window_records: int = 0
    _file_start: float = field(default_factory=time.monotonic)
    _file_start_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "records": self.records,
            "bytes_read": self.bytes_read,
            "bytes_total": self.bytes_total,
            "records_per_s": round(self.records_per_s, 1),
            "eta_s": None if self.phase != "parsing" or (eta := self.eta_s()) is None else round(eta),
            "error": self.error,
            "malformed": self.malformed,
            "unchanged": self.unchanged,
            "waiting_for_consumers": self.waiting_for_consumers,
        }

    def eta_s(self) -> float | None:
        """Seconds until the file is read at its mean byte rate since this run started it."""
        done = self.bytes_read - self._file_start_bytes
        elapsed = time.monotonic() - self._file_start
        if not self.bytes_total or done <= 0 or elapsed <= 0:
            return None
        return max(0, self.bytes_total - self.bytes_read) * elapsed / done

    def update_rate(self) -> None:
        now = time.monotonic()
        elapsed = now - self._window_start
        if elapsed >= 1.0:
            self.records_per_s = (self.records - self._window_records) / elapsed
            self._window_start = now
            self._window_records = self.records


class ExtractorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.records = Counter(
            "extractor_records_published_total",
            "Records published and confirmed by the broker",
            ["type"],
            registry=registry,
        )
        self.bytes_read = Counter(
            "extractor_bytes_read_total",
            "Dump bytes (compressed) read by the parser",
            ["type"],
            registry=registry,
        )
        self.unchanged = Counter(
            "extractor_records_unchanged_total",
            "Records published as unchanged items (raw XML as in the previous version)",
            ["type"],
            registry=registry,
        )
        self.malformed = Counter(
            "extractor_malformed_records_total",
            "Malformed records dead-lettered",
            ["type"],
            registry=registry,
        )
        self.progress = Gauge(
            "extractor_file_progress_ratio",
            "Fraction of the current file read (0-1)",
            ["type"],
            registry=registry,
        )
        self.records_per_s = Gauge(
            "extractor_records_per_second", "Recent publish rate per file", ["type"], registry=registry
        )
        self.files_failed = Counter(
            "extractor_files_failed_total",
            "Dump files that failed (download or parse)",
            ["type"],
            registry=registry,
        )
        self.downloaded_bytes = Counter(
            "extractor_downloaded_bytes_total", "Bytes downloaded from the dump host", registry=registry
        )
        for data_type in DATA_TYPES:
            for metric in (self.records, self.unchanged, self.bytes_read, self.malformed, self.files_failed):
                metric.labels(type=data_type)
            self.progress.labels(type=data_type).set(0)


class ProgressReporter:
    """Holds per-file progress; draws a tqdm bar on a terminal, else logs a line every interval."""

    def __init__(
        self, metrics: ExtractorMetrics, log_interval_s: float = 10.0, tty: bool | None = None
    ) -> None:
        self.metrics = metrics
        self.version: str | None = None
        self.files: dict[str, FileProgress] = {t: FileProgress() for t in DATA_TYPES}
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.log_interval_s = log_interval_s
        self._last_log = float("-inf")  # the first advance logs at once
        self._bar: Any = None
        self._bar_type: str | None = None

    def status(self) -> dict[str, Any]:
        return {"version": self.version, "files": {t: p.as_dict() for t, p in self.files.items()}}

    def start_version(self, version: str, types: list[str]) -> None:
        self.version = version
        self.files = {t: FileProgress(phase="pending" if t in types else "absent") for t in DATA_TYPES}

    def set_phase(self, data_type: str, phase: str, error: str | None = None) -> None:
        progress = self.files[data_type]
        progress.phase = phase
        progress.error = error
        if phase == "failed":
            self.metrics.files_failed.labels(type=data_type).inc()
        if phase in ("completed", "failed"):
            self._close_bar()
            log.info(
                "file_" + phase,
                type=data_type,
                version=self.version,
                records=progress.records,
                malformed=progress.malformed,
                error=error,
            )

    def start_file(self, data_type: str, bytes_total: int, records: int, bytes_read: int = 0) -> None:
        progress = self.files[data_type]
        progress.bytes_total = bytes_total
        progress.records = records
        progress.bytes_read = bytes_read
        progress._window_records = records
        progress._window_start = progress._file_start = time.monotonic()
        progress._file_start_bytes = bytes_read  # a resumed file: its rate counts from here
        if self.tty:
            self._close_bar()
            self._bar = tqdm(
                total=bytes_total,
                initial=bytes_read,
                unit="B",
                unit_scale=True,
                desc=f"{self.version} {data_type}",
                file=sys.stderr,
            )
            self._bar_type = data_type

    def advance(
        self, data_type: str, records: int, malformed: int, bytes_read: int, unchanged: int = 0
    ) -> None:
        progress = self.files[data_type]
        new_bytes = max(0, bytes_read - progress.bytes_read)
        progress.records += records
        progress.malformed += malformed
        progress.unchanged += unchanged
        if unchanged:
            self.metrics.unchanged.labels(type=data_type).inc(unchanged)
        progress.bytes_read = max(progress.bytes_read, bytes_read)
        self.metrics.records.labels(type=data_type).inc(records)
        if malformed:
            self.metrics.malformed.labels(type=data_type).inc(malformed)
        if new_bytes:
            self.metrics.bytes_read.labels(type=data_type).inc(new_bytes)
        progress.update_rate()
        self.metrics.records_per_s.labels(type=data_type).set(progress.records_per_s)
        if progress.bytes_total:
            self.metrics.progress.labels(type=data_type).set(
                min(1.0, progress.bytes_read / progress.bytes_total)
            )
        if self._bar is not None and self._bar_type == data_type:
            self._bar.update(new_bytes)
            self._bar.set_postfix(
                records=progress.records, rate=f"{progress.records_per_s:.0f}/s", refresh=False
            )
        elif not self.tty:
            now = time.monotonic()
            if now - self._last_log >= self.log_interval_s:
                self._last_log = now
                eta = progress.eta_s()
                log.info(
                    "progress",
                    type=data_type,
                    version=self.version,
                    records=progress.records,
                    records_per_s=round(progress.records_per_s, 1),
                    bytes_read=progress.bytes_read,
                    bytes_total=progress.bytes_total,
                    percent=round(100 * progress.bytes_read / progress.bytes_total, 1)
                    if progress.bytes_total
                    else None,
                    eta_s=round(eta) if eta is not None else None,
                    malformed=progress.malformed,
                    unchanged=progress.unchanged,
                )

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._bar_type = None
