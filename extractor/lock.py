"""One extractor per data directory.

Two extractors sharing a DATA_DIR (the service and a `python -m extractor --once` started by hand,
or two compose replicas on one volume) would append to the same partial download, overwrite each
other's state marker and write the same record index at once; a corrupt index then misleads the
next version's comparison. So an extractor holds an exclusive lock on `<DATA_DIR>/.extractor.lock`
while it runs. It is a POSIX record lock (`lockf`): the kernel releases it when the process ends
however it ends, so a crash never leaves a stale lock, and unlike `flock` it is not shared with
the forked parse workers, so a killed extractor's dying workers cannot hold up its restart. The
file only names the holder for the error message.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

LOCK_FILE: Final = ".extractor.lock"


class DataDirBusyError(RuntimeError):
    """Another extractor holds the data directory."""


@contextmanager
def hold_data_dir(data_dir: Path) -> Iterator[None]:
    """Hold `data_dir` for this process; raise DataDirBusyError at once when another one does."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise DataDirBusyError(
                f"another extractor ({holder}) is using {data_dir.resolve()}: stop it first, or give "
                "this one a data directory of its own (--data-dir or DATA_DIR)"
            ) from None
        since = datetime.now(UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {since}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
