"""Message bodies on the broker (design §4). Every body is JSON (orjson) with `schema_version`.

record           {"schema_version", "kind": "record", "type", "id", "sha256", "version", "record"}
records          {"schema_version", "kind": "records", "count", "type", "version",
                  "records": [{"id", "sha256", "record"}, ...]}    several records of one type and
                 version in one message (what the extractor publishes: one broker message per
                 record would cost the broker more CPU than parsing the record). `count` comes
                 right after `kind` so a consumer can size its batches from the first bytes.
file_complete    {"schema_version", "kind": "file_complete", "type", "version", "record_count"}
extraction_complete {"schema_version", "kind": "extraction_complete", "type", "version", "record_counts"}
sync_request     {"schema_version", "kind": "sync_request", "sync_id", "user_id", "requested_at"}

`version` is the dump version (YYYYMMDD). Control messages go to every queue of their type: the
extractor publishes `extraction_complete` once per data type, with that type as routing key.

An unchanged item has `"record": null`: the record is byte for byte the one of the previous dump,
whose normalised form (hash `sha256`) the stores already hold; a consumer only records that it is
still in this dump version (see docs/records.md).
"""

from __future__ import annotations

from typing import Any, Final, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION: Final = 1


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = SCHEMA_VERSION

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))


class RecordMessage(_Message):
    kind: Literal["record"] = "record"
    type: str
    id: int
    sha256: str = Field(min_length=64, max_length=64)
    version: str
    record: dict[str, Any] | None  # None: an unchanged item

    @property
    def unchanged(self) -> bool:
        """An unchanged item: the stores should already hold this record with this sha256."""
        return self.record is None


class RecordItem(BaseModel):
    """One record inside a `records` message (type and version are the message's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int
    sha256: str = Field(min_length=64, max_length=64)
    record: dict[str, Any] | None  # None: an unchanged item


class RecordBatch(_Message):
    kind: Literal["records"] = "records"
    count: int = Field(ge=1)
    type: str
    version: str
    records: list[RecordItem] = Field(min_length=1)

    @model_validator(mode="after")
    def _count_matches(self) -> RecordBatch:
        if self.count != len(self.records):
            raise ValueError(f"count is {self.count} but the message holds {len(self.records)} records")
        return self

    def messages(self) -> list[RecordMessage]:
        """The records as single `RecordMessage`s (what the writers take)."""
        return [
            RecordMessage(type=self.type, version=self.version, id=r.id, sha256=r.sha256, record=r.record)
            for r in self.records
        ]


RECORDS_BODY_PREFIX: Final = b'{"schema_version":%d,"kind":"records","count":' % SCHEMA_VERSION


def records_body_head(data_type: str, version: str, count: int) -> bytes:
    """The start of a `records` body up to the opening `[` of its list (keys in the documented
    order: `count` early, see the module docstring)."""
    tail = orjson.dumps({"type": data_type, "version": version})[1:-1]
    return RECORDS_BODY_PREFIX + str(count).encode() + b"," + tail + b',"records":['


def record_item_bytes(record_id: int, sha256: str, record_json: bytes) -> bytes:
    """One element of a `records` list around the already-serialised record (`b"null"` for an
    unchanged item)."""
    return b"".join(
        (
            b'{"id":',
            str(record_id).encode(),
            b',"sha256":"',
            sha256.encode(),
            b'","record":',
            record_json,
            b"}",
        )
    )


def records_body(data_type: str, version: str, items: list[bytes]) -> bytes:
    """A whole `records` body from `record_item_bytes` elements."""
    return records_body_head(data_type, version, len(items)) + b",".join(items) + b"]}"


def records_count_hint(body: bytes) -> int:
    """How many records a body carries, read from its first bytes (1 for anything that is not a
    `records` body as the extractor writes it). Only a sizing hint: decoding is authoritative."""
    if not body.startswith(RECORDS_BODY_PREFIX):
        return 1
    start = len(RECORDS_BODY_PREFIX)
    end = body.find(b",", start, start + 12)
    digits = body[start:end] if end > 0 else b""
    return int(digits) if digits.isdigit() and digits else 1


def single_record_body(message: Any) -> bytes:
    """A `record` body for one record of a batch (e.g. to dead-letter it alone). `message` is a
    `RecordMessage` or any object with the same attributes whose `record` is a dict, raw JSON or
    None (an unchanged item: `"record":null`)."""
    if isinstance(message, RecordMessage):
        return message.to_bytes()
    record = message.record
    raw = orjson.dumps(record) if isinstance(record, dict) or record is None else bytes(record)
    head = orjson.dumps(
        {"schema_version": SCHEMA_VERSION, "kind": "record", "type": message.type, "version": message.version}
    )
    # {..., "version": v} + the id/sha256/record keys of a `records` element
    return head[:-1] + b"," + record_item_bytes(message.id, str(message.sha256), raw)[1:]


class FileComplete(_Message):
    kind: Literal["file_complete"] = "file_complete"
    type: str
    version: str
    record_count: int


class ExtractionComplete(_Message):
    kind: Literal["extraction_complete"] = "extraction_complete"
    type: str
    version: str
    record_counts: dict[str, int]


class SyncRequest(_Message):
    kind: Literal["sync_request"] = "sync_request"
    sync_id: str
    user_id: str
    requested_at: str


PipelineMessage = RecordMessage | RecordBatch | FileComplete | ExtractionComplete


def parse_pipeline_message(body: bytes) -> PipelineMessage:
    """Decode a pipeline body; raises ValueError (bad JSON or shape) for the caller to dead-letter."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("body is not a JSON object")
    kind = data.get("kind")
    model: type[PipelineMessage]
    if kind == "record":
        model = RecordMessage
    elif kind == "records":
        model = RecordBatch
    elif kind == "file_complete":
        model = FileComplete
    elif kind == "extraction_complete":
        model = ExtractionComplete
    else:
        raise ValueError(f"unknown message kind {kind!r}")
    return model.model_validate(data)


def decode_pipeline_message(body: bytes) -> PipelineMessage | list[RecordMessage]:
    """`parse_pipeline_message`, with a `records` message as the list of its records (what the
    writers take). The consumers' hot path is `common.raw_messages.decode_message`; this decodes
    what it leaves to pydantic (control messages, invalid bodies) and is `BatchConsumer`'s default."""
    message = parse_pipeline_message(body)
    return message.messages() if isinstance(message, RecordBatch) else message
