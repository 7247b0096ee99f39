"""The state marker: atomic writes, backup fallback, unknown fields tolerated."""

from __future__ import annotations

from pathlib import Path

from extractor.state import StateStore


def test_roundtrip_and_fresh_marker(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "20261001")
    state = store.load()
    assert not state.completed
    assert set(state.files) == {"artists", "labels", "masters", "releases"}
    assert all(f.phase == "pending" and f.confirmed == 0 for f in state.files.values())
    f = state.file("releases")
    f.phase = "parsing"
    f.confirmed = 1234
    f.records = 1230
    f.malformed = 4
    store.save(state)
    again = StateStore(tmp_path, "20261001").load()
    assert again.file("releases").confirmed == 1234 and again.file("releases").phase == "parsing"
    assert not list(tmp_path.glob("*.tmp"))


def test_corrupt_marker_falls_back_to_backup(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "20261001")
    state = store.load()
    state.file("labels").confirmed = 10
    store.save(state)
    state.file("labels").confirmed = 20
    store.save(state)  # the previous copy (10) is now the backup
    store.path.write_bytes(b'{"version": "2026')  # a torn write
    assert store.load().file("labels").confirmed == 10


def test_completed_and_unknown_fields(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "20261001")
    store.path.write_text(
        '{"version": "20261001", "extraction_complete_sent": true, "future": 1,'
        ' "files": {"labels": {"phase": "completed", "confirmed": 5, "new_field": "x"},'
        ' "masters": {"phase": "weird"}}}'
    )
    state = store.load()
    assert state.completed
    assert state.file("labels").confirmed == 5
    assert state.file("masters").phase == "pending"


def test_other_version_is_not_used(tmp_path: Path) -> None:
    a = StateStore(tmp_path, "20261001")
    st = a.load()
    st.extraction_complete_sent = True
    a.save(st)
    assert not StateStore(tmp_path, "20261101").load().completed


def test_a_restarted_version_keeps_its_verified_downloads_and_nothing_else(tmp_path: Path) -> None:
    """`--reprocess`: every count and completion reset; a file verified against CHECKSUM.txt is
    not downloaded again (phase `downloaded`), a local one is read from its first record."""
    store = StateStore(tmp_path, "20261001")
    state = store.load()
    state.extraction_complete_sent = True
    for name, f in state.files.items():
        f.phase, f.confirmed, f.records, f.malformed, f.file_complete_sent = "completed", 9, 8, 1, True
        f.file = f"discogs_20261001_{name}.xml.gz"
    state.file("releases").sha256, state.file("releases").bytes_total = "ab" * 32, 1234
    store.save(state)

    restarted = store.load().restarted()
    assert not restarted.completed and restarted.version == "20261001"
    assert restarted.full  # every record in full, not only what changed since the previous version
    store.save(restarted)
    assert store.load().full
    releases = restarted.file("releases")
    assert (releases.phase, releases.sha256, releases.bytes_total) == ("downloaded", "ab" * 32, 1234)
    assert {n: f.phase for n, f in restarted.files.items() if n != "releases"} == {
        "artists": "pending",
        "labels": "pending",
        "masters": "pending",
    }
    for f in restarted.files.values():
        assert (f.confirmed, f.records, f.malformed, f.file_complete_sent) == (0, 0, 0, False)
        assert f.file is not None and f.file.endswith(".xml.gz")
