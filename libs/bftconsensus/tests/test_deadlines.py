"""The drivers' one-task timers: order, re-arming, cancelling, an earlier deadline waking the task."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from bftconsensus._deadlines import Deadlines

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class _Recorder:
    """Records fired names; ``done`` is set once ``want`` have fired."""

    def __init__(self, want: int) -> None:
        self.want = want
        self.fired: list[str] = []
        self.done = anyio.Event()

    def __call__(self, name: str) -> None:
        self.fired.append(name)
        if len(self.fired) >= self.want:
            self.done.set()


async def test_deadlines_fire_in_order_and_honour_rearm_and_cancel() -> None:
    rec = _Recorder(3)
    timers = Deadlines(rec)
    async with anyio.create_task_group() as tg:
        tg.start_soon(timers.run)
        await anyio.lowlevel.checkpoint()  # the task now sleeps with nothing due
        timers.set("late", 0.20)
        timers.set("cancelled", 0.05)
        timers.set("early", 0.05)  # earlier than anything armed: must wake the task
        timers.set("moved", 0.01)
        timers.set("moved", 0.10)  # re-arming replaces the deadline
        timers.cancel("cancelled")
        assert timers.pending("early")
        assert not timers.pending("cancelled")
        with anyio.fail_after(5):
            await rec.done.wait()
        await anyio.sleep(0.1)  # nothing else is due
        tg.cancel_scope.cancel()
    assert rec.fired == ["early", "moved", "late"]


async def test_a_timer_can_rearm_itself_from_its_callback() -> None:
    rec = _Recorder(3)

    def fire(name: str) -> None:
        rec(name)
        if len(rec.fired) < 3:
            timers.set(name, 0.01)

    timers = Deadlines(fire)
    async with anyio.create_task_group() as tg:
        tg.start_soon(timers.run)
        timers.set("tick", 0.01)
        with anyio.fail_after(5):
            await rec.done.wait()
        tg.cancel_scope.cancel()
    assert rec.fired == ["tick"] * 3
    assert not timers.pending("tick")


async def test_a_timer_fired_first_can_cancel_or_rearm_others_due_in_the_same_pass() -> None:
    """The primary's two batch timers can come due together; the first to fire cancels the other."""
    fired: list[str] = []
    c_fired = anyio.Event()

    def fire(name: str) -> None:
        fired.append(name)
        if name == "a":
            timers.cancel("b")
            timers.set("c", 0.05)
        if name == "c":
            c_fired.set()

    timers = Deadlines(fire)
    timers.set("a", 0.0)
    timers.set("b", 0.0)
    timers.set("c", 0.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(timers.run)  # one pass finds all three due: a fires first (set first)
        with anyio.fail_after(5):
            await c_fired.wait()
        tg.cancel_scope.cancel()
    assert fired == ["a", "c"]  # b was cancelled, c re-armed to later, each fired as it stood
