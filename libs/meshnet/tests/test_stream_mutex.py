"""The FramedStream lock: mutual exclusion, FIFO hand-over, and cancelled waiters never leak it."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from meshnet._stream import _Mutex

pytestmark = pytest.mark.anyio


async def test_holders_never_overlap_and_are_served_in_arrival_order() -> None:
    lock = _Mutex()
    inside = 0
    order: list[int] = []

    async def user(i: int) -> None:
        nonlocal inside
        await lock.acquire()
        try:
            inside += 1
            assert inside == 1
            order.append(i)
            await anyio.sleep(0.001)
        finally:
            inside -= 1
            lock.release()

    await lock.acquire()  # hold it while every user queues, in order
    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(user, i)
            await anyio.lowlevel.checkpoint()
        lock.release()
    assert order == list(range(20))
    await lock.acquire()  # free again afterwards
    lock.release()


async def test_a_waiter_cancelled_while_waiting_leaves_the_queue() -> None:
    lock = _Mutex()
    await lock.acquire()
    with anyio.move_on_after(0.01):
        await lock.acquire()
    lock.release()
    with anyio.fail_after(1):
        await lock.acquire()  # not handed to the cancelled waiter
    lock.release()


async def test_a_waiter_cancelled_after_the_hand_over_passes_the_lock_on() -> None:
    lock = _Mutex()
    await lock.acquire()
    got_second = anyio.Event()

    async def first(scope: anyio.CancelScope) -> None:
        with scope:
            await lock.acquire()
            lock.release()  # if the hand-over wins the race with the cancellation

    async def second() -> None:
        await lock.acquire()
        got_second.set()
        lock.release()

    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()
        tg.start_soon(first, scope)
        await anyio.lowlevel.checkpoint()
        tg.start_soon(second)
        await anyio.lowlevel.checkpoint()
        lock.release()  # handed to `first`...
        scope.cancel()  # ...which is cancelled before it runs: `second` must still get it
        with anyio.fail_after(1):
            await got_second.wait()
