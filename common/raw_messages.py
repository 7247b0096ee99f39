"""Record messages decoded with the record left as raw JSON (msgspec.Raw): the envelope is checked
(the same rules as `common.messages.RecordMessage`) and the record is decoded only where a writer
needs it. tableinator sends the bytes to its JSONB column as they are; graphinator decodes only
the records its hash check says must be written (an unchanged record is never decoded)."""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from common.consumer import decode_message as consumer_decode
from common.messages import RECORDS_BODY_PREFIX, PipelineMessage, RecordMessage


class RawRecord(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """A record message as the writers read it on the hot path: the envelope decoded and checked
    (the same rules as `RecordMessage`), the record itself kept as its raw JSON bytes."""

    schema_version: int
    kind: Literal["record"]
    type: str
    id: int
    sha256: Annotated[str, msgspec.Meta(min_length=64, max_length=64)]
    version: str
    record: msgspec.Raw


class _RawItem(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    id: int
    sha256: Annotated[str, msgspec.Meta(min_length=64, max_length=64)]
    record: msgspec.Raw


class _RawBatch(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """A `records` message (common.messages) with each record kept as raw JSON."""

    schema_version: int
    kind: Literal["records"]
    count: int
    type: str
    version: str
    records: list[_RawItem]


# gc=False: thousands of these are alive at once (prefetch, batches) and none can be part of a
# reference cycle, so the cyclic collector need not walk them (reference counting frees them).
_ENVELOPE: Final = msgspec.json.Decoder(RawRecord)
_BATCH: Final = msgspec.json.Decoder(_RawBatch)


def _is_object(raw: msgspec.Raw) -> bool:
    return bytes(memoryview(raw)[:1]) == b"{"


def decode_message(body: bytes) -> RawRecord | list[RawRecord] | PipelineMessage | list[RecordMessage]:
    """A record message as a `RawRecord`, a `records` message as a list of them (a few µs per
    record, no Python object per JSON value); control messages and anything unusual go through
    `common.consumer.decode_message` (ValueError with the reason for an invalid body)."""
    if body.startswith(RECORDS_BODY_PREFIX):
        try:
            batch = _BATCH.decode(body)
        except msgspec.DecodeError:
            return consumer_decode(body)
        if batch.count != len(batch.records) or not batch.records:
            return consumer_decode(body)
        if not all(_is_object(item.record) for item in batch.records):
            return consumer_decode(body)
        return [
            RawRecord(batch.schema_version, "record", batch.type, i.id, i.sha256, batch.version, i.record)
            for i in batch.records
        ]
    try:
        message = _ENVELOPE.decode(body)
    except msgspec.DecodeError:
        return consumer_decode(body)
    if not _is_object(message.record):
        return consumer_decode(body)  # the record is not an object: pydantic says why
    return message
