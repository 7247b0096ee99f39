"""The state marker of one dump version: `<data_dir>/.extraction_state_<version>.json`.

Per file: its phase (pending -> downloading -> downloaded -> parsing -> completed | failed, with
the error), the last broker-CONFIRMED record ordinal (`confirmed`), how many malformed records
are at or before it, and download facts (size, verified sha256). Written atomically (temp file,
fsync, rename, fsync of the directory); a previous copy is kept as `.bak` and used when the main
file is unreadable, so a crash mid-write never loses progress.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from common.amqp import DATA_TYPES
from common.logging import get_logger

log = get_logger(__name__)

Phase = Literal["pending", "downloading", "downloaded", "parsing", "completed", "failed"]
PHASES: Final = ("pending", "downloading", "downloaded", "parsing", "completed", "failed")
STATE_FORMAT: Final = 1


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class FileState:
    file: str | None = None
    phase: Phase = "pending"
    error: str | None = None
    confirmed: int = 0  # last ordinal the broker confirmed (records + dead letters)
    malformed: int = 0  # malformed records at or before `confirmed`
    records: int = 0  # valid records published and confirmed (at or before `confirmed`)
    unchanged: int = 0  # of `records`: unchanged items (raw XML as in the baseline version)
    bytes_total: int | None = None
    sha256: str | None = None  # verified against CHECKSUM.txt (download mode)
    started_at: str | None = None
    completed_at: str | None = None
    file_complete_sent: bool = False


@dataclass
class VersionState:
    version: str
    source: str | None = None
    files: dict[str, FileState] = field(default_factory=dict)
    extraction_complete_sent: bool = False
    # Publish every record in full, ignoring the previous version's index (`--reprocess`).
    full: bool = False
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)

    @property
    def completed(self) -> bool:
        return self.extraction_complete_sent

    def restarted(self) -> VersionState:
        """This version to be extracted again from its first record, every record in full:
        verified downloads are kept (phase `downloaded`), every count and completion is reset."""
        files = {
            data_type: FileState(
                file=f.file,
                phase="downloaded" if f.sha256 is not None else "pending",
                bytes_total=f.bytes_total,
                sha256=f.sha256,
            )
            for data_type, f in self.files.items()
        }
        return VersionState(version=self.version, source=self.source, files=files, full=True)

    def file(self, data_type: str) -> FileState:
        if data_type not in self.files:
            self.files[data_type] = FileState()
        return self.files[data_type]

    def to_json(self) -> bytes:
        body = asdict(self)
        body["format"] = STATE_FORMAT
        body["completed"] = self.completed
        return orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, data: bytes) -> VersionState:
        raw: dict[str, Any] = orjson.loads(data)
        files = {}
        for data_type, value in (raw.get("files") or {}).items():
            known = {k: v for k, v in value.items() if k in FileState.__dataclass_fields__}
            if known.get("phase") not in PHASES:
                known["phase"] = "pending"
            files[str(data_type)] = FileState(**known)
        return cls(
            version=str(raw["version"]),
            source=raw.get("source"),
            files=files,
            extraction_complete_sent=bool(raw.get("extraction_complete_sent", False)),
            full=bool(raw.get("full", False)),
            created_at=str(raw.get("created_at") or _now()),
            updated_at=str(raw.get("updated_at") or _now()),
        )


_MARKER_PREFIX: Final = ".extraction_state_"


def state_path(data_dir: Path, version: str) -> Path:
    return data_dir / f"{_MARKER_PREFIX}{version}.json"


def marked_versions(data_dir: Path) -> list[str]:
    """The versions that have a state marker in `data_dir`, newest first."""
    names = (
        p.name.removeprefix(_MARKER_PREFIX).removesuffix(".json")
        for p in data_dir.glob(f"{_MARKER_PREFIX}*.json")
    )
    return sorted((v for v in names if v.isdigit()), reverse=True)


class StateStore:
    """Load and save the marker of one version in `data_dir`."""

    def __init__(self, data_dir: Path, version: str) -> None:
        self.data_dir = data_dir
        self.version = version
        self.path = state_path(data_dir, version)
        self.backup = self.path.with_name(self.path.name + ".bak")

    def load(self) -> VersionState:
        for candidate in (self.path, self.backup):
            try:
                state = VersionState.from_json(candidate.read_bytes())
            except FileNotFoundError:
                continue
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                log.warning("state_marker_unreadable", path=str(candidate), error=str(exc))
                continue
            if state.version == self.version:
                return state
        return VersionState(version=self.version, files={t: FileState() for t in DATA_TYPES})

    def save(self, state: VersionState) -> None:
        state.updated_at = _now()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        data = state.to_json()
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if self.path.exists():
            with contextlib.suppress(OSError):
                os.replace(self.path, self.backup)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.data_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
