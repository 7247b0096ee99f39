"""What a store writer reports for one batch, shared by graphinator and tableinator.

A writer refuses a record it cannot even map (bad shape) by listing it in `rejected` with the
reason, and still commits the rest of the batch; the consumer dead-letters the rejected ones. A
failure of the store itself is raised instead (the consumer retries or bisects).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar


@dataclass
class WriteResult:
    written: int = 0  # inserted or changed (the content was (re)written)
    unchanged: int = 0  # same sha256 already stored; only the dump version was bumped
    stale: int = 0  # an older dump version than the one stored; ignored
    # transient failures the writer retried itself and then overcame (e.g. a deadlock the Neo4j
    # driver's managed transaction re-ran): the consumer counts them with its own retries
    retries: int = 0
    # (the message object the writer was given, reason): a RecordMessage or the writer's own form
    rejected: list[tuple[Any, str]] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return self.written + self.unchanged + self.stale

    def merge(self, other: WriteResult) -> WriteResult:
        return WriteResult(
            written=self.written + other.written,
            unchanged=self.unchanged + other.unchanged,
            stale=self.stale + other.stale,
            retries=self.retries + other.retries,
            rejected=[*self.rejected, *other.rejected],
        )


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
