"""The device's DMA engines: a round-robin arbiter over every runnable ring of every function.

A ring with work (a TX doorbell, an RX frame waiting for buffers) is *kicked* onto one
ready queue. ``engines`` workers take rings from its head, give each one *turn* of at
most ``QUEUE_BUDGET`` descriptors, and put a ring that still has work back at the tail.
So a ring with thousands of posted descriptors gets one turn in every round like any
other: a victim queue waits at most one turn of each ring ahead of it
(``docs/security.md``). Each kick brings one more engine to the rings while fewer than
``engines`` serve them; an engine with nothing left to do parks on its own event, so an
idle device costs no timer and no wake-up, and a later kick wakes a parked engine rather
than starting another task.

``turns`` counts turns; each turn is numbered (``run.turn_number``) and reported as a
:class:`~model.events.Turn` event, so fairness can be measured in engine turns.  An engine
yields to the simulator between turns, so a doorbell rung meanwhile joins the round even
when a turn's DMA takes no simulated time (the transaction-level fabric).
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from typing import Protocol

import cocotb
from cocotb.triggers import Event, NullTrigger

from datasheet import device


class Runnable(Protocol):
    """A ring's run as the scheduler sees it (see :class:`model.queues.RingRun`)."""

    cancelled: bool
    queued: bool
    active: bool
    again: bool
    turn_number: int

    def turn(self) -> Awaitable[bool]: ...


class Wakeup(Protocol):
    """An event a parked engine waits on (cocotb's or asyncio's ``Event``)."""

    def set(self) -> None: ...

    def clear(self) -> None: ...

    def wait(self) -> Awaitable: ...


class Scheduler:
    def __init__(
        self,
        engines: int = device.DMA_ENGINES,
        spawn: Callable[[Awaitable], object] = cocotb.start_soon,
        pause: Callable[[], Awaitable] = NullTrigger,
        wakeup: Callable[[], Wakeup] = Event,
    ):
        if engines < 1:
            raise ValueError(f"{engines} DMA engines")
        self.engines = engines
        self._spawn = spawn
        self._pause = pause
        self._wakeup = wakeup
        self._parked: list[Wakeup] = []  # the events of the engines waiting for a kick
        self.ready: collections.deque = collections.deque()
        self.running = 0  # engines serving rings (or woken to)
        self.started = 0  # engines started, serving or parked
        self.turns = 0

    @property
    def busy(self) -> bool:
        """Whether a ring waits for a turn or an engine is serving one."""
        return bool(self.ready) or self.running > 0

    def kick(self, run: Runnable) -> None:
        """``run`` has work: queue it for a turn (once), and bring one more engine to the rings
        if fewer than ``engines`` serve them: a parked one if any, else a new one."""
        if run.cancelled:
            return
        if run.active:
            run.again = True  # it gets another turn after the current one
            return
        if run.queued:
            return
        run.queued = True
        self.ready.append(run)
        if self.running < self.engines:
            self.running += 1
            if self._parked:
                self._parked.pop().set()
            else:
                self.started += 1
                self._spawn(self._engine())

    async def _engine(self) -> None:
        wake = self._wakeup()
        try:
            while True:
                await self._serve()
                self.running -= 1
                wake.clear()
                self._parked.append(wake)
                await wake.wait()
        finally:
            if wake in self._parked:
                self._parked.remove(wake)
            self.started -= 1

    async def _serve(self) -> None:
        """Give turns until no ring is ready."""
        while self.ready:
            run = self.ready.popleft()
            run.queued = False
            if run.cancelled:
                continue
            run.active, run.again = True, False
            self.turns += 1
            run.turn_number = self.turns
            try:
                more = await run.turn()  # a turn contains its own faults
            finally:
                run.active = False
            if (more or run.again) and not run.cancelled:
                run.queued = True
                self.ready.append(run)
            await self._pause()  # let rings rung meanwhile join the round
