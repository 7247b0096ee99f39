"""Both publishers (the lean confirm-mode one and the aio-pika one) against the real broker."""

from __future__ import annotations

from typing import Any

import pytest

from common.amqp import DLQ_REASON_HEADER, declare_all_record_topology
from common.settings import AmqpSettings
from extractor.fast_publisher import FastPublisher
from extractor.publisher import PublishError, RecordPublisher

pytestmark = pytest.mark.integration

QUEUES = ("graphinator.labels", "tableinator.labels", "graphinator.labels.dlq", "tableinator.labels.dlq")


def make(kind: str, window: int) -> FastPublisher | RecordPublisher:
    url = AmqpSettings().amqp_url.get_secret_value()
    return FastPublisher(url, window) if kind == "fast" else RecordPublisher(url, window)


@pytest.fixture
async def channel(amqp_connection: Any) -> Any:
    ch = await amqp_connection.channel()
    await declare_all_record_topology(ch)
    for name in QUEUES:
        await (await ch.declare_queue(name, passive=True)).purge()
    yield ch
    # Leave the broker as found: later tests count what the consumers receive.
    for name in QUEUES:
        await (await ch.declare_queue(name, passive=True)).purge()
    await ch.close()


async def take_all(ch: Any, name: str) -> list[Any]:
    queue = await ch.declare_queue(name, passive=True)
    out = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        out.append(message)
    return out


@pytest.mark.parametrize("kind", ["fast", "aio-pika"])
async def test_pipelined_confirms_and_ordinals(channel: Any, kind: str) -> None:
    publisher = make(kind, window=100)
    async with publisher:
        publisher.reset_ordinals(10)
        big = b'{"x":"' + b"y" * 300_000 + b'"}'  # larger than one AMQP frame
        for ordinal in range(11, 1011):
            await publisher.publish(big if ordinal == 11 else b'{"n":%d}' % ordinal, "labels", ordinal)
            assert publisher.in_flight <= 100
        await publisher.publish_dead_letter(b'{"bad":1}', "labels", "missing id (record #1011)", 1011)
        assert await publisher.flush() == 1011
        assert publisher.confirmed_ordinal == 1011 and publisher.in_flight == 0
        await publisher.ping()
    for consumer in ("graphinator", "tableinator"):
        messages = await take_all(channel, f"{consumer}.labels")
        assert len(messages) == 1000
        assert messages[0].body == big
        assert messages[1].body == b'{"n":12}' and messages[-1].body == b'{"n":1010}'
        assert all(m.delivery_mode == 2 and m.content_type == "application/json" for m in messages)
        [dead] = await take_all(channel, f"{consumer}.labels.dlq")
        assert dead.body == b'{"bad":1}'
        assert dead.headers[DLQ_REASON_HEADER] == "missing id (record #1011)"


@pytest.mark.parametrize("kind", ["fast", "aio-pika"])
async def test_unroutable_message_fails_the_publisher(channel: Any, kind: str) -> None:
    publisher = make(kind, window=10)
    async with publisher:
        publisher.reset_ordinals(0)
        await publisher.publish(b"{}", "labels", 1)
        await publisher.publish(b"{}", "no-such-queue-anywhere", 2, exchange="")
        with pytest.raises(PublishError):
            await publisher.flush()
        assert publisher.confirmed_ordinal < 2  # never beyond what was really delivered
