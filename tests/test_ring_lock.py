"""The rings' producer lock (netdev/lock.py), without a simulator."""

import asyncio

from netdev.lock import RingLock


def test_a_free_lock_is_taken_without_letting_other_tasks_run():
    """A producer queueing a burst keeps the CPU, as under a spinlock: nothing else runs
    between its acquisitions of a free lock."""
    order = []

    async def producer(lock):
        for n in range(3):
            async with lock:
                order.append(f"frame {n}")

    async def other():
        order.append("other task")

    async def main():
        lock = RingLock(wakeup=asyncio.Event)
        bystander = asyncio.get_running_loop().create_task(other())
        await producer(lock)
        await bystander

    asyncio.run(main())
    assert order == ["frame 0", "frame 1", "frame 2", "other task"]


def test_a_held_lock_is_handed_to_its_waiters_in_arrival_order():
    held_by = []

    async def critical(lock, name):
        async with lock:
            held_by.append(name)
            await asyncio.sleep(0)  # a doorbell that takes time: the others must wait
            await asyncio.sleep(0)
            held_by.append(name)

    async def main():
        lock = RingLock(wakeup=asyncio.Event)
        await asyncio.gather(*(critical(lock, name) for name in "abc"))
        assert not lock.locked()

    asyncio.run(main())
    assert held_by == ["a", "a", "b", "b", "c", "c"]  # never interleaved, first come first served


def test_a_waiter_cancelled_before_its_turn_never_holds_the_lock():
    """A producer cancelled while it waits (its task killed by a timeout) leaves the line:
    the lock goes to the next waiter, or is free, never to the cancelled one."""

    async def main():
        lock = RingLock(wakeup=asyncio.Event)
        held = []

        async def take(name):
            async with lock:
                held.append(name)

        async with lock:
            doomed = asyncio.ensure_future(take("cancelled"))
            after = asyncio.ensure_future(take("next"))
            await asyncio.sleep(0)  # both wait in line
            doomed.cancel()
            await asyncio.sleep(0)
        await asyncio.wait_for(after, timeout=1)  # the old hand-over to a cancelled waiter hung here
        assert doomed.cancelled() and held == ["next"] and not lock.locked()

        async with lock:  # cancelled after the hand-over, before it ran: passes it on
            doomed = asyncio.ensure_future(take("cancelled"))
            await asyncio.sleep(0)
        doomed.cancel()
        await asyncio.sleep(0)
        assert doomed.cancelled() and not lock.locked()

    asyncio.run(main())
