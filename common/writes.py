"""What a store writer reports for one batch, shared by graphinator and tableinator.

A writer refuses a record it cannot even map (bad shape) by listing it in `rejected` with the
reason, and still commits the rest of the batch; the consumer dead-letters the rejected ones. So
it refuses an unchanged item (no record, docs/records.md) whose sha256 the store does not hold. A
failure of the store itself is raised instead (the consumer retries or bisects).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

# The version of graphinator's mapping (records -> nodes, properties, relationships). Raise it with
# any change of what a record writes: nodes of an older model are rewritten even when their sha256
# is unchanged (the hash covers the record, not what graphinator makes of it). It lives here because
# the extractor's record index (extractor.baseline) is tied to it: an index made under another model
# is not used, so the next dump version arrives in full and reaches every node.
GRAPH_MODEL: Final = 1


@dataclass
class WriteResult:
    written: int = 0  # inserted or changed (the content was (re)written)
    unchanged: int = 0  # same sha256 already stored; only the dump version was bumped
    stale: int = 0  # an older dump version than the one stored; ignored
    # unchanged items (no record in the message) whose node an older graph model wrote: only the
    # dump version was bumped, the content waits for a reprocessed dump (graphinator)
    outdated: int = 0
    # transient failures the writer retried itself and then overcame (e.g. a deadlock the Neo4j
    # driver's managed transaction re-ran): the consumer counts them with its own retries
    retries: int = 0
    # (the message object the writer was given, reason): a RecordMessage or the writer's own form
    rejected: list[tuple[Any, str]] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return self.written + self.unchanged + self.stale + self.outdated

    def merge(self, other: WriteResult) -> WriteResult:
        return WriteResult(
            written=self.written + other.written,
            unchanged=self.unchanged + other.unchanged,
            stale=self.stale + other.stale,
            outdated=self.outdated + other.outdated,
            retries=self.retries + other.retries,
            rejected=[*self.rejected, *other.rejected],
        )


REPROCESS_ADVICE: Final = "run the extractor with --reprocess to publish every record in full"


def unchanged_item_refusal(store: str, sha256: str, stored_sha256: str | None) -> str:
    """Why `store` ("the graph", "table releases") cannot settle an unchanged item whose record it
    does not hold (`stored_sha256` None) or holds in another version: only a full record helps."""
    if stored_sha256 is None:
        held = f"{store} does not hold the record"
    else:
        held = f"{store} holds sha256 {stored_sha256[:12]}…"
    return f"unchanged since the previous dump (sha256 {sha256[:12]}…), but {held}: {REPROCESS_ADVICE}"


class _Versioned(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def version(self) -> str: ...


M = TypeVar("M", bound=_Versioned)


def latest_per_id(messages: list[M]) -> list[M]:
    """One message per id: the newest dump version wins, then the later one in the batch."""
    best: dict[int, M] = {}
    for msg in messages:
        current = best.get(msg.id)
        if current is None or msg.version >= current.version:
            best[msg.id] = msg
    return sorted(best.values(), key=lambda m: m.id)
