"""Download dump files to disk: resumable, verified, never trusted before the checksum matches.

- Streams to `<name>.part`, hashing as it goes; renamed to `<name>` only after the SHA-256
  matches CHECKSUM.txt (fsync first). A mismatch deletes the file and downloads it again.
- A cut connection keeps the `.part` and resumes with `Range: bytes=<size>-`; a host that ignores
  Range (answers 200) is restarted from zero.
- 429 and 5xx are retried with bounded back-off, honouring Retry-After.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Final

import httpx

from common.logging import get_logger
from extractor.http import RETRY_STATUSES, backoff_seconds, get_with_retry, wait_for_response

log = get_logger(__name__)

_CHECKSUM_LINE: Final = re.compile(r"^([0-9a-fA-F]{64})\s+\*?(\S+)\s*$")
_CHUNK: Final = 1024 * 1024


class DownloadError(Exception):
    """A file could not be downloaded and verified within the retry budget."""


class ChecksumMismatchError(DownloadError):
    pass


def parse_checksums(text: str) -> dict[str, str]:
    """`<sha256><space(s)>[*]<filename>` lines -> {filename: sha256 lowercase}; other lines ignored."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        match = _CHECKSUM_LINE.match(line.strip())
        if match:
            out[match.group(2)] = match.group(1).lower()
    return out


async def fetch_checksums(client: httpx.AsyncClient, url: str, **retry: float) -> dict[str, str]:
    response = await get_with_retry(client, url, **retry)
    return parse_checksums(response.text)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _size(path: Path) -> int | None:
    """The file's size, or None when it does not exist."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


ProgressCallback = Callable[[int, int | None], None]


async def download_file(
    client: httpx.AsyncClient,
    url: str,
    dest: Path,
    expected_sha256: str | None,
    *,
    attempts: int = 6,
    backoff: float = 5.0,
    max_wait: float = 3600.0,
    on_progress: ProgressCallback | None = None,
) -> str:
    """Download `url` to `dest` (verified); return its SHA-256. Existing verified files are kept."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if _size(dest) is not None:
        digest = await asyncio.to_thread(sha256_file, dest)
        if expected_sha256 is None or digest == expected_sha256:
            log.info("download_skipped_present", file=dest.name)
            return digest
        log.warning("download_present_mismatch", file=dest.name, expected=expected_sha256, actual=digest)
        os.unlink(dest)
    part = dest.with_name(dest.name + ".part")
    failures = 0
    last_error = ""
    while failures < attempts:
        try:
            digest = await _fetch_once(client, url, part, backoff, max_wait, failures, on_progress)
        except _RetryError as retry:
            failures += 1
            last_error = retry.reason
            if failures >= attempts:
                break
            log.warning("download_retry", file=dest.name, reason=retry.reason, delay_s=round(retry.delay, 2))
            await asyncio.sleep(retry.delay)
            continue
        if expected_sha256 is not None and digest != expected_sha256:
            part.unlink(missing_ok=True)
            failures += 1
            last_error = f"checksum mismatch (expected {expected_sha256}, got {digest})"
            log.warning("download_checksum_mismatch", file=dest.name, expected=expected_sha256, actual=digest)
            if failures >= attempts:
                raise ChecksumMismatchError(f"{dest.name}: {last_error} after {failures} attempts")
            continue
        await asyncio.to_thread(_fsync, part)
        os.replace(part, dest)
        log.info("download_verified", file=dest.name, sha256=digest, bytes=_size(dest))
        return digest
    raise DownloadError(f"{dest.name}: download failed after {failures} attempts ({last_error})")


class _RetryError(Exception):
    def __init__(self, reason: str, delay: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


async def _fetch_once(
    client: httpx.AsyncClient,
    url: str,
    part: Path,
    backoff: float,
    max_wait: float,
    failures: int,
    on_progress: ProgressCallback | None,
) -> str:
    """One GET (resuming `part` when it exists); returns the SHA-256 of the complete file."""
    offset = _size(part) or 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    digest = hashlib.sha256()
    delay = backoff_seconds(failures + 1, backoff, max_wait)
    try:
        async with client.stream("GET", url, headers=headers) as response:
            status = response.status_code
            if status in RETRY_STATUSES:
                wait = wait_for_response(response, failures + 1, backoff, max_wait)
                raise _RetryError(f"HTTP {status}", wait)
            if status == 416 and offset:
                # Our .part is already whole (or longer than the file): verify what we have.
                return await asyncio.to_thread(sha256_file, part)
            if status == 206 and offset:
                if not _range_starts_at(response.headers.get("Content-Range"), offset):
                    os.unlink(part)
                    raise _RetryError("unexpected Content-Range; restarting", 0.0)
                await asyncio.to_thread(_hash_into, part, digest)
                mode = "ab"
                received = offset
            elif status == 200:
                if offset:
                    log.info("download_range_ignored_restart", file=part.name, had=offset)
                mode = "wb"
                received = 0
            else:
                raise _RetryError(f"HTTP {status}", delay)
            length = response.headers.get("Content-Length")
            total = received + int(length) if length and length.isdigit() else None
            with part.open(mode) as fh:
                async for chunk in response.aiter_raw():
                    fh.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    if on_progress is not None:
                        on_progress(received, total)
            if total is not None and received != total:
                raise _RetryError(f"short body ({received} of {total} bytes)", delay)
    except httpx.TransportError as exc:
        raise _RetryError(f"{type(exc).__name__}: {exc}", delay) from exc
    return digest.hexdigest()


def _range_starts_at(content_range: str | None, offset: int) -> bool:
    if not content_range:
        return False
    match = re.match(r"bytes\s+(\d+)-", content_range)
    return bool(match) and int(match.group(1)) == offset  # type: ignore[union-attr]


def _hash_into(path: Path, digest: hashlib._Hash) -> None:
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
