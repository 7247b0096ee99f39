"""Find dump versions: a data.discogs.com-style HTML listing, or a local directory.

data.discogs.com serves `<base>` with year links `?prefix=data%2F<YYYY>%2F` and, per year, file
links `?download=data%2F<YYYY>%2F<file>`. Any link whose (URL-decoded) target ends with
`discogs_<YYYYMMDD>_<type>.xml.gz` or `discogs_<YYYYMMDD>_CHECKSUM.txt` is taken, so a plain
directory listing with direct links works too. A version is complete when it has all four dumps
and its CHECKSUM (Discogs writes CHECKSUM last: it marks the dump as finished).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urljoin

import httpx

from common.amqp import DATA_TYPES
from common.logging import get_logger
from extractor.http import get_with_retry

log = get_logger(__name__)

_HREF: Final = re.compile(r"""href\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_YEAR_LINK: Final = re.compile(r"prefix=data(?:%2F|/)(\d{4})(?:%2F|/)?$", re.IGNORECASE)
_FILE_NAME: Final = re.compile(
    r"(discogs_(\d{8})_(artists|labels|masters|releases|CHECKSUM)\.(xml\.gz|xml|txt))$", re.IGNORECASE
)
LOCAL_FILE: Final = re.compile(r"^discogs_(\d{8})_(artists|labels|masters|releases)\.xml(\.gz)?$")


@dataclass(frozen=True)
class RemoteFile:
    name: str
    url: str


@dataclass
class DumpVersion:
    version: str
    files: dict[str, RemoteFile] = field(default_factory=dict)
    checksum: RemoteFile | None = None

    @property
    def complete(self) -> bool:
        return self.checksum is not None and all(t in self.files for t in DATA_TYPES)


def parse_listing(html: str, page_url: str) -> tuple[list[tuple[str, str]], dict[str, DumpVersion]]:
    """Return ([(year, url)], {version: DumpVersion}) found in one listing page."""
    years: dict[str, str] = {}
    versions: dict[str, DumpVersion] = {}
    for raw_href in _HREF.findall(html):
        href = raw_href.replace("&amp;", "&")
        decoded = unquote(href)
        year = _YEAR_LINK.search(href)
        if year:
            years.setdefault(year.group(1), urljoin(page_url, href))
            continue
        match = _FILE_NAME.search(decoded)
        if not match:
            continue
        name, version, kind, ext = match.group(1), match.group(2), match.group(3), match.group(4).lower()
        entry = versions.setdefault(version, DumpVersion(version))
        remote = RemoteFile(name=name, url=urljoin(page_url, href))
        if kind.upper() == "CHECKSUM":
            if ext == "txt":
                entry.checksum = remote
        elif ext == "xml.gz":
            entry.files[kind.lower()] = remote
    return sorted(years.items(), reverse=True), versions


async def discover(
    client: httpx.AsyncClient, base_url: str, *, max_years: int = 2, retry: dict[str, float] | None = None
) -> list[DumpVersion]:
    """Every version listed under `base_url` (newest `max_years` year folders), newest first."""
    retry = retry or {}
    page = await get_with_retry(client, base_url, **retry)
    years, versions = parse_listing(page.text, str(page.url))
    for year, url in years[:max_years]:
        try:
            sub = await get_with_retry(client, url, **retry)
        except httpx.HTTPError as exc:
            log.warning("listing_year_failed", year=year, url=url, error=str(exc))
            continue
        _, found = parse_listing(sub.text, str(sub.url))
        for version, entry in found.items():
            merged = versions.setdefault(version, DumpVersion(version))
            merged.files.update(entry.files)
            merged.checksum = entry.checksum or merged.checksum
    return [versions[v] for v in sorted(versions, reverse=True)]


def choose_version(versions: list[DumpVersion]) -> DumpVersion | None:
    """The newest complete version (4 dumps + CHECKSUM); incomplete ones are skipped."""
    for entry in sorted(versions, key=lambda v: v.version, reverse=True):
        if entry.complete:
            return entry
        log.info(
            "version_incomplete_skipped",
            version=entry.version,
            files=sorted(entry.files),
            checksum=entry.checksum is not None,
        )
    return None


def local_versions(source_dir: Path) -> dict[str, dict[str, Path]]:
    """`discogs_YYYYMMDD_<type>.xml[.gz]` files of a directory, grouped by version (gz preferred)."""
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(source_dir.iterdir()):
        match = LOCAL_FILE.match(path.name)
        if not match or not path.is_file():
            continue
        version, data_type = match.group(1), match.group(2)
        current = found.setdefault(version, {}).get(data_type)
        if current is None or path.name.endswith(".gz"):
            found[version][data_type] = path
    return found


def version_of_files(paths: Sequence[Path]) -> tuple[str, dict[str, Path]]:
    """The version and the files by type of dumps named one by one; ValueError says what is wrong
    (a name that is not a dump's, a missing file, two files of a type, files of two versions)."""
    files: dict[str, Path] = {}
    versions: set[str] = set()
    for path in paths:
        if not path.exists():
            raise ValueError(f"{path}: no such file or directory")
        match = LOCAL_FILE.match(path.name)
        if match is None or not path.is_file():
            raise ValueError(f"{path}: not a dump file (discogs_YYYYMMDD_<type>.xml[.gz]) nor one directory")
        version, data_type = match.group(1), match.group(2)
        if data_type in files:
            raise ValueError(f"{path}: a second {data_type} file (the first is {files[data_type]})")
        versions.add(version)
        files[data_type] = path
    if len(versions) != 1:
        listed = ", ".join(sorted(versions))
        raise ValueError(f"the files are of {len(versions)} versions ({listed}): name one version's")
    return versions.pop(), files


def choose_local_version(source_dir: Path) -> tuple[str, dict[str, Path]] | None:
    """The newest version with all four types, else the newest version with any."""
    found = local_versions(source_dir)
    if not found:
        return None
    complete = [v for v, files in found.items() if all(t in files for t in DATA_TYPES)]
    version = max(complete) if complete else max(found)
    return version, found[version]
