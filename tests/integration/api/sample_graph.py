"""The graph of the real Discogs samples (samples/), built through the pipeline's own code:
`extractor.parser.iter_records` parses each dump file and `graphinator.writer.write_batch` writes
the records, exactly as the graphinator does with the messages the extractor publishes.

Order: the four 2020-08-06 files (artists, labels, masters, releases), then the 2026-02-01
current-layout files (labels, masters), so the newer records overwrite the older ones of the same
id like a later monthly dump would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from neo4j import AsyncDriver

from common.messages import RecordMessage
from extractor.parser import iter_records
from graphinator.writer import await_fulltext_refresh, write_batch

SAMPLES: Final = Path(__file__).resolve().parents[3] / "samples"
SAMPLE_FILES: Final = (
    ("discogs_20200806_artists.xml.gz", "artists", "20200806"),
    ("discogs_20200806_labels.xml.gz", "labels", "20200806"),
    ("discogs_20200806_masters.xml.gz", "masters", "20200806"),
    ("discogs_20200806_releases.xml.gz", "releases", "20200806"),
    ("discogs_20260201_labels_first15.xml", "labels", "20260201"),
    ("discogs_20260201_masters.xml", "masters", "20260201"),
)
BATCH: Final = 500


async def load_samples(driver: AsyncDriver) -> dict[str, int]:
    """Write every sample record (the caller empties the database first); record count per file."""
    written: dict[str, int] = {}
    for file_name, data_type, version in SAMPLE_FILES:
        batch: list[RecordMessage] = []
        count = 0
        for parsed in iter_records(SAMPLES / file_name, data_type):
            assert parsed.error is None, (file_name, parsed.ordinal, parsed.error)
            assert parsed.id is not None and parsed.record is not None and parsed.sha256 is not None
            batch.append(
                RecordMessage(
                    type=data_type, id=parsed.id, sha256=parsed.sha256, version=version, record=parsed.record
                )
            )
            count += 1
            if len(batch) >= BATCH:
                result = await write_batch(driver, data_type, batch)
                assert not result.rejected, result.rejected
                batch = []
        if batch:
            result = await write_batch(driver, data_type, batch)
            assert not result.rejected, result.rejected
        written[file_name] = count
    await await_fulltext_refresh(driver)
    return written
