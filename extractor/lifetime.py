"""The extractor's helper processes end with it, even when it is killed with SIGKILL: each asks
Linux to kill it when its parent dies (PR_SET_PDEATHSIG). The chain is extractor -> fork server
(extractor.fork_server) -> parse worker (extractor.worker) -> parse pool (extractor.chunked)."""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def owner_gone(owner: int) -> bool:
    """Process `owner` has exited."""
    try:
        os.kill(owner, 0)
    except (ProcessLookupError, PermissionError):  # PermissionError: the pid was reused
        return True
    return False


def die_with_parent(owner: int | None = None) -> None:
    """SIGKILL this process when its parent dies; exit now when `owner` (the process it works
    for) is already gone, as it may have died before the request took effect."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the workers still check on their owner
        pass
    if owner is not None and owner_gone(owner):
        os._exit(0)
