"""Look into the dead-letter queues and send what failed back once its cause is fixed.

    python -m common.dlq list                         every DLQ and how many messages it holds
    python -m common.dlq show graphinator.releases    the first messages: reason, kind, record ids
    python -m common.dlq replay graphinator.releases [--match TEXT] [--limit N]
    python -m common.dlq purge graphinator.releases --yes

A queue is named by its consumer queue or its DLQ (`graphinator.releases` or
`graphinator.releases.dlq`; `curator.sync-requests` for sync requests). Connects with AMQP_URL.

`show` takes messages with basic.get and hands them back unacknowledged, so they stay where they
were. `replay` republishes a message to the consumer queue it came from (only that consumer gets it
again, through the default exchange, confirmed) and then acknowledges it in the DLQ; a crash in
between replays it twice, which the idempotent writers make harmless. What can never succeed is
kept, moved to the end of the DLQ (copied there, confirmed, then acknowledged): a record the
extractor found malformed (`malformed_record`: fix the dump or the parser and re-run the
extractor), an unchanged item (it carries no record: the store that refused it lacks the record,
which only `python -m extractor --reprocess` sends again) and anything that is not a pipeline
message. A message the consumer refuses again comes back to the DLQ with its reason; one pass never
takes more than the queue held when it started, so it cannot loop."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import aio_pika
import orjson
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from aio_pika.exceptions import AMQPError, ChannelClosed

from common.amqp import (
    DATA_TYPES,
    DLQ_REASON_HEADER,
    SYNC_QUEUE,
    RecordConsumer,
    declare_record_queues,
    declare_sync_topology,
    dlq_name,
    open_confirming_channel,
    publish_routed,
    record_queue_name,
)
from common.clients import create_amqp_connection
from common.settings import AmqpSettings

REPLAYED_HEADER: Final = "x-discogsography-replayed"
# Set by the consumers and the extractor on what they dead-letter; dropped when it is replayed.
_DEAD_LETTER_HEADERS: Final = (
    DLQ_REASON_HEADER,
    "x-discogsography-consumer",
    "x-discogsography-routing-key",
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
)
_RECORD_KINDS: Final = frozenset({"record", "records", "file_complete", "extraction_complete"})
_REPLAY_WINDOW: Final = 200  # messages in flight, confirmed together
_IDLE_S: Final = 5.0  # a DLQ that delivers nothing for this long is done


class UnknownQueueError(ValueError):
    """Not one of the DLQs of design §4."""


def known_dlqs() -> list[str]:
    record_queues = [record_queue_name(c, t) for c in ("graphinator", "tableinator") for t in DATA_TYPES]
    return [dlq_name(q) for q in (*record_queues, SYNC_QUEUE)]


def resolve(name: str) -> str:
    """The DLQ meant by `name` (a consumer queue or its DLQ)."""
    dlq = name if name.endswith(".dlq") else dlq_name(name)
    if dlq not in known_dlqs():
        raise UnknownQueueError(f"{name!r} is not a dead-letter queue; known: {', '.join(known_dlqs())}")
    return dlq


def source_queue(dlq: str) -> str:
    return dlq.removesuffix(".dlq")


@dataclass
class DeadLetter:
    """What an operator needs to know about one dead-lettered message."""

    reason: str
    kind: str
    data_type: str | None = None
    version: str | None = None
    ids: list[int] = field(default_factory=list)
    size: int = 0
    replayed: int = 0

    @property
    def replayable(self) -> bool:
        return self.kind in _RECORD_KINDS or self.kind == "sync_request"


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _replays(headers: dict[str, Any]) -> int:
    value = headers.get(REPLAYED_HEADER)
    return value if isinstance(value, int) else 0


def _reason(headers: dict[str, Any]) -> str:
    if DLQ_REASON_HEADER in headers:
        return _text(headers[DLQ_REASON_HEADER])
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        death = deaths[0]
        return (
            f"broker: {_text(death.get('reason'))} in {_text(death.get('queue'))} "
            f"({death.get('count', 1)} time(s))"
        )
    return "no reason recorded"


def describe(message: AbstractIncomingMessage) -> DeadLetter:
    headers = dict(message.headers or {})
    letter = DeadLetter(
        reason=_reason(headers),
        kind="not JSON",
        size=len(message.body),
        replayed=_replays(headers),
    )
    try:
        body = orjson.loads(message.body)
    except orjson.JSONDecodeError:
        return letter
    if not isinstance(body, dict):
        letter.kind = "not a pipeline message"
        return letter
    letter.kind = str(body.get("kind") or "not a pipeline message")
    letter.data_type = body.get("type") or _text(headers.get("x-discogsography-type", "")) or None
    letter.version = body.get("version")
    if letter.kind == "record" and isinstance(body.get("id"), int):
        letter.ids = [body["id"]]
        if body.get("record") is None:
            # Says "you hold this record already": refused because the store does not, which
            # sending it again cannot change.
            letter.kind = "unchanged item"
    elif letter.kind == "records" and isinstance(body.get("records"), list):
        letter.ids = [
            r["id"] for r in body["records"] if isinstance(r, dict) and isinstance(r.get("id"), int)
        ]
    return letter


async def depths(connection: AbstractConnection) -> dict[str, int]:
    """The message count of every DLQ that exists (one not declared yet is left out)."""
    out: dict[str, int] = {}
    for name in known_dlqs():
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(name, passive=True)
            out[name] = int(queue.declaration_result.message_count or 0)
        except ChannelClosed:  # no such queue: the broker closed the channel
            continue
        finally:
            if not channel.is_closed:
                await channel.close()
    return out


async def peek(connection: AbstractConnection, dlq: str, limit: int) -> list[DeadLetter]:
    """The first `limit` messages of `dlq`, left in the queue."""
    channel = await connection.channel()
    try:
        queue = await channel.declare_queue(dlq, passive=True)
        letters: list[DeadLetter] = []
        while len(letters) < limit and (message := await queue.get(no_ack=False, fail=False)) is not None:
            letters.append(describe(message))
        return letters
    finally:
        await channel.close()  # hands every message back, unacknowledged


@dataclass
class ReplayResult:
    replayed: int = 0
    kept: int = 0  # not replayable, or not matching
    kept_reasons: dict[str, int] = field(default_factory=dict)


def _copy(message: AbstractIncomingMessage, headers: dict[str, Any]) -> aio_pika.Message:
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type or "application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        timestamp=message.timestamp,
    )


def _replay_message(message: AbstractIncomingMessage) -> aio_pika.Message:
    headers = {k: v for k, v in (message.headers or {}).items() if k not in _DEAD_LETTER_HEADERS}
    headers[REPLAYED_HEADER] = _replays(headers) + 1
    return _copy(message, headers)


async def replay(
    connection: AbstractConnection, dlq: str, *, match: str | None = None, limit: int | None = None
) -> ReplayResult:
    """Send the replayable messages of `dlq` (whose reason contains `match`, at most `limit`) back
    to the queue they came from; keep the rest in the DLQ, moved behind what it held."""
    target = source_queue(dlq)
    publisher = await open_confirming_channel(connection)
    reader = await connection.channel()
    result = ReplayResult()
    window: list[tuple[AbstractIncomingMessage, bool]] = []

    async def redeclare() -> None:
        if target == SYNC_QUEUE:
            await declare_sync_topology(publisher)
        else:
            consumer: RecordConsumer = "graphinator" if target.startswith("graphinator.") else "tableinator"
            await declare_record_queues(publisher, consumer, (target.split(".", 1)[1],))

    async def settle(window: list[tuple[AbstractIncomingMessage, bool]]) -> None:
        # Each message first reaches its queue (confirmed), then leaves the DLQ: a crash between
        # the two copies it, never loses it.
        exchange = publisher.default_exchange
        await asyncio.gather(
            *(
                publish_routed(exchange, _replay_message(m), target, redeclare)
                if send
                else publish_routed(exchange, _copy(m, dict(m.headers or {})), dlq, redeclare)
                for m, send in window
            )
        )
        for message, _ in window:
            await message.ack()
        window.clear()

    try:
        await reader.set_qos(prefetch_count=_REPLAY_WINDOW)
        queue = await reader.declare_queue(dlq, passive=True)
        # Never more than the queue held at the start: what is kept, and what a consumer
        # dead-letters again meanwhile, lands behind these and waits for the next pass.
        remaining = int(queue.declaration_result.message_count or 0)
        if remaining and limit != 0:
            async with queue.iterator(timeout=_IDLE_S) as deliveries:
                async for message in deliveries:
                    remaining -= 1
                    letter = describe(message)
                    send = letter.replayable and (match is None or match in letter.reason)
                    if send:
                        result.replayed += 1
                    else:
                        why = "no match" if letter.replayable else f"cannot be replayed ({letter.kind})"
                        result.kept += 1
                        result.kept_reasons[why] = result.kept_reasons.get(why, 0) + 1
                    window.append((message, send))
                    done = remaining == 0 or (limit is not None and result.replayed >= limit)
                    if done or len(window) >= _REPLAY_WINDOW:
                        await settle(window)
                    if done:
                        break
    except TimeoutError:  # the queue ran dry early: someone else took messages meanwhile
        await settle(window)
    finally:
        await reader.close()  # what was delivered beyond the pass goes back, unacknowledged
        await publisher.close()
    return result


async def purge(connection: AbstractConnection, dlq: str) -> int:
    channel = await connection.channel()
    try:
        queue = await channel.declare_queue(dlq, passive=True)
        return int(getattr(await queue.purge(), "message_count", 0) or 0)
    finally:
        await channel.close()


# ---- command line --------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m common.dlq", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every DLQ and its message count")
    show = sub.add_parser("show", help="the first messages of a DLQ (they stay in it)")
    show.add_argument("queue")
    show.add_argument("--limit", type=int, default=20)
    again = sub.add_parser("replay", help="send the messages back to the queue they came from")
    again.add_argument("queue")
    again.add_argument("--match", help="only messages whose reason contains this text")
    again.add_argument("--limit", type=int, help="at most this many")
    drop = sub.add_parser("purge", help="delete every message of a DLQ")
    drop.add_argument("queue")
    drop.add_argument("--yes", action="store_true", help="really delete them")
    return parser


def _print(as_json: bool, data: dict[str, Any], text: str) -> None:
    print(orjson.dumps(data).decode() if as_json else text)


async def run(args: argparse.Namespace, connection: AbstractConnection) -> int:
    if args.command == "list":
        for name, count in (await depths(connection)).items():
            _print(args.json, {"queue": name, "messages": count}, f"{name:34} {count}")
        return 0
    dlq = resolve(args.queue)
    if args.command == "show":
        letters = await peek(connection, dlq, args.limit)
        for n, letter in enumerate(letters, 1):
            ids = ", ".join(map(str, letter.ids[:10])) + (" ..." if len(letter.ids) > 10 else "")
            text = f"{n:4}. {letter.kind} {letter.data_type or ''} {letter.version or ''} ids [{ids}]"
            text += f"\n      reason: {letter.reason}" + (
                f" (replayed {letter.replayed} time(s) before)" if letter.replayed else ""
            )
            _print(args.json, {"position": n, **asdict(letter)}, text)
        if not letters and not args.json:
            print(f"{dlq} is empty")
        return 0
    if args.command == "replay":
        result = await replay(connection, dlq, match=args.match, limit=args.limit)
        text = f"replayed {result.replayed} to {source_queue(dlq)}, kept {result.kept} in {dlq}"
        text += "".join(f"\n  kept {count}: {why}" for why, count in result.kept_reasons.items())
        _print(args.json, {"queue": dlq, **asdict(result)}, text)
        return 0
    if not args.yes:
        print(f"purge deletes every message of {dlq}; add --yes to do it", file=sys.stderr)
        return 2
    purged = await purge(connection, dlq)
    _print(args.json, {"queue": dlq, "purged": purged}, f"purged {purged} from {dlq}")
    return 0


async def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command != "list":
            resolve(args.queue)
    except UnknownQueueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        connection = await create_amqp_connection(AmqpSettings(), attempts=1)
    except Exception as exc:
        print(f"error: cannot reach RabbitMQ: {exc}", file=sys.stderr)
        return 1
    try:
        return await run(args, connection)
    except (AMQPError, ChannelClosed) as exc:
        print(f"error: RabbitMQ refused: {exc}", file=sys.stderr)
        return 1
    finally:
        await connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(_main(argv))


if __name__ == "__main__":
    sys.exit(main())
