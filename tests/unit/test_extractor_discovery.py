"""Listing parsing, version choice, CHECKSUM parsing and local source discovery."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from extractor.discovery import (
    choose_local_version,
    choose_version,
    local_versions,
    parse_listing,
    version_of_files,
)
from extractor.download import parse_checksums
from extractor.http import retry_after_seconds

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
PAGE = "https://data.discogs.com/?prefix=data%2F2026%2F"


def test_real_listing_2026() -> None:
    html = (SAMPLES / "data_discogs_com_listing_2026.html").read_text()
    years, versions = parse_listing(html, PAGE)
    assert years == []  # a year page links back to ../ only
    assert sorted(versions) == [f"2026{m:02d}01" for m in range(1, 11)]
    assert all(v.complete for v in versions.values())
    newest = choose_version(list(versions.values()))
    assert newest is not None and newest.version == "20261001"
    assert newest.files["releases"].name == "discogs_20261001_releases.xml.gz"
    assert newest.files["releases"].url == (
        "https://data.discogs.com/?download=data%2F2026%2Fdiscogs_20261001_releases.xml.gz"
    )
    assert newest.checksum is not None and newest.checksum.name == "discogs_20261001_CHECKSUM.txt"


def test_incomplete_version_is_skipped() -> None:
    html = (SAMPLES / "data_discogs_com_listing_2026.html").read_text()
    html = html.replace("discogs_20261001_CHECKSUM.txt", "x.txt").replace("discogs_20260901_masters", "x")
    _, versions = parse_listing(html, PAGE)
    assert not versions["20261001"].complete and not versions["20260901"].complete
    chosen = choose_version(list(versions.values()))
    assert chosen is not None and chosen.version == "20260801"


def test_root_page_year_links() -> None:
    html = '<a href="?prefix=data%2F2025%2F">2025/</a><a href="?prefix=data%2F2026%2F">2026/</a>'
    years, versions = parse_listing(html, "http://h/")
    assert years == [("2026", "http://h/?prefix=data%2F2026%2F"), ("2025", "http://h/?prefix=data%2F2025%2F")]
    assert versions == {}


def test_checksum_file() -> None:
    sums = parse_checksums((SAMPLES / "discogs_20260801_CHECKSUM.txt").read_text())
    assert sums["discogs_20260801_labels.xml.gz"] == (
        "f0884a52b025d3a1e001543c32097ca8c9f3021162752c36e176978ab87ae453"
    )
    assert len(sums) == 4
    assert parse_checksums("# comment\n" + "a" * 64 + "  *x.gz\n") == {"x.gz": "a" * 64}


def test_local_source_samples() -> None:
    found = local_versions(SAMPLES)
    assert sorted(found["20200806"]) == ["artists", "labels", "masters", "releases"]
    assert all(p.name.endswith(".xml.gz") for p in found["20200806"].values())
    assert sorted(found["20260201"]) == ["masters"]  # labels_first15 is not a dump file name
    chosen = choose_local_version(SAMPLES)
    assert chosen is not None and chosen[0] == "20200806"


def test_local_source_partial_version(tmp_path: Path) -> None:
    (tmp_path / "discogs_20260201_masters.xml").write_bytes(
        (SAMPLES / "discogs_20260201_masters.xml").read_bytes()
    )
    chosen = choose_local_version(tmp_path)
    assert chosen is not None and chosen[0] == "20260201" and list(chosen[1]) == ["masters"]


def test_retry_after() -> None:
    assert retry_after_seconds("3574") == 3574
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("garbage") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0


def test_files_named_one_by_one_make_one_version(tmp_path: Path) -> None:
    releases = tmp_path / "discogs_20260101_releases.xml.gz"
    labels = tmp_path / "discogs_20260101_labels.xml"
    for path in (releases, labels):
        path.write_bytes(b"")
    assert version_of_files([releases, labels]) == ("20260101", {"releases": releases, "labels": labels})
    other = tmp_path / "discogs_20260201_artists.xml.gz"
    other.write_bytes(b"")
    second = tmp_path / "b" / "discogs_20260101_releases.xml"
    second.parent.mkdir()
    second.write_bytes(b"")
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"")
    problems = {
        "no such file or directory": [tmp_path / "discogs_20260101_masters.xml.gz"],
        "not a dump file": [notes],
        "a second releases file": [releases, second],
        "2 versions (20260101, 20260201)": [releases, other],
    }
    for problem, paths in problems.items():
        with pytest.raises(ValueError, match=re.escape(problem)):
            version_of_files(paths)
