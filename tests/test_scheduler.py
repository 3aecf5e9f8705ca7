"""The DMA engines' round-robin arbiter (model/scheduler.py), without a simulator."""

import asyncio

import pytest

from model.core.scheduler import Scheduler


class FakeRun:
    """A ring with ``work`` turns to do; each turn yields once to the event loop."""

    def __init__(self, name: str, work: int, served: list):
        self.name, self.work, self.served = name, work, served
        self.cancelled = self.queued = self.active = self.again = False
        self.turn_number = 0
        self.inside = False

    async def turn(self) -> bool:
        assert not self.inside, f"{self.name} got two turns at once"
        self.inside = True
        self.served.append((self.turn_number, self.name))
        await asyncio.sleep(0)
        self.inside = False
        self.work -= 1
        return self.work > 0


def drive(scheduler: Scheduler, kicks) -> None:
    """Run ``kicks`` (a list of (delay in loop iterations, run)) and every turn they cause."""

    async def main():
        for delay, run in kicks:
            for _ in range(delay):
                await asyncio.sleep(0)
            scheduler.kick(run)
        while scheduler.busy:
            await asyncio.sleep(0)

    asyncio.run(main())


def make(engines=1):
    return Scheduler(
        engines,
        spawn=lambda coro: asyncio.get_running_loop().create_task(coro),
        pause=lambda: asyncio.sleep(0),
        wakeup=asyncio.Event,
    )


def turns_waited(served, name, kicked_at):
    """Turns that went to others between ``kicked_at`` and ``name``'s first turn after it."""
    for number, who in served:
        if number > kicked_at and who == name:
            return number - kicked_at - 1
    raise AssertionError(f"{name} never served")


def test_a_flooding_ring_gets_one_turn_per_round():
    """Three rings with 50 turns of work each and a victim arriving later: the flooders take
    turns in strict rotation, and the victim waits at most one turn of each ring ahead of it."""
    served = []
    scheduler = make(engines=1)
    flood = [FakeRun(f"flood{k}", 50, served) for k in range(3)]
    victim = FakeRun("victim", 1, served)
    drive(scheduler, [(0, f) for f in flood] + [(10, victim)])
    order = [who for _, who in served]
    kicked_at = len(order[: order.index("victim")])
    assert kicked_at > 3, "the victim should arrive while the flood is running"
    assert turns_waited(served, "victim", kicked_at - len(flood)) <= len(flood)
    flooders = [who for who in order if who != "victim"]
    assert flooders == [f"flood{k % 3}" for k in range(150)]  # strict rotation, no work lost


@pytest.mark.parametrize("engines", [1, 2, 4])
def test_no_ring_runs_on_two_engines_at_once(engines):
    """Rings kicked again while one of their turns runs get a later turn, never a parallel one."""
    served = []
    scheduler = make(engines)
    runs = [FakeRun(f"r{k}", 5, served) for k in range(6)]
    drive(scheduler, [(0, r) for r in runs] + [(1, r) for r in runs])
    assert scheduler.turns == 30 and not scheduler.busy
    assert all(r.work == 0 for r in runs)


def test_cancelled_runs_are_skipped_and_never_requeued():
    served = []
    scheduler = make()
    a, b = FakeRun("a", 10, served), FakeRun("b", 2, served)
    a.cancelled = True
    drive(scheduler, [(0, a), (0, b)])
    assert [who for _, who in served] == ["b", "b"]


def test_engine_count_is_validated():
    with pytest.raises(ValueError):
        Scheduler(0, spawn=lambda coro: None)


def test_idle_engines_are_woken_not_restarted():
    """Work that arrives after the device went idle is served by the engines already started:
    no more engines than DMA engines are ever started."""
    served, spawned = [], []

    def spawn(coro):
        spawned.append(coro)
        return asyncio.get_running_loop().create_task(coro)

    scheduler = Scheduler(2, spawn=spawn, pause=lambda: asyncio.sleep(0), wakeup=asyncio.Event)
    runs = [FakeRun(f"r{k}", 2, served) for k in range(3)]
    # each ring kicked, then again long after the engines went idle
    drive(scheduler, [(0, r) for r in runs] + [(20, FakeRun("late", 1, served))] + [(20, FakeRun("later", 1, served))])
    assert [who for _, who in served][-2:] == ["late", "later"]
    assert len(spawned) == 2 and scheduler.turns == 8 and not scheduler.busy


def test_a_burst_of_kicks_after_idle_gets_every_engine():
    """Rings kicked together after the device went idle are served in parallel by all the
    engines (the parked one woken, the others started), as on a device that never idled."""
    served, active, most = [], [], [0]

    class SlowRun(FakeRun):
        async def turn(self) -> bool:
            active.append(self)
            most[0] = max(most[0], len(active))
            for _ in range(3):
                await asyncio.sleep(0)
            active.remove(self)
            return await super().turn()

    scheduler = make(engines=4)
    first = SlowRun("first", 1, served)
    burst = [SlowRun(f"b{k}", 1, served) for k in range(6)]
    drive(scheduler, [(0, first), (20, burst[0])] + [(0, r) for r in burst[1:]])
    assert most[0] == 4 and scheduler.turns == 7
