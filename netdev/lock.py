"""The lock a ring's producers take, as Linux's ``netif_tx_lock`` / ``spin_lock`` is taken: at
once when it is free, without giving up the CPU; a producer that finds it held waits its turn
(first come, first served) and is handed the lock by the holder's release.

cocotb's ``Lock`` is fair too, but each acquisition, free or not, is a trigger that goes
through the scheduler: every frame a driver queued gave every other task a turn first, which
a CPU queueing a burst of frames never does.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from cocotb.triggers import Event


class RingLock:
    """``async with lock:`` serialises the producers of one ring. ``wakeup`` makes the event a
    waiter parks on (cocotb's ``Event``; an ``asyncio.Event`` off the simulator)."""

    def __init__(self, wakeup: Callable[[], Any] = Event):
        self.held = False
        self._wakeup = wakeup
        self._waiters: deque = deque()

    def locked(self) -> bool:
        return self.held

    async def __aenter__(self) -> None:
        if not self.held:
            self.held = True
            return
        turn = self._wakeup()
        self._waiters.append(turn)
        try:
            await turn.wait()  # the releasing holder handed the lock over: still held, now ours
        except BaseException:  # the waiting task was cancelled: it never takes the lock
            if turn.is_set():
                self._release()  # handed over meanwhile: to the next in line
            else:
                self._waiters.remove(turn)
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        if self._waiters:
            self._waiters.popleft().set()
        else:
            self.held = False
