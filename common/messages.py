"""Message bodies on the broker (design §4). Every body is JSON (orjson) with `schema_version`.

record           {"schema_version", "kind": "record", "type", "id", "sha256", "version", "record"}
file_complete    {"schema_version", "kind": "file_complete", "type", "version", "record_count"}
extraction_complete {"schema_version", "kind": "extraction_complete", "type", "version", "record_counts"}
sync_request     {"schema_version", "kind": "sync_request", "sync_id", "user_id", "requested_at"}

`version` is the dump version (YYYYMMDD). Control messages go to every queue of their type: the
extractor publishes `extraction_complete` once per data type, with that type as routing key.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

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
    record: dict[str, Any]


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


PipelineMessage = RecordMessage | FileComplete | ExtractionComplete


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
    elif kind == "file_complete":
        model = FileComplete
    elif kind == "extraction_complete":
        model = ExtractionComplete
    else:
        raise ValueError(f"unknown message kind {kind!r}")
    return model.model_validate(data)
