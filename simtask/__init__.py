"""Start a coroutine eagerly: it runs at once, and becomes a task only if it has to wait.

Shared by the model (a function's MSI-X messages, ``model.core.slice``) and the TLP fabric
(``fabric.link``, ``fabric.rc``); it imports nothing of the project.

cocotbext-pcie hands every TLP from one coroutine to the next through a queue and a task
that waits on it (a port's receive task, a switch port's arbitration task): each hand-off
costs a scheduler round, where the work handed over usually finishes without waiting for
anything. :func:`start_eagerly` runs that work in the caller's turn, up to the first thing
it waits for, and only then lets it go on as a task (asyncio's eager task factory), so the
caller never waits for it, as it never waited for the stock task; the simulated time at
which everything happens is the same.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any

import cocotb


class Resume:
    """A coroutine that ran up to a trigger: awaiting this waits for that trigger, then lets
    the coroutine go on (cocotb resumes a task by sending it None once its trigger fired)."""

    def __init__(self, coro: Coroutine[Any, Any, None], waiting_for: Any):
        self.coro = coro
        self.waiting_for = waiting_for

    def __await__(self) -> Generator[Any, None, None]:
        yield self.waiting_for
        return (yield from self.coro.__await__())


async def _fail(exc: BaseException) -> None:
    raise exc


def start_eagerly(coro: Coroutine[Any, Any, None]) -> bool:
    """Run ``coro`` now up to the first trigger it waits for, then on as a task; True if it
    had to wait (a task now runs the rest), False if it finished at once. An exception it
    raises ends a task of its own, as it would have ended the stock task, not the caller.

    What runs eagerly runs in the caller's task: it must not wait on a cocotb ``Queue``
    (``put`` and ``get`` remember the waiting task, and skip it once that task has ended)."""
    try:
        waiting_for = coro.send(None)
    except StopIteration:
        return False
    except Exception as exc:  # noqa: BLE001 -- raised again in a task of its own
        cocotb.start_soon(_fail(exc))
        return True
    cocotb.start_soon(Resume(coro, waiting_for))
    return True
