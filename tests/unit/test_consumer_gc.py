"""The batch workers switch Python's automatic cyclic collector off and collect on a timer."""

from __future__ import annotations

import asyncio
import gc
import weakref

from common.consumer import collect_cycles, tune_gc_for_batches


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def make_cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


async def test_cycles_are_collected_on_the_timer_and_not_before() -> None:
    was_enabled = gc.isenabled()
    try:
        tune_gc_for_batches()
        assert not gc.isenabled()
        ref = make_cycle()
        for _ in range(50_000):  # far more allocations than would trigger an automatic collection
            make_cycle()
        assert ref() is not None, "the automatic collector ran"
        stop = asyncio.Event()
        collector = asyncio.create_task(collect_cycles(stop, 0.05))
        for _ in range(100):
            if ref() is None:
                break
            await asyncio.sleep(0.02)
        assert ref() is None, "the timer did not collect the cycle"
        stop.set()
        await asyncio.wait_for(collector, 1)
    finally:
        if was_enabled:
            gc.enable()
        gc.collect()
