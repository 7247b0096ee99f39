"""Record messages decoded with the record left as raw JSON (msgspec.Raw): the envelope is checked
(the same rules as `common.messages.RecordMessage`) and the record is decoded only where a writer
needs it. tableinator sends the bytes to its JSONB column as they are; graphinator decodes only
the records its hash check says must be written (an unchanged record is never decoded). An
unchanged item (`"record": null`, common.messages) keeps `null` as its raw record: see `unchanged`."""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from common.messages import RECORDS_BODY_PREFIX, PipelineMessage, RecordMessage
from common.messages import decode_pipeline_message as pydantic_decode

_NULL: Final = msgspec.Raw(b"null")


class RawRecord(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """A record message as the writers read it on the hot path: the envelope decoded and checked
    (the same rules as `RecordMessage`), the record itself kept as its raw JSON bytes."""

    schema_version: int
    kind: Literal["record"]
    type: str
    id: int
    sha256: Annotated[str, msgspec.Meta(min_length=64, max_length=64)]
    version: str
    record: msgspec.Raw  # `null` for an unchanged item

    @property
    def unchanged(self) -> bool:
        """An unchanged item: the stores should already hold this record with this sha256."""
        return self.record == _NULL


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


def _is_record(raw: msgspec.Raw) -> bool:
    """An object or null (an unchanged item). The JSON is valid, so `n` can only start `null`;
    anything else (a string, number, list) goes to pydantic, which says why it is refused."""
    return bytes(memoryview(raw)[:1]) in (b"{", b"n")


def decode_message(body: bytes) -> RawRecord | list[RawRecord] | PipelineMessage | list[RecordMessage]:
    """A record message as a `RawRecord`, a `records` message as a list of them (a few µs per
    record, no Python object per JSON value); control messages and anything unusual go through
    `common.messages.decode_pipeline_message` (ValueError with the reason for an invalid body)."""
    if body.startswith(RECORDS_BODY_PREFIX):
        try:
            batch = _BATCH.decode(body)
        except msgspec.DecodeError:
            return pydantic_decode(body)
        if batch.count != len(batch.records) or not batch.records:
            return pydantic_decode(body)
        if not all(_is_record(item.record) for item in batch.records):
            return pydantic_decode(body)
        return [
            RawRecord(batch.schema_version, "record", batch.type, i.id, i.sha256, batch.version, i.record)
            for i in batch.records
        ]
    try:
        message = _ENVELOPE.decode(body)
    except msgspec.DecodeError:
        return pydantic_decode(body)
    if not _is_record(message.record):
        return pydantic_decode(body)  # neither an object nor null: pydantic says why
    return message
