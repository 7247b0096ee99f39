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
