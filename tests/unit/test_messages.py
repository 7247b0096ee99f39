"""Record message decoding (common.messages, common.raw_messages): unchanged items
(`"record": null`) are accepted by every decoder and survive being dead-lettered alone; a record
that is neither an object nor null is still refused with the reason."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from common.messages import (
    RecordBatch,
    RecordMessage,
    decode_pipeline_message,
    parse_pipeline_message,
    record_item_bytes,
    records_body,
    single_record_body,
)
from common.raw_messages import RawRecord
from common.raw_messages import decode_message as raw_decode

SHA_A = "a" * 64
SHA_B = "b" * 64
VERSION = "20261101"
FULL = {"id": 1, "name": "Alexi Delano"}

DECODERS: dict[str, Callable[[bytes], Any]] = {"raw": raw_decode, "pydantic": decode_pipeline_message}


def batch_body(*items: bytes) -> bytes:
    return records_body("artists", VERSION, list(items))


def mixed_body() -> bytes:
    """A full record, then an unchanged item, as the extractor builds them."""
    return batch_body(record_item_bytes(1, SHA_A, orjson.dumps(FULL)), record_item_bytes(2, SHA_B, b"null"))


def single_body(record: Any) -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1,
            "kind": "record",
            "type": "artists",
            "id": 2,
            "sha256": SHA_B,
            "version": VERSION,
            "record": record,
        }
    )


@pytest.mark.parametrize("decoder", DECODERS)
def test_a_records_message_with_an_unchanged_item_decodes(decoder: str) -> None:
    decoded = DECODERS[decoder](mixed_body())
    assert isinstance(decoded, list)
    assert [(m.id, m.sha256, m.version, m.unchanged) for m in decoded] == [
        (1, SHA_A, VERSION, False),
        (2, SHA_B, VERSION, True),
    ]
    if decoder == "raw":
        assert all(isinstance(m, RawRecord) for m in decoded)  # the fast path, not the fallback
        assert orjson.loads(bytes(decoded[0].record)) == FULL
    else:
        assert all(isinstance(m, RecordMessage) for m in decoded)
        assert (decoded[0].record, decoded[1].record) == (FULL, None)


@pytest.mark.parametrize("decoder", DECODERS)
def test_an_unchanged_item_dead_lettered_alone_is_a_record_message_with_a_null_record(decoder: str) -> None:
    unchanged = DECODERS[decoder](mixed_body())[1]
    body = single_record_body(unchanged)
    assert orjson.loads(body) == orjson.loads(single_body(None))
    alone = parse_pipeline_message(body)
    assert isinstance(alone, RecordMessage)
    assert (alone.id, alone.sha256, alone.record, alone.unchanged) == (2, SHA_B, None, True)
    # ... and it decodes again as an unchanged item (a DLQ shovelled back onto the queue)
    again = DECODERS[decoder](body)
    assert (again.id, again.sha256, again.unchanged) == (2, SHA_B, True)
    if decoder == "raw":
        assert isinstance(again, RawRecord)


def test_pydantic_models_take_a_null_record() -> None:
    batch = parse_pipeline_message(mixed_body())
    assert isinstance(batch, RecordBatch)
    assert [r.record for r in batch.records] == [FULL, None]
    [full, unchanged] = batch.messages()
    assert (full.unchanged, unchanged.unchanged, unchanged.record) == (False, True, None)
    assert b'"record":null' in unchanged.to_bytes()
    built = RecordMessage(type="artists", id=2, sha256=SHA_B, version=VERSION, record=None)
    assert built == unchanged and built.unchanged


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("record", [b'"a string"', b"5", b"[1, 2]", b"true"])
def test_a_record_that_is_neither_an_object_nor_null_is_refused(decoder: str, record: bytes) -> None:
    decode = DECODERS[decoder]
    body = batch_body(record_item_bytes(1, SHA_A, orjson.dumps(FULL)), record_item_bytes(2, SHA_B, record))
    with pytest.raises(ValueError, match=r"records\.1\.record\s+Input should be a valid dictionary"):
        decode(body)
    with pytest.raises(ValueError, match=r"record\s+Input should be a valid dictionary"):
        decode(single_body(orjson.loads(record)))
