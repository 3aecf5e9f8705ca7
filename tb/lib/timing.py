"""Waiting on a condition in simulated time (shared by the platform and the agents)."""

from __future__ import annotations

from collections.abc import Callable

from cocotb import simulator
from cocotb.triggers import Timer
from cocotb.utils import get_sim_steps

_steps_per_ns: int | None = None


def now_ns() -> float:
    """``get_sim_time("ns")``, the same value, without the unit look-up each call pays: the
    monitors stamp every event with it. The harness's step (1 ps) divides a nanosecond."""
    global _steps_per_ns  # known only once the simulator runs
    if _steps_per_ns is None:
        _steps_per_ns = get_sim_steps(1, "ns")
    high, low = simulator.get_sim_time()
    return (high << 32 | low) / _steps_per_ns


async def wait_until(cond: Callable[[], bool], timeout_ns: int = 50_000_000, step_ns: int = 10_000) -> bool:
    """Poll ``cond`` every ``step_ns``; False if it is still false after ``timeout_ns``. One
    timer serves every poll (a trigger can be awaited again): a wait for a 100 ms FLR polls
    10 000 times."""
    deadline = now_ns() + timeout_ns
    step = Timer(step_ns, "ns")
    while not cond():
        if now_ns() > deadline:
            return False
        await step
    return True


async def expect_within(cond: Callable[[], bool], timeout_ns: int = 50_000_000, step_ns: int = 20_000) -> None:
    """:func:`wait_until`, failing the test if ``cond`` does not come true in time."""
    assert await wait_until(cond, timeout_ns, step_ns), "condition not reached in time"
