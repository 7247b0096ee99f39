"""Download behaviour against the local fake dump host (tests/fakes/dump_host.py)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from extractor.discovery import choose_version, discover
from extractor.download import ChecksumMismatchError, DownloadError, download_file, fetch_checksums
from extractor.http import RetryBudgetExceededError
from tests.fakes.dump_host import DumpHost

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
TYPES = ("artists", "labels", "masters", "releases")
FAST: dict[str, float] = {"attempts": 5, "backoff": 0.05, "max_wait": 30.0}


def version_files(version: str) -> dict[str, bytes]:
    return {
        f"discogs_{version}_{t}.xml.gz": (SAMPLES / f"discogs_20200806_{t}.xml.gz").read_bytes()
        for t in TYPES
    }


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as c:
        yield c


def url(host: DumpHost, name: str) -> str:
    year = name.split("_")[1][:4]
    return f"{host.base_url}?download=data%2F{year}%2F{name}"


async def fetch(
    client: httpx.AsyncClient,
    host: DumpHost,
    name: str,
    dest: Path,
    content: bytes,
    attempts: int = 5,
    backoff: float = 0.05,
) -> str:
    """Download `name` to `dest`, verified against the SHA-256 of `content`, with quick retries."""
    sha256 = hashlib.sha256(content).hexdigest()
    return await download_file(
        client, url(host, name), dest, sha256, attempts=attempts, backoff=backoff, max_wait=30.0
    )


async def test_discovery_skips_incomplete_version(client: httpx.AsyncClient) -> None:
    async with DumpHost() as host:
        host.add_version("20250901", version_files("20250901"))
        host.add_version("20260101", version_files("20260101"))
        host.add_version("20260201", version_files("20260201"), checksum=False)  # still uploading
        partial = version_files("20260301")
        partial.pop("discogs_20260301_releases.xml.gz")
        host.add_version("20260301", partial)
        versions = await discover(client, host.base_url, retry=FAST)
        assert [v.version for v in versions] == ["20260301", "20260201", "20260101", "20250901"]
        chosen = choose_version(versions)
        assert chosen is not None and chosen.version == "20260101"
        sums = await fetch_checksums(client, chosen.checksum.url)  # type: ignore[union-attr]
        data = version_files("20260101")
        assert sums == {n: hashlib.sha256(b).hexdigest() for n, b in data.items()}


async def test_resume_after_cut_connection_with_range(client: httpx.AsyncClient, tmp_path: Path) -> None:
    async with DumpHost(range_support=True) as host:
        files = version_files("20260101")
        host.add_version("20260101", files)
        name = "discogs_20260101_releases.xml.gz"
        host.cut_after(name, 300_000)
        dest = tmp_path / name
        digest = await download_file(
            client, url(host, name), dest, hashlib.sha256(files[name]).hexdigest(), attempts=5, backoff=0.05
        )
        assert dest.read_bytes() == files[name]
        assert digest == hashlib.sha256(files[name]).hexdigest()
        reqs = [r for r in host.requests if r.name == name]
        assert [r.status for r in reqs] == [200, 206]
        assert reqs[1].range is not None and reqs[1].range.startswith("bytes=")
        assert int(reqs[1].range[6:-1]) > 0  # resumed from what it already had
        assert not (tmp_path / (name + ".part")).exists()


async def test_cut_connection_without_range_restarts(client: httpx.AsyncClient, tmp_path: Path) -> None:
    async with DumpHost(range_support=False) as host:
        files = version_files("20260101")
        host.add_version("20260101", files)
        name = "discogs_20260101_masters.xml.gz"
        host.cut_after(name, 50_000)
        dest = tmp_path / name
        await fetch(client, host, name, dest, files[name])
        assert dest.read_bytes() == files[name]
        assert host.statuses(name) == [200, 200]


async def test_checksum_mismatch_deletes_and_retries(client: httpx.AsyncClient, tmp_path: Path) -> None:
    async with DumpHost() as host:
        files = version_files("20260101")
        host.add_version("20260101", files)
        name = "discogs_20260101_labels.xml.gz"
        host.corrupt(name, times=1)
        dest = tmp_path / name
        await fetch(client, host, name, dest, files[name])
        assert dest.read_bytes() == files[name]
        assert host.statuses(name) == [200, 200]


async def test_persistent_mismatch_fails_and_leaves_nothing(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    async with DumpHost() as host:
        files = version_files("20260101")
        host.add_version("20260101", files)
        name = "discogs_20260101_labels.xml.gz"
        host.corrupt(name, times=10)
        dest = tmp_path / name
        with pytest.raises(ChecksumMismatchError):
            await fetch(client, host, name, dest, files[name], attempts=3, backoff=0.01)
        assert os.listdir(tmp_path) == []
        assert host.statuses(name) == [200, 200, 200]


async def test_429_with_retry_after_is_honoured(client: httpx.AsyncClient, tmp_path: Path) -> None:
    async with DumpHost() as host:
        files = version_files("20260101")
        host.add_version("20260101", files)
        name = "discogs_20260101_artists.xml.gz"
        host.rate_limit(name, times=2, retry_after="1")
        host.server_error(name, times=1)
        dest = tmp_path / name
        await fetch(client, host, name, dest, files[name])
        assert dest.read_bytes() == files[name]
        assert host.statuses(name) == [429, 429, 503, 200]
        # The next request waits the 1 s the host asked for, far longer than the 0.05 s back-off
        # the 503 gets: a lower bound, which a slow machine can only make longer.
        at = [r.at for r in host.requests if r.name == name]
        assert at[1] - at[0] >= 0.95 and at[2] - at[1] >= 0.95


async def test_retry_after_longer_than_allowed_fails(client: httpx.AsyncClient, tmp_path: Path) -> None:
    async with DumpHost() as host:
        files = version_files("20260101")
        host.add_version("20260101", files)
        name = "discogs_20260101_artists.xml.gz"
        host.rate_limit(name, times=1, retry_after="3574")
        with pytest.raises(RetryBudgetExceededError):
            await download_file(client, url(host, name), tmp_path / name, None, attempts=3, max_wait=60)
        assert host.statuses(name) == [429]


async def test_too_many_failures_gives_up(client: httpx.AsyncClient, tmp_path: Path) -> None:
    async with DumpHost() as host:
        files = version_files("20260101")
        host.add_version("20260101", files)
        name = "discogs_20260101_artists.xml.gz"
        host.server_error(name, times=10)
        with pytest.raises(DownloadError):
            await download_file(client, url(host, name), tmp_path / name, None, attempts=3, backoff=0.01)
        assert host.statuses(name) == [503, 503, 503]


async def test_verified_file_present_is_not_downloaded_again(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    async with DumpHost() as host:
        files = version_files("20260101")
        host.add_version("20260101", files)
        name = "discogs_20260101_labels.xml.gz"
        await fetch(client, host, name, tmp_path / name, files[name])
        await fetch(client, host, name, tmp_path / name, files[name])
        assert host.statuses(name) == [200]
